"""The GPT: KV-cache generation equals cache-free generation, padding changes nothing, GPT-2
weights load from a local Hugging Face folder, checkpoints round-trip without unpickling."""
import json
import os
import struct

import pytest
import torch
import torch.nn.functional as F

from nanorlhf.checkpoint import load_checkpoint, save_checkpoint, to_scalar_head
from nanorlhf.errors import UserError
from nanorlhf.model import GPT, GPTConfig, generate
from nanorlhf.tokenizer import get_tokenizer

CFG = GPTConfig(block_size=64, vocab_size=97, n_layer=2, n_head=2, n_embd=32)


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig(**{**CFG.__dict__, **kw})).eval()


def random_prompts(n, seed, vocab=97):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(1, vocab, (int(torch.randint(1, 12, (1,), generator=g)),), generator=g).tolist()
            for _ in range(n)]


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 5), (0.0, None)])
def test_kv_cache_generation_equals_cache_free(temperature, top_k):
    model = tiny()
    prompts = random_prompts(6, seed=1)
    outs = []
    for use_cache in (True, False):
        g = torch.Generator().manual_seed(123)
        outs.append(generate(model, prompts, 20, eot_id=0, temperature=temperature, top_k=top_k,
                             generator=g, use_cache=use_cache))
    assert torch.equal(outs[0][0], outs[1][0])
    assert torch.equal(outs[0][1], outs[1][1])


def run_without_stop(model, prompts, N, temperature, seed):
    """(pad id, generated tokens (B, N)) of a run that never stops: its end-of-text id is one that
    no row emits, so every row writes N tokens."""
    P, seen, eot = max(map(len, prompts)), set(), 0
    while True:
        out, gen = generate(model, prompts, N, eot_id=eot, temperature=temperature,
                            generator=torch.Generator().manual_seed(seed))
        if out.size(1) == P + N and (out[:, P:] != eot).all():
            assert gen[:, P:].all() and not gen[:, :P].any()
            return eot, out[:, P:].tolist()
        seen |= set(out[:, P:].flatten().tolist()) | {eot}  # try an id no run so far has emitted
        eot = min(set(range(model.config.vocab_size)) - seen)


def stop_token(free):
    """A token that some rows emit after their first position and some rows never emit, and the
    index of its first occurrence in each row (None: never)."""
    for x in sorted({t for row in free for t in row}):
        first = [row.index(x) if x in row else None for row in free]
        if any(f is not None and f >= 1 for f in first) and None in first:
            return x, first
    raise AssertionError("no token stops some rows mid-sequence and not others")


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_generation_stops_each_row_at_its_own_eot(temperature):
    """An end-of-text emitted mid-sequence by some rows and never by others: each row is the
    never-stopping run up to and including its first end-of-text, or all N tokens; the mask marks
    exactly those; after its end-of-text a row holds pads; the batch runs until the last row stops."""
    model, N = tiny(), 30
    prompts = random_prompts(8, seed=3)
    P = max(map(len, prompts))
    _, free = run_without_stop(model, prompts, N, temperature, seed=5)
    eot, first = stop_token(free)
    tokens, gen = generate(model, prompts, N, eot_id=eot, temperature=temperature,
                           generator=torch.Generator().manual_seed(5))
    lengths = [N if f is None else f + 1 for f in first]
    assert len(set(lengths)) > 1 and max(lengths) == N and tokens.shape == gen.shape == (len(prompts), P + N)
    for b, (p, n) in enumerate(zip(prompts, lengths)):
        assert tokens[b, :P].tolist() == [eot] * (P - len(p)) + p  # left-padded prompt, untouched
        assert gen[b].tolist() == [False] * P + [True] * n + [False] * (N - n)
        assert tokens[b, P:P + n].tolist() == free[b][:n]
        assert (tokens[b, P + n:] == eot).all()


