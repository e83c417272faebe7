"""GPT-2 from a local Hugging Face folder, offline: its byte-level BPE read into tiktoken with the
same ids, the embedding grown for our two separators, the three scripts end to end on a tiny GPT-2
folder written here, and the hand-written safetensors reader fuzzed with damaged files."""
import functools
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from nanorlhf.checkpoint import load_checkpoint, save_checkpoint
from nanorlhf.data import write_jsonl
from nanorlhf.model import GPT, GPTConfig, WeightsError, _read_safetensors, from_pretrained_gpt2
from test_model import write_safetensors  # the one writer of HF-style weights in the tests
from nanorlhf.tokenizer import (EOT, PROMPT, RESPONSE, TokenizerError, bytes_to_unicode, encode, get_tokenizer,
                                load_hf_bpe, train_bpe)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
PROMPTS = [f"Say hello to friend number {i}." for i in range(40)]
TEXTS = [f"Hello friend {i}, nice to see you again today." for i in range(300)] + PROMPTS + ["Hello, friend!"]
SAMPLES = ["Hello friend 12, nice to see you!", "  two  spaces\nand a newline\t tab", "naïve café — ünïcödé ✓ 😀",
           "it's they'll we've 12345 $%^&*", ""]


def merge_pair(ranks, tok):
    """The two tokens whose merge made `tok`: BPE on its bytes with the ranks learned before it."""
    parts, r = [bytes([b]) for b in tok], ranks[tok]
    while len(parts) > 2:
        i = min(range(len(parts) - 1), key=lambda i: ranks.get(parts[i] + parts[i + 1], r) if
                ranks.get(parts[i] + parts[i + 1], r) < r else math.inf)
        parts[i:i + 2] = [parts[i] + parts[i + 1]]
    return parts


