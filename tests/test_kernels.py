"""
Property tests for kernels/: each Triton kernel against its PyTorch reference run in float64.

Without a GPU, Triton's interpreter runs the kernels on CPU tensors; tests/conftest.py sets
TRITON_INTERPRET=1 for that before anything imports triton (Triton reads it at import, when
`@triton.jit` runs). The interpreter is slow, so shapes stay small: T <= 40, V <= 300, and a
few fixed tests at hs = 64 / 128 and V = 50257. On a CUDA machine the same tests run the
compiled kernels on the GPU.

    pytest tests/test_kernels.py -q
"""
import importlib
import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")  # when this file is run without tests/conftest.py
pytest.importorskip("triton")

from hypothesis import example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from kernels import (  # noqa: E402
    hidden_logprobs,
    hidden_logprobs_ref,
    flash_attention,
    flash_attention_ref,
    token_entropy,
    token_entropy_ref,
    token_kl,
    token_kl_ref,
    token_logprobs,
    token_logprobs_ref,
)
from kernels._dispatch import use_triton  # noqa: E402

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
pytestmark = [
    pytest.mark.skipif(
        not use_triton(torch.empty(0, device=DEVICE)),
        reason="kernels was imported before TRITON_INTERPRET=1 was set: tests would compare the reference to itself",
    ),
    # the interpreter computes masked lanes too (e.g. -inf - -inf) before tl.where drops them; numpy warns
    pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning"),
]


def assert_close(actual, expected, atol, rtol, name="value"):
    """|actual - expected| <= atol + rtol * |expected| elementwise (equal infinities pass, NaN fails)."""
    a, e = actual.detach().cpu().double(), expected.detach().cpu().double()
    assert a.shape == e.shape, f"{name}: shape {tuple(a.shape)} != expected {tuple(e.shape)}"
    same = a == e  # also matches infinities of the same sign
    err = torch.where(same, 0.0, (a - e).abs())
    bad = ~(err <= atol + rtol * e.abs())  # NaN compares False, so it counts as bad
    if bad.any():
        i = bad.nonzero()[0].tolist()
        raise AssertionError(
            f"{name}: {int(bad.sum())}/{a.numel()} elements off (atol={atol}, rtol={rtol}); "
            f"max abs err {err.max().item():.3g}, mean abs err {err.mean().item():.3g}; "
            f"first at {i}: got {a[tuple(i)].item():.6g}, expected {e[tuple(i)].item():.6g}"
        )


# ----------------------------------------------------------------------------- strategies
# all strategies in one place; the random tensors come from a drawn seed
seeds = st.integers(0, 2**16)
dtypes = st.sampled_from([torch.float32, torch.float16, torch.bfloat16])
seq_lens = st.one_of(st.sampled_from([1, 2, 15, 16, 17, 31, 32, 37]), st.integers(1, 40))  # odd, prime, block edges
head_sizes = st.sampled_from([16, 32])
vocab_sizes = st.one_of(st.sampled_from([1, 2, 3, 64, 97, 128, 251, 300]), st.integers(1, 300))
lead_shapes = st.sampled_from([(1,), (5,), (2, 3), (3, 1)])  # the (...) before V
temperatures = st.sampled_from([1.0, 0.7, 1.6, 2.0])
logit_scales = st.sampled_from([1.0, 5.0, 30.0])


# Examples per property test. Each runs Triton's interpreter (seconds an example), so mutation testing
# (README "Mutation testing") caps them all with NANORLHF_KERNEL_EXAMPLES=N: a mutant of a wrapper
# fails on almost any input, and hundreds of mutants at 25-60 examples each would take hours.
KERNEL_EXAMPLES = int(os.environ.get("NANORLHF_KERNEL_EXAMPLES", "0"))


def examples(n):
    return settings(max_examples=min(n, KERNEL_EXAMPLES) if KERNEL_EXAMPLES else n)