def test_generation_ends_when_the_last_row_stops():
    """When every row stops before N, the output ends at the last row's end-of-text, not at N."""
    model, N = tiny(), 50
    prompts = random_prompts(3, seed=3)
    P = max(map(len, prompts))
    _, free = run_without_stop(model, prompts, N, 1.0, seed=0)
    for eot in sorted({t for row in free for t in row}):  # a token every row emits, at different steps
        first = [row.index(eot) if eot in row else None for row in free]
        if None not in first and len(set(first)) > 1:
            break
    else:
        raise AssertionError("no token that every row emits at different steps")
    tokens, gen = generate(model, prompts, N, eot_id=eot, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert tokens.size(1) == P + max(first) + 1 < P + N
    assert gen.sum(1).tolist() == [f + 1 for f in first]


def test_padded_row_generates_as_if_alone():
    """Left padding with the mask and shifted positions: each prompt in a batch continues exactly as
    it does in a batch of one, to the same end-of-text (emitted mid-sequence by some rows only)."""
    model = tiny()
    prompts = random_prompts(5, seed=2)
    _, free = run_without_stop(model, prompts, 12, 0.0, seed=0)
    eot, first = stop_token(free)
    batch, mask = generate(model, prompts, 12, eot_id=eot, temperature=0)
    for b, p in enumerate(prompts):
        alone, amask = generate(model, [p], 12, eot_id=eot, temperature=0)
        assert batch[b][mask[b]].tolist() == alone[0][amask[0]].tolist()
        assert int(mask[b].sum()) == (12 if first[b] is None else first[b] + 1)


def test_scalar_head_reads_last_real_token_and_ignores_padding():
    rm = to_scalar_head(tiny()).eval()
    ids = torch.randint(1, 97, (3, 10))
    lengths = torch.tensor([4, 10, 7])
    padded = ids.clone()
    for b, n in enumerate(lengths):
        padded[b, n:] = 0
    s1 = rm(ids, lengths=lengths)
    s2 = rm(padded, lengths=lengths)
    assert torch.allclose(s1, s2, atol=1e-6)
    alone = torch.stack([rm(ids[b:b + 1, :n], lengths=lengths[b:b + 1])[0] for b, n in enumerate(lengths)])
    assert torch.allclose(s1, alone, atol=1e-5)


def test_checkpoint_round_trip_and_kind_check(tmp_path):
    enc = get_tokenizer()
    model = tiny(vocab_size=enc.n_vocab)
    path = tmp_path / "model.pt"
    save_checkpoint(str(path), model, enc, "policy")
    loaded, enc2, _ = load_checkpoint(str(path), kind="policy")
    x = torch.randint(0, enc.n_vocab, (2, 9))
    assert enc2.name == "nanorlhf" and torch.equal(model(x), loaded(x))
    with pytest.raises(UserError, match="policy checkpoint, but a reward checkpoint is expected"):
        load_checkpoint(str(path), kind="reward")


def test_checkpoint_refuses_another_tokenizer_version(tmp_path):
    enc = get_tokenizer()
    path = tmp_path / "model.pt"
    save_checkpoint(str(path), tiny(vocab_size=enc.n_vocab), enc, "policy")
    ckpt = torch.load(path, weights_only=True)
    ckpt["tokenizer_fingerprint"] = "0" * 16  # as if the BPE had been retrained since
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="another version of the 'nanorlhf' tokenizer"):
        load_checkpoint(str(path))
    save_checkpoint(str(path), tiny(), enc, "policy")  # vocabulary 97 < the tokenizer's
    with pytest.raises(UserError, match="vocabulary 97 is smaller than tokenizer"):
        load_checkpoint(str(path))


def test_malicious_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "model.pt"
    torch.save({"config": {}, "model": Evil()}, path)
    with pytest.raises(UserError, match="not a loadable nanorlhf checkpoint"):
        load_checkpoint(str(path))
    assert not marker.exists()


# -----------------------------------------------------------------------------
# GPT-2 from a local Hugging Face folder, checked against an independent computation