def write_tiny_gpt2(folder, vocab_size=320, C=32, n_layer=2, n_head=2, n_positions=128, tokenizer_json=False,
                    pad_to=None):
    """A Hugging Face GPT-2 folder: config.json, model.safetensors (random weights, HF names and
    Conv1D layout) and a byte-level BPE trained on TEXTS as vocab.json + merges.txt (or tokenizer.json).
    `pad_to`: the embedding has this many rows (config vocab_size too), as nanoGPT pads 50257 to
    50304; the rows no token owns are large, so a model that kept them would sample them."""
    os.makedirs(folder, exist_ok=True)
    ranks = train_bpe(TEXTS, vocab_size)
    u = bytes_to_unicode()
    spell = lambda b: "".join(u[x] for x in b)
    vocab = {spell(t): r for t, r in ranks.items()}
    vocab[EOT] = len(ranks)  # GPT-2: end-of-text is the last id
    merges = [" ".join(spell(p) for p in merge_pair(ranks, t)) for t, _ in sorted(ranks.items(), key=lambda kv: kv[1])
              if len(t) > 1]
    if tokenizer_json:
        spec = {"model": {"type": "BPE", "vocab": vocab, "merges": merges},
                "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True},
                "added_tokens": [{"id": len(ranks), "content": EOT, "special": True}]}
        with open(os.path.join(folder, "tokenizer.json"), "w") as f:
            json.dump(spec, f)
    else:
        with open(os.path.join(folder, "vocab.json"), "w") as f:
            json.dump(vocab, f)
        with open(os.path.join(folder, "merges.txt"), "w") as f:
            f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    V = len(vocab)
    cfg = {"model_type": "gpt2", "vocab_size": pad_to or V, "n_positions": n_positions, "n_embd": C, "n_layer": n_layer,
           "n_head": n_head, "architectures": ["GPT2LMHeadModel"], "bos_token_id": V - 1, "eos_token_id": V - 1}
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    g = torch.Generator().manual_seed(0)
    shapes = {"wte.weight": (V, C), "wpe.weight": (n_positions, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(n_layer):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                       p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    sd = {k: (torch.randn(s, generator=g) * 0.1 + (1.0 if k.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0))
          for k, s in shapes.items()}
    if pad_to:
        sd["wte.weight"] = torch.cat([sd["wte.weight"], 3 * torch.randn(pad_to - V, C, generator=g)])  # (pad_to, C)
    write_safetensors(os.path.join(folder, "model.safetensors"), sd)
    return ranks


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-gpt2")
    return d, write_tiny_gpt2(str(d))


# -----------------------------------------------------------------------------
# The tokenizer

def test_folder_tokenizer_has_gpt2_ids_and_our_separators(gpt2_dir):
    d, ranks = gpt2_dir
    enc = get_tokenizer(str(d))
    assert enc.name == str(d) and enc.eot_token == len(ranks)  # the folder's own <|endoftext|> id
    assert [enc.encode_single_token(t) for t in (PROMPT, RESPONSE)] == [len(ranks) + 1, len(ranks) + 2]
    assert enc.n_vocab == len(ranks) + 3
    for text in SAMPLES:
        ids = enc.encode_ordinary(text)
        assert enc.decode(ids) == text
        assert all(i == ranks[enc.decode_single_token_bytes(i)] for i in ids)  # ids are the vocab.json ids
    assert enc.encode_ordinary(" friend") == [ranks[b" friend"]]  # merges apply


def test_tokenizer_json_gives_the_same_encoding(gpt2_dir, tmp_path):
    d, _ = gpt2_dir
    write_tiny_gpt2(str(tmp_path), tokenizer_json=True)
    a, b = get_tokenizer(str(d)), get_tokenizer(str(tmp_path))
    for text in SAMPLES + [PROMPT + "Hi" + RESPONSE + "Hello" + EOT]:
        assert encode(a, text) == encode(b, text)
    spec = json.loads((tmp_path / "tokenizer.json").read_text())
    spec["pre_tokenizer"]["add_prefix_space"] = True  # would tokenize "Hi" as " Hi": refused, not silently wrong
    (tmp_path / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(TokenizerError, match="add_prefix_space is true"):
        load_hf_bpe(str(tmp_path))


@functools.lru_cache(maxsize=None)
def tiny_encoding():  # built once: hypothesis cannot use a function-scoped fixture
    folder = tempfile.mkdtemp()
    write_tiny_gpt2(folder)
    return load_hf_bpe(folder)


@given(st.text(max_size=200))
def test_folder_tokenizer_round_trips_any_text(text):
    enc = tiny_encoding()
    assert enc.decode(enc.encode_ordinary(text)) == text


def test_broken_tokenizer_folders_are_clear_errors(gpt2_dir, tmp_path):
    d, _ = gpt2_dir
    with pytest.raises(TokenizerError, match="no tokenizer here"):
        load_hf_bpe(str(tmp_path))
    vocab = json.loads((d / "vocab.json").read_text())
    merges = (d / "merges.txt").read_text().splitlines()
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("\n".join([merges[0], merges[2], merges[1]] + merges[3:]))
    with pytest.raises(TokenizerError, match="ids must follow merge order"):
        load_hf_bpe(str(tmp_path))
    del vocab["Ġ"]
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(TokenizerError, match=r"byte 32 \('Ġ'\) is not in the vocabulary"):
        load_hf_bpe(str(tmp_path))
    with pytest.raises(TokenizerError, match="not found"):
        get_tokenizer(str(tmp_path / "missing.tiktoken"))
    (tmp_path / "vocab.json").write_text('{"a": 1,')
    with pytest.raises(TokenizerError, match=r"vocab.json: not valid JSON"):
        load_hf_bpe(str(tmp_path))


# -----------------------------------------------------------------------------
# The model: the embedding grows for the separators, GPT-2's own ids are untouched

def test_embedding_grows_by_the_mean_row_and_old_logits_are_unchanged(gpt2_dir):
    d, ranks = gpt2_dir
    V = len(ranks) + 1
    plain = from_pretrained_gpt2(str(d)).eval()
    model, enc, ckpt = load_checkpoint(str(d), kind="policy")
    model.eval()
    assert plain.config.vocab_size == V and model.config.vocab_size == enc.n_vocab == V + 2
    wte = model.transformer.wte.weight
    torch.testing.assert_close(wte[V:], wte[:V].mean(0, keepdim=True).expand(2, -1))
    ids = torch.tensor([encode(enc, "Hello friend 3, nice to see you.")])
    torch.testing.assert_close(model(ids)[..., :V], plain(ids), atol=1e-5, rtol=1e-5)
    assert ckpt["tokenizer"] == str(d)


def test_three_scripts_run_offline_on_a_gpt2_folder(gpt2_dir, tmp_path):
    """train_sft --init DIR, train_rm, train_ppo at --quick size on user JSONL data: the folder's
    tokenizer travels in the checkpoints (by path and fingerprint)."""
    d, ranks = gpt2_dir
    data = tmp_path / "data"
    write_jsonl(data / "pretrain.jsonl", [{"text": t} for t in TEXTS[:300]])
    write_jsonl(data / "demos.jsonl", [{"prompt": p, "response": "Hello, friend!"} for p in PROMPTS])
    write_jsonl(data / "comparisons.jsonl", [{"prompt": p, "responses": ["Hello, friend!", "Go away.", "Hi."],
                                              "ranking": [0, 2, 1]} for p in PROMPTS])
    write_jsonl(data / "rl_prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    out = tmp_path / "out"
    env = {**ENV, "HF_HUB_OFFLINE": "1", "no_proxy": "*", "https_proxy": "http://127.0.0.1:9", "http_proxy": "http://127.0.0.1:9"}

    def run(script, *args):
        p = subprocess.run([sys.executable, os.path.join(ROOT, script), "--quick", "--data", str(data), *args],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
        assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        return p.stdout

    run("train_sft.py", "--init", str(d), "--out", str(out / "sft"))
    run("train_rm.py", "--sft", str(out / "sft/model.pt"), "--out", str(out / "rm"), "--batch-size", "4")
    run("train_ppo.py", "--sft", str(out / "sft/model.pt"), "--rm", str(out / "rm/model.pt"), "--out", str(out / "ppo"))
    for stage in ("sft", "rm", "ppo"):
        ckpt = torch.load(out / stage / "model.pt", weights_only=True)
        assert ckpt["tokenizer"] == str(d) and ckpt["config"]["vocab_size"] == len(ranks) + 3
    assert json.loads((out / "sft/metrics.json").read_text())["n_params"] > 0


# -----------------------------------------------------------------------------
# A padded embedding (nanoGPT: 50257 -> 50304 rows): cut to the tokenizer, and a whole --data run on it

PAD = 384  # 321 own ids padded to a multiple of 64


def strict(text):
    def refuse(name):
        raise ValueError(f"{name} in strict JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def padded_run(tmp_path_factory):
    """train_sft --init PADDED_DIR -> train_rm -> train_ppo, --quick, on user data (no gold labeler)."""
    tmp = tmp_path_factory.mktemp("padded")
    folder, data, out = tmp / "gpt2", tmp / "data", tmp / "out"
    write_tiny_gpt2(str(folder), pad_to=PAD)
    write_jsonl(data / "pretrain.jsonl", [{"text": t} for t in TEXTS[:300]])
    write_jsonl(data / "demos.jsonl", [{"prompt": p, "response": "Hello, friend!"} for p in PROMPTS])
    write_jsonl(data / "comparisons.jsonl", [{"prompt": p, "responses": ["Hello, friend!", "Go away.", "Hi."],
                                              "ranking": [0, 2, 1]} for p in PROMPTS])
    write_jsonl(data / "rl_prompts.jsonl", [{"prompt": p} for p in PROMPTS])
    write_jsonl(data / "test_prompts.jsonl", [{"prompt": p} for p in PROMPTS[:10]])
    logs = {}
    for stage, script, args in [("sft", "train_sft.py", ["--init", folder]),
                                ("rm", "train_rm.py", ["--sft", out / "sft/model.pt", "--batch-size", 4]),
                                ("ppo", "train_ppo.py", ["--sft", out / "sft/model.pt", "--rm", out / "rm/model.pt"])]:
        p = subprocess.run([sys.executable, os.path.join(ROOT, script), "--quick", "--data", str(data),
                            "--out", str(out / stage), *map(str, args)], capture_output=True, text=True, env=ENV,
                           cwd=ROOT, timeout=600)
        logs[stage] = p.stdout + p.stderr
        assert p.returncode == 0, f"{script} failed:\n{logs[stage][-3000:]}"
    return folder, data, out, logs


def test_padded_embedding_is_cut_to_the_tokenizer(tmp_path):
    write_tiny_gpt2(str(tmp_path), pad_to=PAD)
    plain = from_pretrained_gpt2(str(tmp_path)).eval()  # the file as it is: PAD rows
    model, enc, _ = load_checkpoint(str(tmp_path), kind="policy")
    V = enc.n_vocab - 2  # the folder's own ids; then our two separators
    assert plain.config.vocab_size == PAD and model.config.vocab_size == enc.n_vocab == V + 2
    wte = model.transformer.wte.weight
    torch.testing.assert_close(wte[V:], wte[:V].mean(0, keepdim=True).expand(2, -1))  # not the padding rows
    assert model.lm_head.weight is wte
    ids = torch.tensor([encode(enc, "Hello friend 3, nice to see you.")])
    torch.testing.assert_close(model.eval()(ids)[..., :V], plain(ids)[..., :V], atol=1e-5, rtol=1e-5)
    # our own checkpoint with rows no token owns (e.g. trained on a padded folder before) is cut too
    ours = get_tokenizer()
    save_checkpoint(str(tmp_path / "padded.pt"), GPT(GPTConfig(vocab_size=ours.n_vocab + 64, n_layer=1, n_head=2,
                                                                n_embd=16)), ours, "policy")
    assert load_checkpoint(str(tmp_path / "padded.pt"))[0].config.vocab_size == ours.n_vocab


def test_padded_gpt2_folder_through_sft_rm_ppo(padded_run):
    """The issue's crash: PPO sampled a padding row, tiktoken's KeyError 'Invalid token for decoding'."""
    folder, data, out, logs = padded_run
    for stage in ("sft", "rm", "ppo"):
        ckpt = torch.load(out / stage / "model.pt", weights_only=True)
        assert ckpt["config"]["vocab_size"] == PAD - 63 + 2 and ckpt["data"] == str(data)
    assert "3 iterations x 16 episodes" in logs["ppo"] and "gold" not in logs["ppo"]  # one process: no "x 1"
    assert "sampled in" not in logs["rm"] and "vs the held-out rankings of " + str(data) in logs["rm"]
    assert "[quick] a smoke test at toy size" in logs["sft"] and "its numbers mean nothing" in logs["sft"]


def test_a_data_run_writes_strict_json_without_gold(padded_run):
    _, _, out, _ = padded_run
    curve = strict((out / "ppo/curve.json").read_text())
    assert curve and all("gold_score" not in c and "rm_score" in c for c in curve)
    for stage in ("sft", "rm", "ppo"):
        strict((out / stage / "metrics.json").read_text())


def test_report_and_evaluate_on_a_data_run_print_no_gold(padded_run):
    _, data, out, _ = padded_run
    py = lambda *a: subprocess.run([sys.executable, "-m", *map(str, a)], capture_output=True, text=True, env=ENV,
                                   cwd=ROOT, timeout=600)
    rep = py("nanorlhf.report", "--root", out)
    assert rep.returncode == 0, rep.stderr[-3000:]
    text = rep.stdout.lower()
    assert f"trained on --data {data}".lower() in text and "held-out rankings" in text and "rm score" in text
    for word in ("gold", "noisy labeler", "demonstrations", "heldout", "bayes"):
        assert word not in text, (word, rep.stdout)
    ev = py("nanorlhf.evaluate", out / "sft/model.pt", out / "ppo/model.pt", "--n", 3)
    assert ev.returncode == 0, ev.stderr[-3000:]
    shown = [line[4:] for line in ev.stdout.splitlines() if line.startswith("=== ")]
    assert len(shown) == 3 and set(shown) <= set(PROMPTS[:10])  # the run's own test prompts, not the world's
    assert "[" not in ev.stdout.replace(f"[{out}", "")  # no "[+0.53]" gold score beside a response


# -----------------------------------------------------------------------------
# Against Hugging Face's own implementations, where they are installed

def test_same_ids_and_logits_as_transformers(gpt2_dir):
    transformers = pytest.importorskip("transformers")
    d, ranks = gpt2_dir
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(d))
    enc = get_tokenizer(str(d))
    for text in SAMPLES + TEXTS[:20] + ["Hello\n\n  friend\t\t99!!  ", "x" * 50 + " friends' friend's"]:
        assert enc.encode_ordinary(text) == hf_tok.encode(text), text
    hf = transformers.GPT2LMHeadModel.from_pretrained(str(d)).eval()
    model, _, _ = load_checkpoint(str(d))
    ids = torch.tensor([enc.encode_ordinary(" ".join(TEXTS[:5]))[:100]])
    with torch.no_grad():
        torch.testing.assert_close(model.eval()(ids)[..., :len(ranks) + 1], hf(ids).logits, atol=1e-4, rtol=1e-4)


# -----------------------------------------------------------------------------
# The safetensors reader, fuzzed: every damaged file is a one-line WeightsError naming it

def valid_file(path, seed=0):
    g = torch.Generator().manual_seed(seed)
    write_safetensors(path, {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g),
                             "empty": torch.zeros(0, 2)})


def read_or_clear_error(path):
    try:
        return _read_safetensors(path)
    except WeightsError as e:
        msg = str(e)
        assert msg.startswith(f"{path}: ") and "\n" not in msg, msg
        return None


def rewrite_header(path, edit):
    raw = open(path, "rb").read()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8:8 + n])
    edit(header)
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + raw[8 + n:])


def test_valid_safetensors_round_trip(tmp_path):
    p = tmp_path / "m.safetensors"
    valid_file(p)
    sd = _read_safetensors(str(p))
    g = torch.Generator().manual_seed(0)
    assert torch.equal(sd["a"], torch.randn(3, 4, generator=g)) and torch.equal(sd["b"], torch.randn(5, generator=g))
    assert sd["empty"].shape == (0, 2)


@settings(max_examples=300)
@given(cut=st.integers(0, 400))
def test_fuzz_truncated_file(tmp_path_factory, cut):
    p = tmp_path_factory.mktemp("st") / "m.safetensors"
    valid_file(p)
    raw = open(p, "rb").read()
    open(p, "wb").write(raw[:cut])
    out = read_or_clear_error(str(p))
    assert out is None or cut >= len(raw)


@settings(max_examples=300)
@given(n=st.one_of(st.integers(0, 400), st.integers(0, 2**64 - 1)))
def test_fuzz_lying_header_length(tmp_path_factory, n):
    p = tmp_path_factory.mktemp("st") / "m.safetensors"
    valid_file(p)
    raw = bytearray(open(p, "rb").read())
    true_n = int.from_bytes(raw[:8], "little")
    raw[:8] = struct.pack("<Q", n)
    open(p, "wb").write(raw)
    out = read_or_clear_error(str(p))  # a length of 2**63 must not be read, let alone allocated
    assert out is None or n == true_n


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=8),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                       max_leaves=10)


