"""The offline tokenizer: byte-level BPE run by tiktoken, with our special tokens; a BPE trained
for a user's corpus, used by the scripts and recorded in checkpoints."""
import json
import os
import subprocess
import sys

import pytest
import tiktoken
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanorlhf.checkpoint import load_checkpoint, save_checkpoint
from nanorlhf.data import write_jsonl
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import (EOT, GPT2_PAT, PROMPT, RESPONSE, TokenizerError, encode, fingerprint, get_tokenizer,
                                load_ranks, main, save_ranks, train_bpe)

ENC = get_tokenizer("nanorlhf")


@given(st.text())
def test_round_trip_arbitrary_unicode(s):
    assert ENC.decode(ENC.encode_ordinary(s)) == s


def test_special_tokens_are_single_ids_and_distinct():
    ids = encode(ENC, PROMPT + "Sort these numbers: 3 1 2" + RESPONSE + "1 2 3" + EOT)
    specials = [ENC.encode_single_token(t) for t in (PROMPT, RESPONSE, EOT)]
    assert ids[0] == specials[0] and ids[-1] == specials[2] == ENC.eot_token
    assert len(set(specials)) == 3 and ids.count(specials[1]) == 1
    assert ENC.n_vocab == max(specials) + 1


def test_world_text_is_compact():
    """The ranks were trained on the world's corpus: its words are mostly single tokens."""
    text = "Bilo lives in Marn. Describe the fox in at most three words."
    assert len(ENC.encode_ordinary(text)) <= len(text.split()) + 6


def test_train_bpe_learns_frequent_pairs_and_loads_in_tiktoken(tmp_path):
    ranks = train_bpe(["hello hello hello world world"] * 10, vocab_size=270)
    assert b" hello" in ranks and all(ranks[bytes([i])] == i for i in range(256))
    save_ranks(ranks, str(tmp_path / "r.tiktoken"))
    enc = tiktoken.Encoding("t", pat_str=GPT2_PAT, mergeable_ranks=load_ranks(str(tmp_path / "r.tiktoken")),
                            special_tokens={})
    assert enc.encode_ordinary(" hello") == [ranks[b" hello"]]


def test_unknown_tokenizer_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown tokenizer 'bert'"):
        get_tokenizer("bert")


def test_gpt2_without_cache_or_network_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty cache; this machine has no network
    try:
        enc = get_tokenizer("gpt2")
    except RuntimeError as e:
        assert "--tokenizer gpt2 needs tiktoken's GPT-2 files" in str(e)
    else:  # a machine with network access: then it must be GPT-2 plus our two separators
        assert enc.n_vocab == 50259


# -----------------------------------------------------------------------------
# A BPE for a user's corpus: python -m nanorlhf.tokenizer --data DIR --vocab-size N --out PATH

def user_corpus(d):
    write_jsonl(d / "pretrain.jsonl", [{"text": f"The zorblax number {i} glimmers quietly."} for i in range(200)])
    write_jsonl(d / "demos.jsonl", [{"prompt": f"Describe zorblax {i}.", "response": "It glimmers."} for i in range(40)])


def test_bpe_for_a_user_corpus_and_its_checkpoints(tmp_path):
    user_corpus(tmp_path)
    path = tmp_path / "bpe.tiktoken"
    main(["--data", str(tmp_path), "--vocab-size", "300", "--out", str(path)])
    enc = get_tokenizer(str(path))
    assert enc.name == str(path) and enc.n_vocab == 303
    assert len(enc.encode_ordinary(" zorblax")) == 1  # learned from pretrain.jsonl
    assert len(enc.encode_ordinary(" glimmers")) == 1
    assert enc.decode(enc.encode_ordinary("naïve ✓ text")) == "naïve ✓ text"
    ckpt = tmp_path / "model.pt"
    save_checkpoint(str(ckpt), GPT(GPTConfig(vocab_size=303, n_layer=1, n_head=1, n_embd=8, block_size=16)), enc, "policy")
    _, enc2, _ = load_checkpoint(str(ckpt))
    assert enc2.name == str(path) and fingerprint(enc2) == fingerprint(enc)
    main(["--data", str(tmp_path), "--vocab-size", "290", "--out", str(path)])  # retrained in place
    with pytest.raises(Exception, match="another version of the .*bpe.tiktoken. tokenizer"):  # UserError
        load_checkpoint(str(ckpt))
    path.unlink()
    with pytest.raises(TokenizerError, match="cannot load the tokenizer it was trained with"):
        load_checkpoint(str(ckpt))
    with pytest.raises(SystemExit):  # argparse: one line, exit status 2
        main(["--data", str(tmp_path), "--vocab-size", "100"])


def test_sft_takes_a_ranks_file(tmp_path):
    user_corpus(tmp_path)
    main(["--data", str(tmp_path), "--vocab-size", "300"])  # default out: DIR/bpe.tiktoken
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    p = subprocess.run([sys.executable, os.path.join(root, "train_sft.py"), "--quick", "--data", str(tmp_path),
                        "--tokenizer", str(tmp_path / "bpe.tiktoken"), "--out", str(tmp_path / "sft")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert p.returncode == 0, p.stderr[-2000:]
    assert "vocabulary 303" in p.stdout
    ckpt = torch.load(tmp_path / "sft/model.pt", weights_only=True)
    assert ckpt["tokenizer"] == str(tmp_path / "bpe.tiktoken") and ckpt["config"]["vocab_size"] == 303
    assert json.loads((tmp_path / "sft/metrics.json").read_text())["losses"]["sft"]