def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def hf_gpt2_forward(sd, cfg, idx):
    """GPT-2 straight from the Hugging Face tensors (Conv1D: x @ W with W (in, out))."""
    C, nh = cfg["n_embd"], cfg["n_head"]
    T = idx.size(1)
    x = sd["wte.weight"][idx] + sd["wpe.weight"][:T]
    ln = lambda x, p: F.layer_norm(x, (C,), sd[p + ".weight"], sd[p + ".bias"], 1e-5)
    for i in range(cfg["n_layer"]):
        p = f"h.{i}."
        qkv = ln(x, p + "ln_1") @ sd[p + "attn.c_attn.weight"] + sd[p + "attn.c_attn.bias"]
        q, k, v = (t.view(1, T, nh, C // nh).transpose(1, 2) for t in qkv.split(C, -1))
        att = (q @ k.transpose(-1, -2)) / (C // nh) ** 0.5
        att = att.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(1, T, C)
        x = x + y @ sd[p + "attn.c_proj.weight"] + sd[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2") @ sd[p + "mlp.c_fc.weight"] + sd[p + "mlp.c_fc.bias"]
        h = 0.5 * h * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (h + 0.044715 * h ** 3)))
        x = x + h @ sd[p + "mlp.c_proj.weight"] + sd[p + "mlp.c_proj.bias"]
    return ln(x, "ln_f") @ sd["wte.weight"].T


@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_load_local_hf_gpt2(tmp_path, fmt):
    from nanorlhf.model import from_pretrained_gpt2
    cfg = {"n_embd": 24, "n_layer": 2, "n_head": 3, "n_positions": 32, "vocab_size": 50, "model_type": "gpt2"}
    g = torch.Generator().manual_seed(0)
    C = cfg["n_embd"]
    shapes = {"wte.weight": (50, C), "wpe.weight": (32, C), "ln_f.weight": (C,), "ln_f.bias": (C,)}
    for i in range(2):
        p = f"h.{i}."
        shapes.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                       p + "attn.c_attn.weight": (C, 3 * C), p + "attn.c_attn.bias": (3 * C,),
                       p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                       p + "mlp.c_fc.weight": (C, 4 * C), p + "mlp.c_fc.bias": (4 * C,),
                       p + "mlp.c_proj.weight": (4 * C, C), p + "mlp.c_proj.bias": (C,)})
    sd = {k: torch.randn(s, generator=g) * 0.3 for k, s in shapes.items()}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    if fmt == "safetensors":
        write_safetensors(tmp_path / "model.safetensors", sd)
    else:
        torch.save({"transformer." + k: v for k, v in sd.items()}, tmp_path / "pytorch_model.bin")
    model = from_pretrained_gpt2(str(tmp_path)).eval()
    idx = torch.randint(0, 50, (1, 11), generator=g)
    torch.testing.assert_close(model(idx), hf_gpt2_forward(sd, cfg, idx), atol=1e-4, rtol=1e-4)


def test_missing_hf_folder_is_a_clear_error(tmp_path):
    from nanorlhf.model import from_pretrained_gpt2
    with pytest.raises(FileNotFoundError, match="no config.json"):
        from_pretrained_gpt2(str(tmp_path))


