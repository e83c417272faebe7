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


# ----------------------------------------------------------------------------- from hidden states
# Log-probs straight from the final hidden states h (N, C) and the tied unembedding W (V, C), never
# holding the (N, V) logits: Liger-Kernel's "fused linear cross-entropy" idea, written here from
# scratch. Rows are taken `chunk` at a time; each chunk's logits z_c = h_c W^T are made, reduced to
# (lse, log p(target), entropy) and dropped. The backward makes them again from the saved h, W and lse:
#
#     dz_c = (g_lp (onehot(t) - p) - g_H p (log p + H)) / tau        (chunk, V)
#     dh_c = dz_c W                                                  (chunk, C)
#     dW  += dz_c^T h_c                                              (V, C), accumulated over chunks
#
# Memory, N tokens, V entries, C width; one (N, V) fp32 tensor is 4 N V bytes. At N = 16,384 and
# V = 50,257, N V = 823.4M entries: 3.29 GB in fp32, 1.65 GB in bf16.
#   unfused, log_softmax + gather (the CPU path, and the reference):
#     fp32: logits + saved log_softmax + its gradient + the logits' gradient, ~3 live at the peak
#           = 12 N V bytes                                                         = 9.9 GB
#     bf16 (autocast): bf16 logits 2 N V + fp32 copy 4 N V + log_softmax 4 N V + fp32 gradients
#           4 N V + 4 N V + the bf16 gradient 2 N V, ~16 N V bytes at the peak      = 13.2 GB
#     (the Triton token_logprobs on (N, V) logits saves no log_softmax: ~8 N V bf16, 6.6 GB)
#   fused, chunk rows at a time (hidden_chunk: 2**25 logits, 667 rows at V = 50,257):
#     ~3 fp32 (chunk, V) tensors + dW and one (V, C) product in fp32
#           = 12 chunk V + 8 V C bytes, whatever N: 0.40 + 0.31 GB = 0.71 GB at C = 768, fp32 or
#           bf16 (a bf16 chunk adds 2 chunk V = 0.07 GB): 14x (fp32) / 19x (bf16) less than unfused.
# Measured on CPU (2 cores, GPT-2-small width, one AdamW step, N = 4,096): peak RSS 5.45 GB fused
# against 7.62 GB plain, 30.2 s against 28.0 s. kernels/bench.py bench_hidden_logprobs measures the
# CUDA peaks with torch.cuda.max_memory_allocated (not run: no GPU here).
# The price is one more (N, V, C) matmul in the backward (the logits made again): 4 instead of 3.


def hidden_logprobs_ref(h, W, targets, temperature=1.0, entropy=False):
    """The plain path: log softmax(h W^T / temperature)[target], (N, C), (V, C), (N,) -> (N,) fp32 (or float64);
    with entropy=True also the entropy of each row, (N,)."""
    logits = h @ W.t()
    logp = token_logprobs_ref(logits, targets, temperature)
    return (logp, token_entropy_ref(logits, temperature)) if entropy else logp


def _mm_dtype(h, W):
    """The dtype of the chunk matmuls: autocast's where it is on (bf16 on CUDA), else the inputs'."""
    dev = h.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return torch.promote_types(h.dtype, W.dtype)


def _chunk_stats(z, tgt, temperature, want_entropy):
    """(lse, logp, entropy or None) of the chunk's logits z (n, V), math in fp32 (float64 stays float64).
    On CUDA (not float64) the Triton kernels of this file read z once each; elsewhere PyTorch."""
    n, V = z.shape
    if use_triton(z) and z.dtype != torch.float64:
        stats = torch.empty(n, 2, device=z.device, dtype=torch.float32)
        logp = torch.empty(n, device=z.device, dtype=torch.float32)
        _logprobs_fwd_kernel[(n,)](z, tgt, stats, logp, z.stride(0), V, temperature, **_launch(V))
        ent = None
        if want_entropy:
            ent, dummy = torch.empty(n, device=z.device, dtype=torch.float32), torch.empty_like(stats)
            _entropy_kl_fwd_kernel[(n,)](z, z, dummy, dummy, ent, z.stride(0), z.stride(0), V, temperature,
                                         HAS_REF=False, **_launch(V))
        return stats[:, 0] + stats[:, 1], logp, ent
    x = _fp32(z)
    if temperature != 1.0:
        x = x.div_(temperature) if x is not z else x / temperature
    lse = torch.logsumexp(x, -1)  # (n,)
    logp = x.gather(-1, tgt[:, None]).squeeze(-1) - lse
    ent = None
    if want_entropy:  # H = -sum p (x - lse) = lse - sum p x
        ent = lse - (torch.softmax(x, -1) * x).sum(-1)
    return lse, logp, ent


