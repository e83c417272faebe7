"""The offline tokenizer: byte-level BPE run by tiktoken, with our special tokens."""
import pytest
import tiktoken
from hypothesis import given
from hypothesis import strategies as st

from nanorlhf.tokenizer import EOT, GPT2_PAT, PROMPT, RESPONSE, encode, get_tokenizer, load_ranks, save_ranks, train_bpe

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