def randn(*shape, seed, dtype=torch.float32, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return (scale * torch.randn(*shape, generator=g)).to(DEVICE, dtype)


# ----------------------------------------------------------------------------- flash attention
# (atol, rtol) per input dtype. fp16/bf16 round P before P @ V and round the outputs;
# on GPU fp32 matmuls use TF32 (10-bit mantissa), like bf16-ish precision.
ATTN_TOL = {
    torch.float32: (2e-3, 2e-3) if DEVICE == "cuda" else (1e-5, 1e-5),
    torch.float16: (5e-3, 5e-3),
    torch.bfloat16: (4e-2, 2e-2),
}


def attention_and_grads(fn, q, k, v, do, causal):
    q, k, v = (x.detach().requires_grad_() for x in (q, k, v))
    o = fn(q, k, v, causal=causal)
    return (o, *torch.autograd.grad(o, (q, k, v), do))


def check_attention(seed, B, nh, T, hs, causal, dtype, transposed=False):
    # transposed: q, k, v as the model makes them, (B, T, nh, hs).transpose(1, 2), not contiguous
    shape = (B, T, nh, hs) if transposed else (B, nh, T, hs)
    q, k, v, do = (randn(*shape, seed=seed + i, dtype=dtype) for i in range(4))
    if transposed:
        q, k, v, do = (x.transpose(1, 2) for x in (q, k, v, do))
    got = attention_and_grads(flash_attention, q, k, v, do, causal)
    want = attention_and_grads(flash_attention_ref, q.double(), k.double(), v.double(), do.double(), causal)
    atol, rtol = ATTN_TOL[dtype]
    for name, a, e in zip(("o", "dq", "dk", "dv"), got, want):
        assert a.dtype == dtype, f"{name} came back as {a.dtype}, not {dtype}"
        assert_close(a, e, atol, rtol, f"{name} (B={B} nh={nh} T={T} hs={hs} causal={causal} {dtype})")


@examples(50)
@given(seed=seeds, B=st.integers(1, 2), nh=st.integers(1, 2), T=seq_lens, hs=head_sizes,
       causal=st.booleans(), dtype=dtypes, transposed=st.booleans())  # fmt: skip
@example(seed=0, B=1, nh=1, T=1, hs=16, causal=True, dtype=torch.float32, transposed=False)  # a single token
@example(seed=1, B=2, nh=2, T=17, hs=32, causal=False, dtype=torch.bfloat16, transposed=True)  # block + 1
def test_flash_attention_matches_reference(seed, B, nh, T, hs, causal, dtype, transposed):
    check_attention(seed, B, nh, T, hs, causal, dtype, transposed)


@pytest.mark.parametrize("hs", [64, 128])
@pytest.mark.parametrize("causal", [True, False])
def test_flash_attention_large_heads(hs, causal):
    check_attention(0, 1, 2, 19, hs, causal, torch.float32)


def test_flash_attention_takes_a_given_scale_and_defaults_to_causal():
    """sm_scale other than 1/sqrt(hs) (kernel and reference; the reference's equals scaling q), and
    causal by default in both."""
    q, k, v, do = (randn(1, 2, 19, 16, seed=40 + i) for i in range(4))
    scaled = lambda fn: lambda q, k, v, causal: fn(q, k, v, causal=causal, sm_scale=0.3)
    got = attention_and_grads(scaled(flash_attention), q, k, v, do, True)
    want = attention_and_grads(scaled(flash_attention_ref), q.double(), k.double(), v.double(), do.double(), True)
    for name, a, e in zip(("o", "dq", "dk", "dv"), got, want):
        assert_close(a, e, *ATTN_TOL[torch.float32], f"{name} at sm_scale 0.3")
    assert_close(flash_attention_ref(q.double() * 0.3 * 4, k.double(), v.double()), want[0], 1e-12, 1e-12, "q scaled")
    assert torch.equal(flash_attention(q, k, v), flash_attention(q, k, v, causal=True))
    assert torch.equal(flash_attention_ref(q, k, v), flash_attention_ref(q, k, v, causal=True))


FA = importlib.import_module("kernels.flash_attention")  # the module, not the function kernels exports
LP = importlib.import_module("kernels.logprobs")
D = importlib.import_module("kernels._dispatch")
# every tuned entry (target, "16-bit" / "fp32", hs) and the default tile, each once
SHIPPED = sorted({k[:3] for k in FA.TUNED_TILES} | {(90, "16-bit", 64), (90, "fp32", 64)})


TILE_KEYS = ("BLOCK_M", "BLOCK_N", "num_warps", "num_stages")


def test_attention_tiles_launch_the_tuned_table(monkeypatch):
    """What each GPU gets: every TUNED_TILES entry for its (capability, dtype group, head size, kernel),
    the default tile of the dtype's group elsewhere (an sm_87, a head size of 16); a CUDA tensor's
    capability is read from its own device (_tiles), and the delta kernel takes 64 rows, 32 at hs 128."""
    for (target, group, hs, kernel), tile in FA.TUNED_TILES.items():
        for dtype in (torch.float32,) if group == "fp32" else (torch.float16, torch.bfloat16):
            assert FA.attention_tiles(divmod(target, 10), dtype, hs)[kernel] == dict(zip(TILE_KEYS, tile))
    for dtype, group in ((torch.float32, "fp32"), (torch.bfloat16, "16-bit")):
        default = dict(zip(TILE_KEYS, FA.DEFAULT_TILE[group]))
        assert FA.attention_tiles((8, 7), dtype, 128) == FA.attention_tiles((9, 0), dtype, 16) == \
            {k: default for k in ("fwd", "dkdv", "dq")}
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d: {"cuda:1": (9, 0)}[d])
    fake = types.SimpleNamespace(is_cuda=True, device="cuda:1", dtype=torch.float32, shape=(1, 2, 3, 128))
    assert FA._tiles(fake) == FA.attention_tiles((9, 0), torch.float32, 128) != FA.attention_tiles((9, 0), torch.float32, 64)
    assert FA._tiles(fake) != FA.attention_tiles((9, 0), torch.bfloat16, 128)
    monkeypatch.setattr(FA, "INTERPRET", False)
    assert [FA.pre_block(hs) for hs in (16, 32, 64, 128)] == [64, 64, 64, 32]
    assert all(type(FA.pre_block(hs)) is int for hs in (16, 128))