@settings(max_examples=400)
@given(field=st.sampled_from(["dtype", "shape", "data_offsets", "meta"]), tensor=st.sampled_from(["a", "b", "empty"]),
       value=st.one_of(JSONISH, st.sampled_from(["F32", "F16", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "f32", "Q4"]),
                       st.lists(st.integers(-3, 2**40), max_size=4)))
def test_fuzz_header_fields(tmp_path_factory, field, tensor, value):
    """Wrong dtype strings, shapes that disagree with the byte count, offsets out of range or of the
    wrong type, a tensor entry that is not an object: loaded correctly or refused in one line."""
    p = tmp_path_factory.mktemp("st") / "m.safetensors"
    valid_file(p)

    def edit(h):
        if field == "meta":
            h[tensor] = value
        else:
            h[tensor][field] = value
    rewrite_header(p, edit)
    out = read_or_clear_error(str(p))
    if out is not None:  # accepted: then it is self-consistent
        sizes = {"F32": 4, "F16": 2, "BF16": 2, "I64": 8, "U8": 1, "BOOL": 1}
        for t in out.values():
            assert t.numel() * t.element_size() <= os.path.getsize(p)
        assert field != "meta" or isinstance(value, dict)
        if field == "dtype":
            assert value in sizes


@settings(max_examples=200)
@given(garbage=st.binary(max_size=300))
def test_fuzz_random_bytes_after_a_length(tmp_path_factory, garbage):
    p = tmp_path_factory.mktemp("st") / "m.safetensors"
    open(p, "wb").write(struct.pack("<Q", len(garbage)) + garbage)
    read_or_clear_error(str(p))


