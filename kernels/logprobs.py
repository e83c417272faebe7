"""
Fused per-token log-prob, entropy and KL over the vocabulary, in Triton.

Run `TRITON_INTERPRET=1 python -m kernels.logprobs` to check it on CPU,
or `python -m kernels.logprobs` on a GPU to check and benchmark it.

PPO needs, for every generated token, log pi(token) at the sampling temperature
(the ratio pi / pi_old is wrong otherwise), sometimes the policy entropy, and the
KL to the reference policy. The naive `log_softmax(logits).gather(...)` writes
and reads a second (N, V) fp32 tensor (N = tokens, V = 50257): 3.3 GB at 16k
tokens, more than the bf16 logits themselves. Here one program per row streams
the row in BLOCK_V chunks and keeps only scalars.

Math, for one row of logits z (V entries), temperature tau, x = z / tau:

    lse       = m + log s                           online: running max m, running sum
                                                    s = sum_j exp(x_j - m), rescaled by
                                                    exp(m - m') when the max grows to m'
    log p_j   = (x_j - m) - log s                   = x_j - lse, but exact at huge logits
    logprob   = log p_t                             t = target token
    entropy H = -sum_j p_j log p_j                  second pass, once lse is known
    KL(p||q)  = sum_j p_j (log p_j - log q_j)       q = softmax(ref logits); first pass
                                                    gives both lse's, second the sum

Backward (g = upstream gradient of the row's scalar):

    d logprob / d z_j = (onehot(t)_j - p_j) / tau
    d H       / d z_j = -p_j (log p_j + H) / tau
    d KL      / d z_j = p_j ((log p_j - log q_j) - KL)

computed chunk by chunk from the saved (m, log s), again without an (N, V) softmax.
Logits may be fp32/fp16/bf16 and may hold -inf (masked vocabulary): the math is
fp32, results are fp32, gradients come back in the logits' dtype, and 0 * (-inf)
terms of masked entries are taken as 0 (p_j = 0 there).
"""
import torch

from ._dispatch import INTERPRET, tl, triton, use_triton