def test_gpt_forward_backward_through_triton_kernels_matches_sdpa(monkeypatch):
    """The whole model through the hand-written kernels (flash attention, fused log-probs), run by
    Triton's interpreter on CPU, against the SDPA / log_softmax path: outputs and every gradient."""
    from kernels._dispatch import INTERPRET
    from nanorlhf import model as M
    from nanorlhf.losses import lm_loss
    if not INTERPRET:
        pytest.skip("needs TRITON_INTERPRET=1 (tests/conftest.py sets it on CPU)")
    net = tiny(seed=3, n_embd=32, n_head=2)  # head size 16
    x = torch.randint(0, 97, (2, 13))
    mask = torch.rand(2, 12) > 0.3
    results = {}
    for backend in ("sdpa", "triton"):
        monkeypatch.setattr(M, "ATTENTION_BACKEND", backend)
        net.zero_grad()
        logits = net(x[:, :-1])
        if backend == "sdpa":  # the plain path end to end: no kernel anywhere
            logp = torch.log_softmax(logits, -1).gather(-1, x[:, 1:, None]).squeeze(-1)
            loss = -(logp * mask).sum() / mask.sum()
        else:
            loss = lm_loss(logits, x[:, 1:], mask)  # kernels.token_logprobs under the interpreter
        loss.backward()
        results[backend] = (logits.detach(), loss.detach(), {n: p.grad.clone() for n, p in net.named_parameters()})
    (l0, s0, g0), (l1, s1, g1) = results["sdpa"], results["triton"]
    torch.testing.assert_close(l1, l0, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(s1, s0, atol=1e-5, rtol=1e-5)
    for n in g0:
        torch.testing.assert_close(g1[n], g0[n], atol=1e-4, rtol=1e-3, msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("scalar_head", [False, True])
def test_head_at_equals_the_full_head_read_at_those_positions(scalar_head):
    """forward(head_at=idx), the fast path PPO and generation use, against the plain forward then a
    gather: same outputs and same gradient for every parameter."""
    model = tiny(seed=4, scalar_head=scalar_head).train()
    x = torch.randint(0, 97, (3, 20), generator=torch.Generator().manual_seed(0))
    idx = torch.tensor([[5, 6, 7, 8], [0, 1, 2, 3], [16, 17, 18, 19]])  # (B, K)
    results = []
    for fast in (True, False):
        model.zero_grad()
        if fast:
            out = model(x, head_at=idx)
        else:
            full = model(x)  # (B, T, V) or (B, T)
            out = full.gather(1, idx if scalar_head else idx[..., None].expand(-1, -1, full.size(-1)))
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        results.append((out.detach(), {n: p.grad.clone() for n, p in model.named_parameters()}))
    (o0, g0), (o1, g1) = results
    torch.testing.assert_close(o0, o1, atol=1e-6, rtol=1e-5)
    for n in g0:
        torch.testing.assert_close(g0[n], g1[n], atol=1e-6, rtol=1e-5, msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("temperature,top_k", [(1.0, None), (0.7, 2)])
def test_sampler_draws_the_softmax_distribution_and_never_a_masked_token(temperature, top_k):
    """The inverse-CDF sampler against the distribution it must draw from, with torch.multinomial
    (the sampler it replaced) held to the same bound: every frequency within 4 standard errors."""
    from nanorlhf.model import sample_next_token
    inf = float("inf")
    logits = torch.tensor([[0.0, 1.0, 2.0, -inf, 0.5, -inf], [5.0, -inf, -inf, -inf, -inf, 4.9]])
    scaled = logits / temperature
    if top_k is not None:  # the distribution top-k sampling must draw from
        kth = scaled.topk(top_k, dim=-1).values[:, -1:]
        scaled = scaled.masked_fill(scaled < kth, -inf)
    probs = torch.softmax(scaled, -1)
    N = 20000
    g = torch.Generator().manual_seed(0)
    draws = {"inverse cdf": sample_next_token(logits.repeat_interleave(N, 0), g, temperature, top_k).view(2, N),
             "multinomial": torch.multinomial(probs, N, replacement=True, generator=g)}
    for name, d in draws.items():
        freq = torch.stack([torch.bincount(row, minlength=6) for row in d]).double() / N  # (2, V)
        assert (freq[probs == 0] == 0).all(), f"{name} drew a zero-probability token"
        bound = 4 * (probs * (1 - probs) / N).sqrt().double() + 1e-12
        assert ((freq - probs.double()).abs() <= bound).all(), f"{name}: {freq} vs {probs}"


# -----------------------------------------------------------------------------
# Sampling and generation, pinned exactly (issue 24: each test below fails on a concrete mutant)

def frequencies(draws, V):
    return torch.bincount(draws.flatten(), minlength=V).double() / draws.numel()


@pytest.mark.parametrize("temperature", [None, 0.5, 2.0])
def test_sampler_draws_softmax_of_logits_over_temperature(temperature):
    """At temperature T the sampler draws from softmax(logits / T); left out, T is 1. Two tokens
    whose probabilities at T = 0.5, 1 and 2 are 0.98, 0.88 and 0.73: 4 standard errors apart from
    each other many times over."""
    from nanorlhf.model import sample_next_token
    logits, N = torch.tensor([[0.0, 2.0]]), 20000
    g = torch.Generator().manual_seed(0)
    kw = {} if temperature is None else {"temperature": temperature}
    draws = sample_next_token(logits.expand(N, 2), g, **kw)
    probs = torch.softmax(logits[0] / (temperature or 1.0), -1).double()
    bound = 4 * (probs * (1 - probs) / N).sqrt()
    assert ((frequencies(draws, 2) - probs).abs() <= bound).all()


def test_sampler_temperature_zero_is_argmax_and_one_row_gives_one_token():
    """Temperature 0 is greedy: exactly the argmax of each row, shape (B,). Sampling a single row
    gives shape (1,), not a 0-d tensor (a squeeze of every dimension)."""
    from nanorlhf.model import sample_next_token
    logits = torch.tensor([[0.1, 3.0, -1.0, 2.9, 0.0],
                           [5.0, 1.0, 1.0, 1.0, 4.0],
                           [-2.0, -3.0, -1.5, -9.0, -1.6]])
    greedy = sample_next_token(logits, torch.Generator().manual_seed(0), temperature=0)
    assert greedy.tolist() == [1, 0, 2]
    one = sample_next_token(logits[:1], torch.Generator().manual_seed(0), temperature=1.0)
    assert one.shape == (1,) and one.dtype == torch.long


def test_sampler_top_k_keeps_the_k_largest_even_in_a_batch_smaller_than_k():
    """top_k=3 on a single row (the batch of 1 is smaller than k): only the 3 largest logits are
    drawn, in their renormalized softmax proportions; a top_k above the vocabulary keeps them all."""
    from nanorlhf.model import sample_next_token
    logits = torch.tensor([[1.0, 3.0, 0.0, 2.5, 2.0, -1.0]])
    g = torch.Generator().manual_seed(0)
    N = 3000
    draws = torch.cat([sample_next_token(logits, g, 1.0, top_k=3) for _ in range(N)])
    keep = torch.tensor([False, True, False, True, True, False])
    probs = torch.softmax(logits[0].masked_fill(~keep, float("-inf")), -1).double()
    freq = frequencies(draws, 6)
    assert (freq[~keep] == 0).all()
    assert ((freq - probs).abs() <= 4 * (probs * (1 - probs) / N).sqrt() + 1e-12).all()
    wide = torch.cat([sample_next_token(logits, g, 1.0, top_k=100) for _ in range(N)])
    assert set(wide.tolist()) == set(range(6))


def test_sampler_is_the_inverse_cdf_of_one_uniform_per_row_from_the_generator():
    """Row b draws token i exactly when cdf[i-1] <= u_b < cdf[i], u_b the generator's b-th uniform
    (torch.rand((B, 1))): same generator, same tokens, whatever the global RNG. Rows allow 2^12
    tokens each, so cdf steps are multiples of 2^-12 and some uniforms (multiples of 2^-24) land
    exactly on a step; there the token is the one above the step (a half-open interval)."""
    from nanorlhf.model import sample_next_token
    B, m = 256, 4096
    on_a_step = 0
    for seed in range(64):
        g = torch.Generator().manual_seed(seed)
        allowed = 2 * torch.arange(m) + torch.randint(0, 2, (B, m), generator=g)  # (B, m): one of each pair
        logits = torch.full((B, 2 * m), float("-inf")).scatter(1, allowed, 0.0)  # each allowed token 1/m
        u = torch.rand((B, 1), generator=torch.Generator().manual_seed(1000 + seed))
        expected = allowed.gather(1, (u * m).long()).squeeze(1)  # exact: m is a power of two
        torch.manual_seed(seed)  # the global RNG must play no part
        got = sample_next_token(logits, torch.Generator().manual_seed(1000 + seed), 1.0)
        assert got.tolist() == expected.tolist()
        on_a_step += int(((u * m) == (u * m).floor()).sum())
        if on_a_step >= 2:
            return
    raise AssertionError("no uniform landed on a cdf step; the test checked only the easy case")


def test_generate_defaults_temperature_one_and_applies_top_k_and_the_seed():
    """generate() without a temperature samples at 1.0; top_k=1 at temperature 1 is greedy; the
    seeded generator alone decides the draws (same seed, same tokens, whatever the global RNG;
    another seed, other tokens)."""
    model = tiny()
    prompts = random_prompts(4, seed=7)
    run = lambda seed, **kw: generate(model, prompts, 16, eot_id=96, generator=torch.Generator().manual_seed(seed), **kw)[0]
    torch.manual_seed(1)
    default = run(3)
    torch.manual_seed(2)
    assert torch.equal(default, run(3, temperature=1.0))
    assert not torch.equal(default, run(3, temperature=2.0))
    assert not torch.equal(default, run(4))
    assert torch.equal(run(5, temperature=1.0, top_k=1), run(6, temperature=0.0))


def test_generate_uses_the_kv_cache_by_default():
    """By default the prompt is fed once and every later step feeds only the newest token; with
    use_cache=False each step feeds the whole sequence so far."""
    model = tiny()
    widths = []
    hook = model.register_forward_pre_hook(lambda mod, args: widths.append(args[0].size(1)))
    try:
        generate(model, [[5, 6, 7], [8]], 4, eot_id=96, temperature=0)
        cached, widths[:] = list(widths), []
        generate(model, [[5, 6, 7], [8]], 4, eot_id=96, temperature=0, use_cache=False)
    finally:
        hook.remove()
    assert cached == [3, 1, 1, 1] and widths == [3, 4, 5, 6]


def lively(seed=1, dtype=torch.float32):
    """tiny() with weights of std 0.2: its greedy continuations vary from step to step (at std 0.02
    they repeat the last prompt token, which would hide a wrong position or mask)."""
    model = tiny(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0, 0.2)
    return model.to(dtype)


def greedy_alone(model, prompt, n):
    """The reference: a plain forward of the unpadded sequence (positions 0.., causal mask only),
    the argmax of its last logits appended, n times."""
    seq = list(prompt)
    for _ in range(n):
        with torch.no_grad():
            seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq[len(prompt):]


@pytest.mark.parametrize("use_cache", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_greedy_generation_equals_a_plain_forward_loop(use_cache, dtype):
    """Greedy generation of left-padded prompts of different lengths (also a float64 model, whose
    KV cache must be float64) equals, row by row, the plain unpadded forward loop. The end-of-text
    id is one no row emits, so every row writes all N tokens; tokens are long, the mask bool."""
    model = lively(dtype=dtype)
    prompts, N = [[24, 72, 29, 90, 47], [35], [91, 39, 52]], 10
    ref = [greedy_alone(model, p, N) for p in prompts]
    eot = min(set(range(97)) - {t for r in ref for t in r} - {t for p in prompts for t in p})
    tokens, gen = generate(model, prompts, N, eot_id=eot, temperature=0, use_cache=use_cache)
    assert tokens.dtype == torch.long and gen.dtype == torch.bool and tokens.shape == gen.shape == (3, 5 + N)
    assert tokens[:, 5:].tolist() == ref
    assert gen.tolist() == [[False] * 5 + [True] * N] * 3


def test_generate_crops_to_block_size():
    """N = min(max_new_tokens, block_size - P): a prompt of 60 tokens in a block of 64 gets 4
    tokens, one of 63 exactly 1; one that fills the block is a clear ValueError."""
    model = lively()
    for P, n in ((60, 4), (63, 1)):
        tokens, gen = generate(model, [[1] * P], 20, eot_id=96, temperature=0)
        ref = greedy_alone(model, [1] * P, n)
        assert 96 not in ref and tokens[0, P:].tolist() == ref and gen.shape == (1, P + n)
    with pytest.raises(ValueError, match="prompt of 64 tokens leaves no room in block_size 64"):
        generate(model, [[1] * 64], 20, eot_id=96, temperature=0)


def test_generation_that_stops_early_returns_a_mask_as_long_as_the_tokens():
    """When every row stops before N, tokens and mask are cut at the same step: equal shapes, the
    last column the last row's end-of-text."""
    model = lively()
    prompts = [[5, 26, 87, 68], [24, 72, 29, 90, 47, 56], [91, 39, 52]]
    P, ref = 6, [greedy_alone(model, p, 12) for p in prompts]
    eot = next(t for t in range(97) if all(t in r for r in ref) and len({r.index(t) for r in ref}) > 1)
    first = [r.index(eot) for r in ref]
    tokens, gen = generate(model, prompts, 12, eot_id=eot, temperature=0)
    assert max(first) < 11 and tokens.shape == gen.shape == (3, P + max(first) + 1)
    assert gen.sum(1).tolist() == [f + 1 for f in first]
    assert tokens[0, P:].tolist() == ref[0][:first[0] + 1] + [eot] * (max(first) - first[0])


@pytest.mark.parametrize("head_at", [False, True])
def test_model_logprobs_fused_equals_the_plain_head(monkeypatch, head_at):
    """losses.model_logprobs / model_lm_loss from hidden states (kernels.hidden_logprobs) against the
    plain head + log_softmax: log-probs, entropy and every parameter's gradient; and the "auto" rule
    (CPU: fused only from FUSED_CPU_VOCAB tokens up; CUDA always)."""
    import kernels._dispatch as D
    from nanorlhf.losses import model_lm_loss, model_logprobs
    net = tiny(seed=5, n_embd=32, n_head=2)
    x = torch.randint(0, 97, (3, 11))
    at = torch.tensor([[2, 5, 9], [0, 1, 3], [4, 4, 8]]) if head_at else None
    y = x[:, 1:].gather(1, at) if head_at else x[:, 1:]
    mask = torch.rand(3, 10) > 0.3
    got = {}
    for mode in ("1", "0"):
        monkeypatch.setattr(D, "FUSED_LOGPROBS", mode)
        net.zero_grad()
        logp, ent = model_logprobs(net, x[:, :-1], y, 0.7, head_at=at, entropy=True)
        loss = -logp.sum() + (0 if head_at else model_lm_loss(net, x[:, :-1], x[:, 1:], mask))
        loss.backward()
        assert not ent.requires_grad  # a statistic: no gradient may flow through it on either path
        got[mode] = (logp.detach(), ent, loss.detach(), [p.grad.clone() for p in net.parameters() if p.grad is not None])
    for a, b in zip(got["1"][:3], got["0"][:3]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
    assert len(got["1"][3]) == len(got["0"][3]) > 0
    for a, b in zip(got["1"][3], got["0"][3]):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    monkeypatch.setattr(D, "FUSED_LOGPROBS", "auto")
    assert not D.use_fused_logprobs(x, D.FUSED_CPU_VOCAB - 1) and D.use_fused_logprobs(x, D.FUSED_CPU_VOCAB)


def test_auto_fuses_by_the_vocabulary_size_and_reads_through_ddp(monkeypatch, reference_kernels):
    """"auto" on CPU takes the fused path (kernels.hidden_logprobs) from FUSED_CPU_VOCAB tokens up,
    for model_logprobs and model_lm_loss alike; the size is the head's V, not its width C. The head
    is found through a DistributedDataParallel-style .module wrapper (losses.unembedding)."""
    import types

    import kernels._dispatch as D
    import nanorlhf.losses as L
    monkeypatch.setattr(D, "FUSED_LOGPROBS", "auto")
    calls, real = [], L.hidden_logprobs
    monkeypatch.setattr(L, "hidden_logprobs", lambda *a, **k: calls.append(1) or real(*a, **k))
    for V, fused in ((D.FUSED_CPU_VOCAB, True), (97, False)):
        net, calls[:] = tiny(seed=1, vocab_size=V, n_embd=16, n_head=2, n_layer=1), []
        x = torch.randint(0, V, (2, 6))
        L.model_logprobs(net, x[:, :-1], x[:, 1:])
        L.model_lm_loss(net, x[:, :-1], x[:, 1:], torch.ones(2, 5, dtype=torch.bool))
        assert len(calls) == 2 * fused, (V, calls)
        assert L.unembedding(types.SimpleNamespace(module=net)) is net.lm_head.weight is L.unembedding(net)