def test_huge_shape_is_refused_without_allocating(tmp_path):
    p = tmp_path / "m.safetensors"
    valid_file(p)
    rewrite_header(p, lambda h: h["a"].update(shape=[10**6, 10**6]))
    with pytest.raises(WeightsError, match=r"'a': shape \[1000000, 1000000\] of F32 needs 4000000000000 bytes"):
        _read_safetensors(str(p))


# -----------------------------------------------------------------------------
# bench/gpt2_small.py at a reduced size: GPT-2's 50,257-entry vocabulary (a padded embedding of
# 50,304 rows), 2 layers of width 64, SFT -> RM -> PPO with the fused log-probs on and off

def test_gpt2_small_bench_runs_at_reduced_size(tmp_path):
    import importlib.util
    spec = importlib.util.spec_from_file_location("gpt2_small", os.path.join(ROOT, "bench", "gpt2_small.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    rows = bench.main(["--small", "--out", str(tmp_path), "--pad-to", "50304", "--sft-steps", "2", "--batch-size", "2",
                       "--rm-steps", "1", "--ppo-iterations", "1", "--rollout-size", "4"])
    assert [(r[0], r[1]) for r in rows] == [(s, m) for m in ("fused", "plain") for s in ("sft", "rm", "ppo")]
    assert all(n >= 1 and sps > 0 and rss > 0 for _, _, n, sps, rss in rows)
    enc = get_tokenizer(str(tmp_path / "gpt2"))
    assert enc.n_vocab == 50257 + 2 and enc.eot_token == 50256  # GPT-2's size, our two separators after it
    ckpt = torch.load(tmp_path / "run1" / "ppo" / "model.pt", weights_only=True)
    assert ckpt["config"]["vocab_size"] == 50259  # the 50,304-row embedding was cut, then grown by two