class _HiddenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h, W, targets, temperature, want_entropy, chunk):
        N = h.size(0)
        mm = _mm_dtype(h, W)
        out_dtype = torch.promote_types(torch.promote_types(h.dtype, W.dtype), torch.float32)
        lse, logp = (torch.empty(N, device=h.device, dtype=out_dtype) for _ in range(2))
        ent = torch.empty(N, device=h.device, dtype=out_dtype) if want_entropy else None
        with torch.autocast(h.device.type, enabled=False):
            Wm = W.to(mm)
            for i in range(0, N, chunk):
                z = h[i:i + chunk].to(mm) @ Wm.t()  # (chunk, V): the only logits that exist
                l, lp, e = _chunk_stats(z, targets[i:i + chunk], temperature, want_entropy)
                lse[i:i + chunk], logp[i:i + chunk] = l, lp
                if want_entropy:
                    ent[i:i + chunk] = e
        ctx.save_for_backward(h, W, targets, lse, ent if want_entropy else lse)
        ctx.temperature, ctx.want_entropy, ctx.chunk, ctx.mm = temperature, want_entropy, chunk, mm
        ctx.set_materialize_grads(False)  # an unused entropy gets None, not an (N,) of zeros to multiply
        if want_entropy:
            return logp, ent
        return logp

    @staticmethod
    def backward(ctx, dlogp, dent=None):
        h, W, targets, lse, ent = ctx.saved_tensors
        tau, chunk, mm = ctx.temperature, ctx.chunk, ctx.mm
        N = h.size(0)
        need_h, need_W = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        acc = torch.promote_types(W.dtype, torch.float32)
        dh = torch.empty_like(h) if need_h else None
        dW = torch.zeros(W.shape, device=W.device, dtype=acc) if need_W else None
        g_lp = torch.zeros_like(lse) if dlogp is None else dlogp.to(lse.dtype)
        g_H = None if not ctx.want_entropy or dent is None else dent.to(lse.dtype)
        with torch.autocast(h.device.type, enabled=False):
            Wm = W.to(mm)
            for i in range(0, N, chunk):
                hc = h[i:i + chunk].to(mm)
                x = _fp32(hc @ Wm.t())  # (chunk, V), made again; in place from here on
                if tau != 1.0:
                    x.div_(tau)
                logp_all = x.sub_(lse[i:i + chunk, None])  # log softmax
                ent_term = None
                if g_H is not None:  # - g_H p (log p + H), p log p := 0 where p = 0
                    ent_term = (logp_all + ent[i:i + chunk, None]).mul_(g_H[i:i + chunk, None])
                dz = logp_all.exp_()  # softmax p
                if ent_term is not None:
                    ent_term.mul_(dz)
                dz.mul_(-g_lp[i:i + chunk, None])  # -g p ...
                if ent_term is not None:
                    dz.sub_(ent_term)
                    del ent_term
                dz.scatter_add_(1, targets[i:i + chunk, None], g_lp[i:i + chunk, None])  # + g onehot(t)
                dz = dz.div_(tau).to(mm)
                if need_h:
                    dh[i:i + chunk] = (dz @ Wm).to(h.dtype)
                if need_W:
                    dW.add_((dz.t() @ hc).to(acc))  # fp32 accumulation across chunks
        return dh, None if dW is None else dW.to(W.dtype), None, None, None, None


def hidden_chunk(V):
    """Rows per chunk: about 2**25 logits (128 MiB in fp32) a chunk, 667 rows at V = 50257."""
    return max(1, 2**25 // max(V, 1))


def hidden_logprobs(h, W, targets, temperature=1.0, entropy=False, chunk=None):
    """log softmax(h W^T / temperature)[target] without the (N, V) logits (see above).
    h (..., C) final hidden states (after ln_f), W (V, C) the unembedding, targets (...) ints.
    Returns fp32 (...) log-probs (float64 for float64 inputs); entropy=True: (log-probs, entropy).
    Gradients reach h and W; the entropy's too. Peak memory O(chunk V), not O(N V)."""
    lead = targets.shape
    hh, tgt = h.reshape(-1, h.shape[-1]), targets.reshape(-1).long()
    assert hh.size(0) == tgt.numel(), f"h {tuple(h.shape)} vs targets {tuple(lead)}"
    chunk = hidden_chunk(W.size(0)) if chunk is None else chunk
    out = _HiddenLogprobs.apply(hh, W, tgt, float(temperature), bool(entropy), int(chunk))
    if entropy:
        return out[0].view(lead), out[1].view(lead)
    return out.view(lead)


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