def test_flash_attention_checks_its_shapes_and_saves_the_row_logsumexp():
    q = randn(2, 3, 5, 16, seed=50, dtype=torch.float32).requires_grad_()
    o = flash_attention(q, q, q)
    lse = o.grad_fn.saved_tensors[4]  # (B, nh, T): the backward recomputes P from it
    assert lse.shape == (2, 3, 5) and lse.dtype == torch.float32
    with pytest.raises(AssertionError, match=r"^q, k, v must all be \(B, nh, T, hs\)$"):
        flash_attention(q, q, q[:, :, :4])
    with pytest.raises(AssertionError, match="^head size must be 16, 32, 64 or 128$"):
        flash_attention(*(randn(1, 1, 4, 8, seed=51) for _ in range(3)))


@pytest.mark.skipif(DEVICE == "cuda", reason="on a GPU every test already runs the shipped tiles")
@pytest.mark.parametrize("target,group,hs", SHIPPED)
def test_flash_attention_shipped_gpu_tiles(monkeypatch, target, group, hs):
    """The GPU launch settings of attention_tiles, run by the interpreter (which ignores warps and
    stages but not the block sizes) at T = 2 * 64 + 3: two full blocks and a ragged tail."""
    dtype = torch.float32 if group == "fp32" else torch.float16
    tiles = FA.attention_tiles(divmod(target, 10), dtype, hs)
    monkeypatch.setattr(FA, "_tiles", lambda x: tiles)
    check_attention(0, 1, 1, 131, hs, True, dtype)


@examples(20)
@given(seed=seeds, T=st.integers(2, 40), data=st.data())
def test_flash_attention_causal_ignores_future(seed, T, data):
    """Changing keys and values after position i changes neither o[:i+1] nor dq[:i+1]."""
    i = data.draw(st.integers(0, T - 2), label="i")
    q, k, v, do = (randn(1, 2, T, 16, seed=seed + j) for j in range(4))
    k2, v2 = k.clone(), v.clone()
    k2[:, :, i + 1 :] = randn(1, 2, T - i - 1, 16, seed=seed + 4, scale=10.0)
    v2[:, :, i + 1 :] = randn(1, 2, T - i - 1, 16, seed=seed + 5, scale=10.0)
    o, dq, _, _ = attention_and_grads(flash_attention, q, k, v, do, causal=True)
    o2, dq2, _, _ = attention_and_grads(flash_attention, q, k2, v2, do, causal=True)
    assert_close(o2[:, :, : i + 1], o[:, :, : i + 1], 1e-6, 0, "o before the perturbed keys")
    assert_close(dq2[:, :, : i + 1], dq[:, :, : i + 1], 1e-6, 0, "dq before the perturbed keys")


# ----------------------------------------------------------------------------- log-probs, entropy, KL
# Values are fp32 math on the same (rounded) inputs: tight. Gradients come back in the
# logits' dtype, so they carry its rounding: rtol of about one half-precision ulp.
GRAD_TOL = {torch.float32: (1e-5, 1e-4), torch.float16: (1e-5, 1e-3), torch.bfloat16: (1e-5, 8e-3)}


def value_and_grad(fn, logits, *args):
    """fn(logits, *args) and the gradient of sum(w * fn) for fixed random weights w."""
    logits = logits.detach().requires_grad_()
    out = fn(logits, *args)
    w = randn(*out.shape, seed=1234, dtype=out.dtype)
    (grad,) = torch.autograd.grad((w * out).sum(), logits)
    return out, grad