def _fp32(x):
    """Half-precision inputs are computed in fp32; float64 stays float64 (the tests' references)."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


def token_logprobs_ref(logits, targets, temperature=1.0):
    """log softmax(logits / temperature)[target]: (..., V), (...) -> fp32 (...)."""
    logp = torch.log_softmax(_fp32(logits) / temperature, dim=-1)
    return logp.gather(-1, targets.long().unsqueeze(-1)).squeeze(-1)


def token_entropy_ref(logits, temperature=1.0):
    """Entropy of softmax(logits / temperature): (..., V) -> fp32 (...)."""
    logp = torch.log_softmax(_fp32(logits) / temperature, dim=-1)
    # masked (-inf) entries have p = 0 and contribute 0; fill before multiplying, not after,
    # or the backward of 0 * (-inf) puts NaN in the gradient
    return -(logp.exp() * logp.masked_fill(logp == float("-inf"), 0.0)).sum(-1)


def token_kl_ref(logits, ref_logits):
    """KL(softmax(logits) || softmax(ref_logits)) over the full vocabulary: (..., V) -> fp32 (...)."""
    logp = torch.log_softmax(_fp32(logits), dim=-1)
    logq = torch.log_softmax(_fp32(ref_logits), dim=-1)
    log_ratio = (logp - logq).masked_fill(logp == float("-inf"), 0.0)  # p = 0 there (see entropy)
    return (logp.exp() * log_ratio).sum(-1)


# ----------------------------------------------------------------------------- kernels
# One program per row. Row r of a (N, V) logits tensor starts at r * stride; r is cast
# to int64 first because N * V passes 2**31 (43k tokens at V = 50257).
#
# The normalizer is kept as two fp32 numbers per row, STATS[r] = (m, log s), lse = m + log s,
# and log p_j is computed as (x_j - m) - log s. Rounding m + log s to one fp32 would cost up
# to 1e-3 in every log p when logits reach 1e4 (fp32 spacing there), which the KL's sum
# multiplies by the log-ratio. torch.log_softmax also subtracts the max first.


@triton.jit
def _load_chunk(ROW, start, V, temperature, BLOCK_V: tl.constexpr):
    """Chunk [start, start + BLOCK_V) of a row as fp32 x = z / temperature, -inf past V."""
    offs = start + tl.arange(0, BLOCK_V)
    z = tl.load(ROW + offs, mask=offs < V, other=float("-inf")).to(tl.float32)
    return offs, z / temperature


@triton.jit
def _row_logsumexp(ROW, V, temperature, BLOCK_V: tl.constexpr):
    """(m, log s) of one row, lse = m + log s, streamed with the online (running max) rescaling."""
    m = float("-inf")  # running max
    s = 0.0  # running sum of exp(x - m)
    for start in range(0, V, BLOCK_V):
        _, x = _load_chunk(ROW, start, V, temperature, BLOCK_V)
        m_new = tl.maximum(m, tl.max(x, 0))
        # while every entry so far is -inf, shift by 0: -inf - (-inf) would be NaN
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        s = s * tl.exp(m - m_shift) + tl.sum(tl.exp(x - m_shift), 0)
        m = m_new
    return m, tl.log(s)


@triton.jit
def _logprobs_fwd_kernel(
    X,  # (N, V) logits, any float dtype, unit stride along V
    TGT,  # (N,) int64 target token ids
    STATS,  # (N, 2) fp32 out: (m, log s) of the row at this temperature, saved for the backward
    LOGP,  # (N,) fp32 out: log p(target)
    stride,  # distance between rows of X, in elements
    V, temperature,
    BLOCK_V: tl.constexpr,  # vocabulary entries per chunk
):
    row = tl.program_id(0).to(tl.int64)
    ROW = X + row * stride
    m, log_s = _row_logsumexp(ROW, V, temperature, BLOCK_V)
    x_t = tl.load(ROW + tl.load(TGT + row)).to(tl.float32) / temperature
    tl.store(STATS + 2 * row, m)
    tl.store(STATS + 2 * row + 1, log_s)
    tl.store(LOGP + row, (x_t - m) - log_s)


@triton.jit
def _logprobs_bwd_kernel(
    X,  # (N, V) logits from the forward
    TGT,  # (N,) int64 target token ids
    STATS,  # (N, 2) fp32 (m, log s) from the forward
    DOUT,  # (N,) fp32 gradient of each row's log-prob
    DX,  # (N, V) out: gradient of the logits, contiguous, logits' dtype
    stride, V, temperature,
    BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    ROW = X + row * stride
    m, log_s = tl.load(STATS + 2 * row), tl.load(STATS + 2 * row + 1)
    g = tl.load(DOUT + row) / temperature
    tgt = tl.load(TGT + row)
    for start in range(0, V, BLOCK_V):
        offs, x = _load_chunk(ROW, start, V, temperature, BLOCK_V)
        p = tl.exp((x - m) - log_s)
        dx = g * (tl.where(offs == tgt, 1.0, 0.0) - p)  # (onehot - softmax) / tau * g
        tl.store(DX + row * V + offs, dx.to(DX.dtype.element_ty), mask=offs < V)


@triton.jit
def _entropy_kl_fwd_kernel(
    X,  # (N, V) logits of p
    Y,  # (N, V) logits of q (ref policy); unused when HAS_REF is False
    STATS_X,  # (N, 2) fp32 out: (m, log s) of x, saved for the backward
    STATS_Y,  # (N, 2) fp32 out: (m, log s) of y (HAS_REF only)
    OUT,  # (N,) fp32 out: entropy of p, or KL(p||q) when HAS_REF
    stride_x, stride_y, V,
    temperature,  # divides x only (KL uses 1.0)
    HAS_REF: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    ROW_X = X + row * stride_x
    ROW_Y = Y + row * stride_y
    # pass 1: the normalizers
    m_x, log_s_x = _row_logsumexp(ROW_X, V, temperature, BLOCK_V)
    tl.store(STATS_X + 2 * row, m_x)
    tl.store(STATS_X + 2 * row + 1, log_s_x)
    if HAS_REF:
        m_y, log_s_y = _row_logsumexp(ROW_Y, V, 1.0, BLOCK_V)
        tl.store(STATS_Y + 2 * row, m_y)
        tl.store(STATS_Y + 2 * row + 1, log_s_y)
    # pass 2: sum_j p_j a_j, a = log p (entropy, negated below) or log p - log q (KL)
    acc = 0.0
    for start in range(0, V, BLOCK_V):
        _, x = _load_chunk(ROW_X, start, V, temperature, BLOCK_V)
        logp = (x - m_x) - log_s_x
        a = logp
        if HAS_REF:
            _, y = _load_chunk(ROW_Y, start, V, 1.0, BLOCK_V)
            a = logp - ((y - m_y) - log_s_y)
        a = tl.where(logp > float("-inf"), a, 0.0)  # p_j = 0 there: avoids 0 * (-inf) = NaN
        acc += tl.sum(tl.exp(logp) * a, 0)
    if HAS_REF:
        tl.store(OUT + row, acc)
    else:
        tl.store(OUT + row, -acc)


@triton.jit
def _entropy_kl_bwd_kernel(
    X,  # (N, V) logits of p
    Y,  # (N, V) logits of q; unused when HAS_REF is False
    STATS_X,  # (N, 2) fp32 (m, log s) of x from the forward
    STATS_Y,  # (N, 2) fp32 (m, log s) of y from the forward (HAS_REF only)
    OUT,  # (N,) fp32 forward result: entropy H, or KL
    DOUT,  # (N,) fp32 gradient of each row's result
    DX,  # (N, V) out: gradient of x's logits, contiguous, logits' dtype
    stride_x, stride_y, V, temperature,
    HAS_REF: tl.constexpr, BLOCK_V: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    ROW_X = X + row * stride_x
    ROW_Y = Y + row * stride_y
    m_x, log_s_x = tl.load(STATS_X + 2 * row), tl.load(STATS_X + 2 * row + 1)
    if HAS_REF:
        m_y, log_s_y = tl.load(STATS_Y + 2 * row), tl.load(STATS_Y + 2 * row + 1)
    out = tl.load(OUT + row)
    g = tl.load(DOUT + row)
    for start in range(0, V, BLOCK_V):
        offs, x = _load_chunk(ROW_X, start, V, temperature, BLOCK_V)
        logp = (x - m_x) - log_s_x
        live = logp > float("-inf")  # p_j > 0; elsewhere the gradient is 0 (and 0 * -inf is NaN)
        if HAS_REF:
            _, y = _load_chunk(ROW_Y, start, V, 1.0, BLOCK_V)
            a = tl.where(live, logp - ((y - m_y) - log_s_y), 0.0)
            dx = g * tl.exp(logp) * (a - out)  # p (log p - log q - KL)
        else:
            a = tl.where(live, logp, 0.0)
            dx = -g * tl.exp(logp) * (a + out) / temperature  # -p (log p + H) / tau
        tl.store(DX + row * V + offs, dx.to(DX.dtype.element_ty), mask=offs < V)


# ----------------------------------------------------------------------------- autograd


def _rows(logits):
    """(..., V) -> (N, V) view with unit stride along V (copies only if it must)."""
    x = logits.reshape(-1, logits.shape[-1])
    return x if x.stride(-1) == 1 else x.contiguous()


def _launch(V):
    """Launch settings of the row kernels (one program per row, BLOCK_V-wide chunks of the vocabulary).
    GPU: 4096-wide chunks (13 for GPT-2's 50257) over 8 warps, 16 values a thread: at 4 warps the
    entropy backward spills 32 bytes in fp16 on sm_90/100/120 (docs/compile.md), at 8 no row kernel
    spills on any target. Interpreter: about 8 chunks whatever V, so tests with V of a few hundred
    still cross chunk boundaries and V = 50257 stays quick."""
    if INTERPRET:
        return dict(BLOCK_V=max(16, triton.next_power_of_2(V) // 8), num_warps=4)
    return dict(BLOCK_V=min(triton.next_power_of_2(V), 4096), num_warps=8)


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits, targets, temperature):
        x, tgt = _rows(logits), targets.reshape(-1).long()
        N, V = x.shape
        stats = torch.empty(N, 2, device=x.device, dtype=torch.float32)
        logp = torch.empty(N, device=x.device, dtype=torch.float32)
        _logprobs_fwd_kernel[(N,)](x, tgt, stats, logp, x.stride(0), V, temperature, **_launch(V))
        ctx.save_for_backward(x, tgt, stats)
        ctx.temperature, ctx.shape = temperature, logits.shape
        return logp.view(targets.shape)

    @staticmethod
    def backward(ctx, dlogp):
        x, tgt, stats = ctx.saved_tensors
        N, V = x.shape
        dx = torch.empty((N, V), device=x.device, dtype=x.dtype)
        dout = dlogp.reshape(-1).float().contiguous()
        _logprobs_bwd_kernel[(N,)](x, tgt, stats, dout, dx, x.stride(0), V, ctx.temperature, **_launch(V))
        return dx.view(ctx.shape), None, None


class _EntropyKL(torch.autograd.Function):
    """Entropy of softmax(logits / temperature) when ref_logits is None, else KL(p || q)."""

    @staticmethod
    def forward(ctx, logits, ref_logits, temperature):
        x = _rows(logits)
        y = x if ref_logits is None else _rows(ref_logits)  # y is a placeholder for entropy
        N, V = x.shape
        stats_x, stats_y = (torch.empty(N, 2, device=x.device, dtype=torch.float32) for _ in range(2))
        out = torch.empty(N, device=x.device, dtype=torch.float32)
        meta = dict(HAS_REF=ref_logits is not None, **_launch(V))
        _entropy_kl_fwd_kernel[(N,)](x, y, stats_x, stats_y, out, x.stride(0), y.stride(0), V, temperature, **meta)
        ctx.save_for_backward(x, y, stats_x, stats_y, out)
        ctx.temperature, ctx.shape, ctx.meta = temperature, logits.shape, meta
        return out.view(logits.shape[:-1])

    @staticmethod
    def backward(ctx, dout):
        x, y, stats_x, stats_y, out = ctx.saved_tensors
        N, V = x.shape
        dx = torch.empty((N, V), device=x.device, dtype=x.dtype)
        dout = dout.reshape(-1).float().contiguous()
        _entropy_kl_bwd_kernel[(N,)](
            x, y, stats_x, stats_y, out, dout, dx, x.stride(0), y.stride(0), V, ctx.temperature, **ctx.meta
        )
        return dx.view(ctx.shape), None, None


def token_logprobs(logits, targets, temperature=1.0):
    """log softmax(logits / temperature)[target]: logits (..., V), int targets (...) -> fp32 (...)."""
    if not use_triton(logits):
        return token_logprobs_ref(logits, targets, temperature)
    return _TokenLogprobs.apply(logits, targets, float(temperature))


def token_entropy(logits, temperature=1.0):
    """Entropy of softmax(logits / temperature): (..., V) -> fp32 (...)."""
    if not use_triton(logits):
        return token_entropy_ref(logits, temperature)
    return _EntropyKL.apply(logits, None, float(temperature))


def token_kl(logits, ref_logits):
    """KL(softmax(logits) || softmax(ref_logits)), full vocabulary: (..., V) -> fp32 (...); grad in logits only.
    At a sampling temperature, pass both logits already divided by it."""
    assert logits.shape == ref_logits.shape, f"logits {tuple(logits.shape)} vs ref_logits {tuple(ref_logits.shape)}"
    if not use_triton(logits):
        return token_kl_ref(logits, ref_logits)
    return _EntropyKL.apply(logits, ref_logits.detach(), 1.0)


# ----------------------------------------------------------------------------- check and benchmark
if __name__ == "__main__":
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not use_triton(torch.empty(0, device=device)):
        print("no GPU: set TRITON_INTERPRET=1 to check the kernels on CPU with Triton's interpreter")
    torch.manual_seed(0)
    for N, V in ((5, 1), (7, 300), (3, 50257)):
        z, ref_z = 3 * torch.randn(N, V, device=device), 3 * torch.randn(N, V, device=device)
        tgt = torch.randint(0, V, (N,), device=device)
        for fn, ref, args, args64 in (
            (token_logprobs, token_logprobs_ref, (tgt, 0.7), (tgt, 0.7)),
            (token_entropy, token_entropy_ref, (0.7,), (0.7,)),
            (token_kl, token_kl_ref, (ref_z,), (ref_z.double(),)),
        ):
            z, z64 = z.requires_grad_(), z.detach().double().requires_grad_()
            out, out64 = fn(z, *args), ref(z64, *args64)
            err = (out - out64).abs().max().item()
            grad_err = (torch.autograd.grad(out.sum(), z)[0] - torch.autograd.grad(out64.sum(), z64)[0]).abs().max()
            print(f"{fn.__name__:14} N={N} V={V:5}  max abs err value {err:.1e}  grad {grad_err.item():.1e}")
    if device == "cuda":
        from .bench import bench_logprobs

        bench_logprobs()