def check_against_reference(fn, ref, logits, *args, atol=1e-4, rtol=1e-5, grad_tol=None, what=""):
    """Kernel vs float64 reference on the same inputs: values, gradient and its dtype."""
    out, grad = value_and_grad(fn, logits, *args)
    args64 = [a.double() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    out_ref, grad_ref = value_and_grad(ref, logits.double(), *args64)
    assert out.dtype == torch.float32 and grad.dtype == logits.dtype
    assert_close(out, out_ref, atol, rtol, f"{fn.__name__} {what}")
    assert_close(grad, grad_ref, *(grad_tol or GRAD_TOL[logits.dtype]), f"d {fn.__name__} / d logits {what}")


@examples(40)
@given(seed=seeds, lead=lead_shapes, V=vocab_sizes, dtype=dtypes, temperature=temperatures, scale=logit_scales)
@example(seed=0, lead=(3,), V=1, dtype=torch.float32, temperature=1.0, scale=1.0)  # a one-word vocabulary
@example(seed=2, lead=(2, 3), V=37, dtype=torch.float32, temperature=0.7, scale=5.0)  # (B, T, V) logits
def test_token_logprobs_matches_reference(seed, lead, V, dtype, temperature, scale):
    logits = randn(*lead, V, seed=seed, dtype=dtype, scale=scale)
    targets = torch.randint(0, V, lead, generator=torch.Generator().manual_seed(seed)).to(DEVICE)
    what = f"(lead={lead} V={V} {dtype} tau={temperature} scale={scale})"
    check_against_reference(token_logprobs, token_logprobs_ref, logits, targets, temperature, what=what)


@examples(25)  # Triton's interpreter: seconds an example
@given(seed=seeds, lead=lead_shapes, V=vocab_sizes, dtype=dtypes, temperature=temperatures, scale=logit_scales)
def test_token_entropy_matches_reference(seed, lead, V, dtype, temperature, scale):
    logits = randn(*lead, V, seed=seed, dtype=dtype, scale=scale)
    what = f"(lead={lead} V={V} {dtype} tau={temperature} scale={scale})"
    check_against_reference(token_entropy, token_entropy_ref, logits, temperature, what=what)


@examples(25)  # Triton's interpreter: seconds an example
@given(seed=seeds, lead=lead_shapes, V=vocab_sizes, dtype=dtypes, scale=logit_scales)
def test_token_kl_matches_reference(seed, lead, V, dtype, scale):
    logits = randn(*lead, V, seed=seed, dtype=dtype, scale=scale)
    ref_logits = logits + randn(*lead, V, seed=seed + 1, dtype=dtype)  # a nearby policy, as in PPO
    what = f"(lead={lead} V={V} {dtype} scale={scale})"
    check_against_reference(token_kl, token_kl_ref, logits, ref_logits, atol=1e-4, rtol=1e-4, what=what)


def test_logits_with_a_strided_vocabulary_axis():
    """A view whose vocabulary axis is not contiguous (here a transpose) is copied to unit stride
    before the row kernels read it: values and gradients as for the contiguous tensor."""
    logits = randn(13, 4, seed=70).t()  # (4, 13), stride (1, 4)
    targets = torch.tensor([0, 5, 12, 3], device=DEVICE)
    check_against_reference(token_logprobs, token_logprobs_ref, logits, targets, 0.7)
    check_against_reference(token_entropy, token_entropy_ref, logits, 1.6)
    check_against_reference(token_kl, token_kl_ref, logits, randn(13, 4, seed=71).t())
    every_other = randn(4, 26, seed=73)[:, ::2]  # (4, 13), stride (26, 2)
    check_against_reference(token_logprobs, token_logprobs_ref, every_other, targets, 1.0)


def test_row_kernels_save_each_rows_max_and_logsumexp():
    """The forward saves one (max, log-sum-exp) pair per row, (N, 2) fp32, for the backward."""
    logits = randn(2, 3, 7, seed=72).requires_grad_()
    saved = token_logprobs(logits, torch.zeros(2, 3, dtype=torch.long, device=DEVICE)).grad_fn.saved_tensors
    assert saved[2].shape == (6, 2) and saved[2].dtype == torch.float32
    saved = token_kl(logits, logits.detach() + 1).grad_fn.saved_tensors  # x, y, stats_x, stats_y, out
    assert saved[2].shape == saved[3].shape == (6, 2) and saved[4].shape == (6,)
    with pytest.raises(AssertionError, match=r"logits \(2, 3, 7\) vs ref_logits \(2, 3, 6\)"):
        token_kl(logits, logits[..., :6])


def test_each_wrapper_runs_its_kernel_under_the_interpreter_and_its_reference_without(monkeypatch):
    """The dispatch (kernels/_dispatch.py): with the interpreter every wrapper launches its kernel and
    never calls its reference; without it each returns exactly its reference, every argument passed."""
    z, t, q = randn(3, 11, seed=60), torch.tensor([1, 0, 10], device=DEVICE), randn(1, 2, 5, 16, seed=61)
    cases = [(token_logprobs, LP, "token_logprobs_ref", (z, t, 0.7)), (token_entropy, LP, "token_entropy_ref", (z, 0.7)),
             (token_kl, LP, "token_kl_ref", (z, z.flip(0))), (flash_attention, FA, "flash_attention_ref", (q, q.flip(2), 2 * q, True, 0.3))]

    def boom(*args, **kwargs):
        raise AssertionError("the reference ran where the kernel should")

    for fn, module, ref_name, args in cases:
        with monkeypatch.context() as m:
            m.setattr(module, ref_name, boom)
            fn(*args)
    monkeypatch.setattr(D, "INTERPRET", False)
    for fn, module, ref_name, args in cases:
        assert torch.equal(fn(*args), getattr(module, ref_name)(*args)), fn.__name__


def extreme_logits(seed, N, V, dtype):
    """Logits with entries at +-1e4 and -inf (a masked vocabulary), and targets that are finite."""
    g = torch.Generator().manual_seed(seed)
    logits = 3 * torch.randn(N, V, generator=g)
    kind = torch.randint(0, 6, (N, V), generator=g)
    logits[kind == 0] = 1e4
    logits[kind == 1] = -1e4
    logits[kind == 2] = float("-inf")
    logits[:, 0] = 1.0  # every row keeps a finite entry
    finite = torch.isfinite(logits).float()
    targets = torch.multinomial(finite, 1, generator=g).squeeze(-1)
    return logits.to(DEVICE, dtype), targets.to(DEVICE)


@examples(25)
@given(seed=seeds, N=st.integers(1, 4), V=vocab_sizes, dtype=dtypes)
def test_extreme_and_masked_logits(seed, N, V, dtype):
    # fp32 numbers near 1e4 are 1e-3 apart, so sums of terms that size carry ~1e-3 absolute error;
    # the KL gradient p (a - KL) subtracts two such numbers (torch's fp32 log_softmax errs as much)
    logits, targets = extreme_logits(seed, N, V, dtype)
    ref_logits, _ = extreme_logits(seed + 1, N, V, dtype)
    # the same masked vocabulary: where only q is masked, KL = inf (correct, but not comparable)
    ref_logits = torch.where(logits == float("-inf"), logits, ref_logits.nan_to_num(neginf=-1e4))
    logp = token_logprobs(logits, targets)
    assert torch.isfinite(logp).all(), "non-finite log-prob at a finite target"
    check_against_reference(token_logprobs, token_logprobs_ref, logits, targets, 0.9, atol=4e-3, rtol=1e-5)
    check_against_reference(token_entropy, token_entropy_ref, logits, atol=4e-3, rtol=1e-5)
    kl_grad_tol = (1e-3, GRAD_TOL[dtype][1])
    check_against_reference(token_kl, token_kl_ref, logits, ref_logits, atol=4e-3, rtol=1e-5, grad_tol=kl_grad_tol)


@examples(15)
@given(seed=seeds, V=st.one_of(st.sampled_from([1, 2, 37, 64]), st.integers(1, 64)),  # V rows per call: keep V small
       temperature=temperatures, scale=logit_scales, shift=st.sampled_from([-50.0, 3.0, 100.0]))  # fmt: skip
def test_logprob_invariants(seed, V, temperature, scale, shift):
    """log-probs <= 0, exp(log-probs) over the whole vocabulary sums to 1, adding a constant changes nothing."""
    logits = randn(V, seed=seed, scale=scale)
    all_logp = token_logprobs(logits.expand(V, V), torch.arange(V, device=DEVICE), temperature)  # (V,)
    assert (all_logp <= 0).all()
    assert abs(all_logp.double().exp().sum().item() - 1) < 1e-5
    logits, shifted = logits.view(1, V), logits.view(1, V) + shift
    first = torch.zeros(1, dtype=torch.long, device=DEVICE)
    assert_close(token_logprobs(shifted, first, temperature), all_logp[:1], 1e-4, 1e-5, "log-prob after adding a constant")
    assert_close(token_entropy(shifted, temperature), token_entropy(logits, temperature), 1e-4, 1e-5, "entropy")
    assert_close(token_kl(shifted, logits), torch.zeros(1), 1e-4, 0, "KL to a shifted copy")


@examples(25)  # Triton's interpreter: seconds an example
@given(seed=seeds, lead=lead_shapes, V=vocab_sizes, scale=logit_scales)
def test_entropy_and_kl_invariants(seed, lead, V, scale):
    """0 <= H <= log V; KL >= 0, and KL(p || p) == 0."""
    logits = randn(*lead, V, seed=seed, scale=scale)
    h = token_entropy(logits)
    assert (h >= -1e-6).all() and (h <= torch.log(torch.tensor(float(V))) + 1e-5).all()
    assert (token_kl(logits, randn(*lead, V, seed=seed + 1, scale=scale)) >= -1e-6).all()
    kl_self, grad = value_and_grad(token_kl, logits, logits)
    assert_close(kl_self, torch.zeros(lead), 1e-6, 0, "KL(p || p)")
    assert_close(grad, torch.zeros_like(grad), 1e-6, 0, "dKL(p || p) / dlogits")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_gpt2_vocabulary(dtype):
    """V = 50257 (GPT-2's vocabulary, 29 * 1733: no power-of-two chunking divides it) at two tokens."""
    logits = randn(1, 2, 50257, seed=0, dtype=dtype, scale=4.0)
    ref_logits = logits + randn(1, 2, 50257, seed=1, dtype=dtype)
    targets = torch.tensor([[17, 50256]], device=DEVICE)
    # fp32 sums over 50k terms: a little looser than the small-V tests
    check_against_reference(token_logprobs, token_logprobs_ref, logits, targets, 0.8, atol=1e-4, rtol=1e-5)
    check_against_reference(token_entropy, token_entropy_ref, logits, 0.8, atol=1e-4, rtol=1e-4)
    check_against_reference(token_kl, token_kl_ref, logits, ref_logits, atol=1e-4, rtol=1e-4)


# ----------------------------------------------------------------------------- log-probs from hidden states
# hidden_logprobs never holds the (N, V) logits: chunks of rows, logits made again in the backward.
# float64 runs its PyTorch chunks (the Triton kernels compute in fp32), so values and gradients
# (dh, dW) are checked to ~1e-10; fp32 runs the Triton chunk kernels under the interpreter.

def hidden_case(seed, N, C, V, dtype=torch.float64, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    h = (scale * torch.randn(N, C, generator=g)).to(DEVICE, dtype).requires_grad_()
    W = torch.randn(V, C, generator=g).to(DEVICE, dtype).requires_grad_()
    y = torch.randint(0, V, (N,), generator=g).to(DEVICE)
    g_lp, g_H = torch.randn(N, generator=g).to(DEVICE, dtype), torch.randn(N, generator=g).to(DEVICE, dtype)
    return h, W, y, g_lp, g_H


def hidden_value_and_grads(fn, h, W, y, g_lp, g_H, temperature, entropy, **kw):
    out = fn(h, W, y, temperature, entropy=entropy, **kw)
    outs = out if entropy else (out,)
    loss = (outs[0] * g_lp).sum() + ((outs[1] * g_H).sum() if entropy else 0)
    return outs, torch.autograd.grad(loss, (h, W))


@examples(60)
@given(seed=seeds, N=st.one_of(st.sampled_from([1, 7, 8, 9, 33]), st.integers(1, 40)), C=st.sampled_from([1, 3, 16]),
       V=vocab_sizes, chunk=st.sampled_from([1, 4, 8, 1024]), temperature=temperatures, scale=logit_scales,
       entropy=st.booleans())
@example(seed=0, N=9, C=3, V=251, chunk=4, temperature=1.0, scale=1.0, entropy=True)  # N not a multiple of chunk
def test_hidden_logprobs_matches_reference_float64(seed, N, C, V, chunk, temperature, scale, entropy):
    """Values, entropy and both gradients (dh, dW) against log_softmax(h @ W.T).gather in float64."""
    h, W, y, g_lp, g_H = hidden_case(seed, N, C, V, scale=scale)
    got, (dh, dW) = hidden_value_and_grads(hidden_logprobs, h, W, y, g_lp, g_H, temperature, entropy, chunk=chunk)
    want, (dh_ref, dW_ref) = hidden_value_and_grads(hidden_logprobs_ref, h, W, y, g_lp, g_H, temperature, entropy)
    what = f"(N={N} C={C} V={V} chunk={chunk} tau={temperature} scale={scale})"
    for name, a, e in zip(("logp", "entropy"), got, want):
        assert a.dtype == torch.float64 and a.shape == (N,)
        assert_close(a, e, 1e-10, 1e-10, f"{name} {what}")
    assert_close(dh, dh_ref, 1e-9, 1e-9, f"dh {what}")
    assert_close(dW, dW_ref, 1e-9, 1e-9, f"dW {what}")


@examples(10)  # the Triton chunk kernels in the interpreter
@given(seed=seeds, N=st.integers(1, 12), V=st.sampled_from([1, 97, 300]), chunk=st.sampled_from([5, 64]),
       temperature=temperatures)
@example(seed=1, N=12, V=97, chunk=5, temperature=0.7)  # three chunks, the last one short
def test_hidden_logprobs_fp32_chunks(seed, N, V, chunk, temperature):
    """fp32: the Triton chunk kernels (on CUDA, or the interpreter) against the float64 reference."""
    h, W, y, g_lp, g_H = hidden_case(seed, N, 8, V, dtype=torch.float32)
    got, (dh, dW) = hidden_value_and_grads(hidden_logprobs, h, W, y, g_lp, g_H, temperature, True, chunk=chunk)
    args64 = [t.detach().double().requires_grad_(t.requires_grad) for t in (h, W)]
    want, (dh_ref, dW_ref) = hidden_value_and_grads(hidden_logprobs_ref, *args64, y, g_lp.double(), g_H.double(),
                                                    temperature, True)
    assert got[0].dtype == torch.float32 and dh.dtype == dW.dtype == torch.float32
    for name, a, e in zip(("logp", "entropy"), got, want):
        assert_close(a, e, 1e-4, 1e-5, name)
    assert_close(dh, dh_ref, 1e-4, 1e-4, "dh")
    assert_close(dW, dW_ref, 1e-4, 1e-4, "dW")


def test_hidden_logprobs_gpt2_vocabulary_and_lead_shape():
    """V = 50257 (prime to every chunking), (B, T) targets, 13 rows in chunks of 4, float64."""
    h, W, y, g_lp, g_H = hidden_case(3, 13, 4, 50257)
    got, (dh, dW) = hidden_value_and_grads(lambda h, W, y, *a, **k: hidden_logprobs(h.view(1, 13, 4), W, y.view(1, 13),
                                                                                   *a, **k, chunk=4),
                                           h, W, y, g_lp.view(1, 13), g_H.view(1, 13), 0.8, True)
    want, (dh_ref, dW_ref) = hidden_value_and_grads(hidden_logprobs_ref, h, W, y, g_lp, g_H, 0.8, True)
    assert got[0].shape == got[1].shape == (1, 13)
    for a, e in zip(got, want):
        assert_close(a.flatten(), e, 1e-10, 1e-10)
    assert_close(dh, dh_ref, 1e-9, 1e-9, "dh")
    assert_close(dW, dW_ref, 1e-9, 1e-9, "dW")


def test_hidden_logprobs_defaults_and_shape_check():
    """Temperature 1 and no entropy by default, in the kernel and its reference; h and targets of
    different lengths are refused with both shapes in the message."""
    h, W, y, _, _ = hidden_case(5, 6, 3, 13)
    want = torch.log_softmax(h @ W.t(), -1).gather(1, y[:, None]).squeeze(1)
    assert_close(hidden_logprobs_ref(h, W, y), want, 1e-12, 1e-12, "reference log-probs at the defaults")
    assert_close(hidden_logprobs(h, W, y), want, 1e-12, 1e-12, "log-probs at the defaults")
    with pytest.raises(AssertionError, match=r"h \(6, 3\) vs targets \(5,\)"):
        hidden_logprobs(h, W, y[:5])


@pytest.mark.parametrize("wants", ["h", "W", "entropy only"])
def test_hidden_logprobs_gradients_reach_what_asks_for_them(wants):
    """A frozen head (only h needs a gradient), frozen hidden states (only W), and a loss on the
    entropy alone (the log-probs' gradient is None): each against the float64 reference."""
    h, W, y, g_lp, g_H = hidden_case(6, 9, 3, 17)
    h.requires_grad_(wants != "W")
    W.requires_grad_(wants != "h")
    leaves = [x for x in (h, W) if x.requires_grad]

    def grads(fn):
        lp, ent = fn(h, W, y, 0.8, entropy=True, **({"chunk": 4} if fn is hidden_logprobs else {}))
        loss = (ent * g_H).sum() + (0 if wants == "entropy only" else (lp * g_lp).sum())
        return torch.autograd.grad(loss, leaves)

    for a, e in zip(grads(hidden_logprobs), grads(hidden_logprobs_ref)):
        assert_close(a, e, 1e-9, 1e-9, f"gradient ({wants})")


def test_hidden_logprobs_matmuls_in_the_autocast_or_promoted_dtype(monkeypatch, reference_kernels):
    """Under CPU autocast the chunk logits are bf16 (as on CUDA) and match a bf16 head's to fp32
    rounding, with fp32 outputs and gradients; with mixed input dtypes the matmuls run in the
    promoted one (float64 here), so both orders equal the float64 reference."""
    assert LP._mm_dtype(torch.randn(2, 3), torch.randn(5, 3, dtype=torch.float64)) == torch.float64
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert LP._mm_dtype(torch.randn(2, 3), torch.randn(5, 3, dtype=torch.float64)) == torch.bfloat16
    seen, real = [], LP._chunk_stats
    monkeypatch.setattr(LP, "_chunk_stats", lambda z, *a: seen.append(z.dtype) or real(z, *a))
    h, W, y, g_lp, _ = hidden_case(7, 10, 8, 33, dtype=torch.float32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lp = hidden_logprobs(h, W, y, 0.7, chunk=4)
    assert seen == [torch.bfloat16] * 3 and lp.dtype == torch.float32
    want = torch.log_softmax((h.bfloat16() @ W.bfloat16().t()).float() / 0.7, -1).gather(1, y[:, None]).squeeze(1)
    assert_close(lp, want, 1e-5, 1e-5, "log-probs of bf16 logits")
    dh, dW = torch.autograd.grad((lp * g_lp).sum(), (h, W))
    assert dh.dtype == dW.dtype == torch.float32
    for h_dtype, W_dtype in ((torch.float32, torch.float64), (torch.float64, torch.float32)):
        h, W, y, g_lp, _ = hidden_case(8, 7, 5, 19)
        h32, W32 = (x.detach().to(d).requires_grad_() for x, d in ((h, h_dtype), (W, W_dtype)))
        lp = hidden_logprobs(h32, W32, y, 0.9, chunk=3)
        got = (lp, *torch.autograd.grad((lp * g_lp).sum(), (h32, W32)))
        lp64 = hidden_logprobs_ref(h32.double(), W32.double(), y, 0.9)
        want = (lp64, *torch.autograd.grad((lp64 * g_lp).sum(), (h32, W32)))
        assert got[0].dtype == torch.float64 and (got[1].dtype, got[2].dtype) == (h_dtype, W_dtype)
        for name, a, e in zip(("logp", "dh", "dW"), got, want):
            assert_close(a, e, 1e-6, 1e-6, f"{name} (h {h_dtype}, W {W_dtype})")


def test_hidden_chunk_bounds_the_logits_of_a_chunk():
    """hidden_chunk(V) rows hold at most 2**25 logits (128 MiB in fp32), one row more would not fit,
    and a chunk has at least one row whatever V."""
    for V in (1, 2, 97, 50257, 2**25):
        c = LP.hidden_chunk(V)
        assert type(c) is int and c * V <= 2**25 < (c + 1) * V, (V, c)
    assert LP.hidden_chunk(50257) == 667 and LP.hidden_chunk(2**26) == 1


# ----------------------------------------------------------------------------- dispatch
FALLBACK_SCRIPT = """
import sys, torch
if sys.argv[1] == "no-triton":
    sys.modules["triton"] = None  # makes `import triton` raise ImportError, as on macOS
import kernels
from kernels._dispatch import use_triton
assert not use_triton(torch.zeros(1)), "CPU tensors should run the references here"
z, t = torch.randn(3, 11), torch.randint(0, 11, (3,))
q = torch.randn(1, 2, 5, 16)
assert torch.equal(kernels.token_logprobs(z, t), kernels.token_logprobs_ref(z, t))
assert torch.equal(kernels.token_entropy(z), kernels.token_entropy_ref(z))
assert torch.equal(kernels.token_kl(z, z.flip(0)), kernels.token_kl_ref(z, z.flip(0)))
assert torch.equal(kernels.flash_attention(q, q, q), kernels.flash_attention_ref(q, q, q))
"""


@pytest.mark.skipif(DEVICE == "cuda", reason="checks the CPU dispatch")
@pytest.mark.parametrize("case", ["no-interpreter", "no-triton"])
def test_cpu_falls_back_to_references(case):
    """Without TRITON_INTERPRET=1, or without triton at all, CPU tensors run the references."""
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "TRITON_INTERPRET": "0" if case == "no-interpreter" else "1", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", FALLBACK_SCRIPT, case], env=env, cwd=root, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_fused_logprobs_switch(monkeypatch):
    """NANORLHF_FUSED_LOGPROBS=1 always fuses and 0 never, whatever the vocabulary; any other value
    is refused with a message naming the variable (tests/test_model.py checks "auto")."""
    for mode, want in (("1", True), ("0", False)):
        monkeypatch.setattr(D, "FUSED_LOGPROBS", mode)
        assert [D.use_fused_logprobs(torch.zeros(1), V) for V in (97, 50257)] == [want, want]
    monkeypatch.setattr(D, "FUSED_LOGPROBS", "yes")
    with pytest.raises(ValueError, match="NANORLHF_FUSED_LOGPROBS must be auto, 0 or 1, got 'yes'"):
        D.use_fused_logprobs(torch.zeros(1), 97)
