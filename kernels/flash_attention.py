"""
FlashAttention-2 in Triton: exact softmax attention without the (T, T) matrix.

Run `TRITON_INTERPRET=1 python -m kernels.flash_attention` to check it on CPU,
or `python -m kernels.flash_attention` on a GPU to check and benchmark it.

Math, per head (q, k, v, o: (T, hs); s = sm_scale, 1/sqrt(hs) by default):

    S = s * Q K^T              scores,                      (T, T), never stored
    P = softmax(S) row-wise    causal: S_ij = -inf for j > i
    O = P V

Forward (online softmax). A program owns BLOCK_M query rows and walks the key
blocks, keeping per row the running max m, the running sum l = sum_j exp(S_ij - m)
and the unnormalized output acc = sum_j exp(S_ij - m) V_j. A new block with larger
max m' rescales l and acc by alpha = exp(m - m'). At the end O = acc / l and we save
the log-sum-exp LSE = m + log l (fp32, one per row): with it the backward rebuilds
any block of P exactly as P_ij = exp(S_ij - LSE_i), without another max/sum pass.

Backward (dO given):

    dV = P^T dO
    dP = dO V^T
    dS = P * (dP - delta),     delta_i = sum_j P_ij dP_ij = rowsum(dO_i * O_i)
    dQ = s * dS K
    dK = s * dS^T Q

delta is computed first by a tiny preprocess kernel. Then two kernels, so that
each output block is written by exactly one program (no atomics, deterministic):
the dK/dV kernel loops over query blocks for its key block, the dQ kernel loops
over key blocks for its query block. Both recompute P from Q, K and LSE.

Traps handled here: T need not be a multiple of the block (rows/keys past T are
masked to -inf scores and zero probabilities, so no NaN leaks in); the causal mask is
applied in the backward too (the Triton tutorial's backward assumes causal); fp16 and
bf16 inputs accumulate in fp32. Note that on GPU fp32 inputs go through tl.dot's default
TF32 precision, so fp32 results match the reference to ~1e-3, not 1e-6.

The naive reference below materializes S and P: 2 * B*nh*T*T floats of memory
traffic each way, which is what the kernel avoids (it reads Q, K, V, writes O).
"""
import math

import torch

from ._dispatch import INTERPRET, tl, triton, use_triton


def flash_attention_ref(q, k, v, causal=True, sm_scale=None):
    """Plain PyTorch attention. q, k, v: (B, nh, T, hs) -> (B, nh, T, hs)."""
    T, hs = q.shape[-2], q.shape[-1]
    sm_scale = 1.0 / math.sqrt(hs) if sm_scale is None else sm_scale
    att = (q @ k.transpose(-2, -1)) * sm_scale  # (B, nh, T, T)
    if causal:
        mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
        att = att.masked_fill(~mask, float("-inf"))
    softmax_dtype = torch.promote_types(att.dtype, torch.float32)  # fp32 for fp16/bf16, float64 stays
    att = torch.softmax(att, dim=-1, dtype=softmax_dtype).to(q.dtype)
    return att @ v  # (B, nh, T, hs)


# ----------------------------------------------------------------------------- kernels
# All tensors are made contiguous (B, nh, T, hs) by the wrapper, so a head starts at
# bh * T * hs and a row at t * hs: no stride arguments needed.


@triton.jit
def _attn_fwd_kernel(
    Q,  # (B, nh, T, hs) queries; this program reads BLOCK_M rows of one head
    K,  # (B, nh, T, hs) keys, read block by block
    V,  # (B, nh, T, hs) values, read block by block
    O,  # (B, nh, T, hs) output, written once per row
    LSE,  # (B, nh, T) fp32 log-sum-exp of each score row, saved for the backward
    sm_scale,  # softmax scale s
    T,  # sequence length, any value >= 1
    HS: tl.constexpr,  # head size, a power of two >= 16 (tl.dot needs dims >= 16)
    BLOCK_M: tl.constexpr,  # query rows per program
    BLOCK_N: tl.constexpr,  # keys per inner-loop step
    CAUSAL: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)  # int64: B*nh*T*hs can exceed 2**31
    Q += bh * T * HS
    K += bh * T * HS
    V += bh * T * HS
    O += bh * T * HS
    LSE += bh * T
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HS)
    q = tl.load(Q + offs_m[:, None] * HS + offs_d[None, :], mask=offs_m[:, None] < T, other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)  # running row max of S
    l_i = tl.zeros([BLOCK_M], tl.float32)  # running sum of exp(S - m_i)
    acc = tl.zeros([BLOCK_M, HS], tl.float32)  # running sum of exp(S - m_i) V
    # causal: keys past the block's last query row are all masked, skip them
    end_n = tl.minimum(start_m + BLOCK_M, T) if CAUSAL else T
    for start_n in range(0, end_n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_mask = offs_n[:, None] < T
        k = tl.load(K + offs_n[:, None] * HS + offs_d[None, :], mask=kv_mask, other=0.0)
        v = tl.load(V + offs_n[:, None] * HS + offs_d[None, :], mask=kv_mask, other=0.0)
        s = tl.dot(q, tl.trans(k)) * sm_scale  # (BLOCK_M, BLOCK_N) fp32
        valid = offs_n[None, :] < T
        if CAUSAL:
            valid = valid & (offs_m[:, None] >= offs_n[None, :])
        s = tl.where(valid, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, 1))
        # a row with no valid key yet has m_new = -inf, and -inf - (-inf) = NaN: shift by 0 instead
        m_shift = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(s - m_shift[:, None])  # masked scores give exactly 0
        alpha = tl.exp(m_i - m_shift)  # rescales what was summed under the old max
        l_i = l_i * alpha + tl.sum(p, 1)
        # p is rounded to v's dtype so the second matmul runs on fp16/bf16 tensor cores
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v)
        m_i = m_new

    l_i = tl.where(l_i == 0.0, 1.0, l_i)  # only rows with no valid key at all; their acc is 0
    o = acc / l_i[:, None]
    tl.store(O + offs_m[:, None] * HS + offs_d[None, :], o.to(O.dtype.element_ty), mask=offs_m[:, None] < T)
    tl.store(LSE + offs_m, m_i + tl.log(l_i), mask=offs_m < T)


@triton.jit
def _attn_bwd_preprocess_kernel(
    O,  # (B, nh, T, hs) forward output
    DO,  # (B, nh, T, hs) gradient of the output
    DELTA,  # (B*nh*T,) fp32 out: delta = rowsum(dO * O)
    n_rows,  # B * nh * T
    HS: tl.constexpr, BLOCK_M: tl.constexpr,
):
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HS)
    ptrs = offs_m[:, None].to(tl.int64) * HS + offs_d[None, :]
    o = tl.load(O + ptrs, mask=offs_m[:, None] < n_rows, other=0.0).to(tl.float32)
    do = tl.load(DO + ptrs, mask=offs_m[:, None] < n_rows, other=0.0).to(tl.float32)
    tl.store(DELTA + offs_m, tl.sum(o * do, 1), mask=offs_m < n_rows)


@triton.jit
def _recompute_p(q, k, lse, offs_m, offs_n, sm_scale, T, CAUSAL: tl.constexpr):
    """P_ij = exp(S_ij - LSE_i) for one (BLOCK_M, BLOCK_N) tile, exactly 0 where masked."""
    s = tl.dot(q, tl.trans(k)) * sm_scale
    valid = (offs_m[:, None] < T) & (offs_n[None, :] < T)
    if CAUSAL:
        valid = valid & (offs_m[:, None] >= offs_n[None, :])
    return tl.where(valid, tl.exp(s - lse[:, None]), 0.0)


@triton.jit
def _attn_bwd_dkdv_kernel(
    Q,  # (B, nh, T, hs) queries, read block by block
    K,  # (B, nh, T, hs) keys; this program owns BLOCK_N of them
    V,  # (B, nh, T, hs) values; this program owns BLOCK_N of them
    DO,  # (B, nh, T, hs) gradient of the output, read block by block
    LSE,  # (B, nh, T) fp32 from the forward
    DELTA,  # (B, nh, T) fp32 from the preprocess kernel
    DK,  # (B, nh, T, hs) out, written only by this program
    DV,  # (B, nh, T, hs) out, written only by this program
    sm_scale, T,
    HS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    bh = tl.program_id(1).to(tl.int64)
    Q += bh * T * HS
    K += bh * T * HS
    V += bh * T * HS
    DO += bh * T * HS
    DK += bh * T * HS
    DV += bh * T * HS
    LSE += bh * T
    DELTA += bh * T
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, HS)
    kv_ptrs = offs_n[:, None] * HS + offs_d[None, :]
    k = tl.load(K + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)
    v = tl.load(V + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)

    dk = tl.zeros([BLOCK_N, HS], tl.float32)
    dv = tl.zeros([BLOCK_N, HS], tl.float32)
    # causal: query rows before this key block never see it, start at the block holding row start_n
    start = (start_n // BLOCK_M) * BLOCK_M if CAUSAL else 0
    for start_m in range(start, T, BLOCK_M):
        offs_m = start_m + tl.arange(0, BLOCK_M)
        q_ptrs = offs_m[:, None] * HS + offs_d[None, :]
        q = tl.load(Q + q_ptrs, mask=offs_m[:, None] < T, other=0.0)
        do = tl.load(DO + q_ptrs, mask=offs_m[:, None] < T, other=0.0)
        lse = tl.load(LSE + offs_m, mask=offs_m < T, other=0.0)
        delta = tl.load(DELTA + offs_m, mask=offs_m < T, other=0.0)
        p = _recompute_p(q, k, lse, offs_m, offs_n, sm_scale, T, CAUSAL)  # (BLOCK_M, BLOCK_N)
        dv += tl.dot(tl.trans(p.to(do.dtype)), do)  # dV = P^T dO
        dp = tl.dot(do, tl.trans(v))  # dP = dO V^T
        ds = p * (dp - delta[:, None])  # dS = P * (dP - delta), 0 where masked
        dk += tl.dot(tl.trans(ds.to(q.dtype)), q)  # dK = s * dS^T Q (s applied below)
    tl.store(DK + kv_ptrs, (dk * sm_scale).to(DK.dtype.element_ty), mask=offs_n[:, None] < T)
    tl.store(DV + kv_ptrs, dv.to(DV.dtype.element_ty), mask=offs_n[:, None] < T)


@triton.jit
def _attn_bwd_dq_kernel(
    Q,  # (B, nh, T, hs) queries; this program owns BLOCK_M of them
    K,  # (B, nh, T, hs) keys, read block by block
    V,  # (B, nh, T, hs) values, read block by block
    DO,  # (B, nh, T, hs) gradient of the output for this program's rows
    LSE,  # (B, nh, T) fp32 from the forward
    DELTA,  # (B, nh, T) fp32 from the preprocess kernel
    DQ,  # (B, nh, T, hs) out, written only by this program
    sm_scale, T,
    HS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, CAUSAL: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    bh = tl.program_id(1).to(tl.int64)
    Q += bh * T * HS
    K += bh * T * HS
    V += bh * T * HS
    DO += bh * T * HS
    DQ += bh * T * HS
    LSE += bh * T
    DELTA += bh * T
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, HS)
    q_ptrs = offs_m[:, None] * HS + offs_d[None, :]
    q = tl.load(Q + q_ptrs, mask=offs_m[:, None] < T, other=0.0)
    do = tl.load(DO + q_ptrs, mask=offs_m[:, None] < T, other=0.0)
    lse = tl.load(LSE + offs_m, mask=offs_m < T, other=0.0)
    delta = tl.load(DELTA + offs_m, mask=offs_m < T, other=0.0)

    dq = tl.zeros([BLOCK_M, HS], tl.float32)
    end_n = tl.minimum(start_m + BLOCK_M, T) if CAUSAL else T
    for start_n in range(0, end_n, BLOCK_N):
        offs_n = start_n + tl.arange(0, BLOCK_N)
        kv_ptrs = offs_n[:, None] * HS + offs_d[None, :]
        k = tl.load(K + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)
        v = tl.load(V + kv_ptrs, mask=offs_n[:, None] < T, other=0.0)
        p = _recompute_p(q, k, lse, offs_m, offs_n, sm_scale, T, CAUSAL)
        dp = tl.dot(do, tl.trans(v))
        ds = p * (dp - delta[:, None])
        dq += tl.dot(ds.to(k.dtype), k)  # dQ = s * dS K (s applied below)
    tl.store(DQ + q_ptrs, (dq * sm_scale).to(DQ.dtype.element_ty), mask=offs_m[:, None] < T)


# ----------------------------------------------------------------------------- autograd

# Launch settings per GPU target, (BLOCK_M, BLOCK_N, num_warps, num_stages), picked without a GPU
# from the AOT compile report (`python -m kernels.compile --search`, docs/compile.md): the default
# tile wherever it compiles clean, else the first clean tile in kernels.compile's search order
# (2+ pipeline stages if any tile allows it, then the largest tile, the fewest warps).
# Nothing here is timed: a clean compile says the tile launches and does not spill, not that it is fast.
DEFAULT_TILE = {"16-bit": (64, 64, 4, 3), "fp32": (64, 64, 4, 2)}  # fp32: 2 stages, twice the bytes a stage
TUNED_TILES = {  # (target, dtype, hs, kernel) -> tile, where DEFAULT_TILE spills or overflows shared memory
    # dK/dV holds two (BLOCK_N, hs) fp32 accumulators plus K and V in registers: the first to spill
    (80, "16-bit", 64, "dkdv"): (32, 64, 4, 3),  # 64x64 w4 spills 44/40 B; half the query tile does not
    (80, "16-bit", 128, "dkdv"): (32, 64, 8, 3),  # 64x64 w4 spills 1,044/752 B; 8 warps split the accumulators
    (90, "16-bit", 128, "dkdv"): (64, 64, 8, 3),  # 64x64 w4 spills 320/320 B; 8 warps do not
    (80, "fp32", 64, "dq"): (32, 64, 4, 2),  # 64x64 spills 8/4 B
    (80, "fp32", 128, "dkdv"): (32, 64, 8, 2),  # 64x64 needs 197,120 B of shared memory (limit 166,912)
    (90, "fp32", 128, "dkdv"): (32, 32, 4, 2),  # 64x64 spills 976/960 B
    (100, "fp32", 128, "dkdv"): (32, 64, 4, 2),  # 64x64 over shared memory (limit 232,448 B), spills 136/140
    # 99 KB of shared memory (sm_86 / sm_89 / sm_120): hs 128 overflows at 64x64 in every backward
    **{(t, "16-bit", 128, k): tile for t in (86, 89, 120) for k, tile in (
        ("fwd", (64, 64, 8, 3)),  # 4 warps spill 8/4 B (sm_120: 32/20)
        ("dkdv", (32, 64, 8, 3)),  # 64x64: over shared memory and ~1,000/700 B of spill
        ("dq", (64, 64, 8 if t < 120 else 4, 2)))},  # 3 stages overflow; sm_120 is clean at 4 warps
    **{(t, "fp32", hs, k): tile for t in (86, 89, 120) for hs, k, tile in (
        (64, "dkdv", (64, 32, 4, 2) if t == 120 else (32, 64, 4, 2)),  # 64x64 spills 8/4 B (sm_120: 12/8)
        (64, "dq", (32, 64, 4, 2)),  # 64x64 spills 48/44 B
        (128, "fwd", (32, 64, 4, 2)),  # every 64x64 fp32 kernel at hs 128 overflows 99 KB
        (128, "dkdv", (32, 32, 4, 2)),
        (128, "dq", (32, 32, 4, 2)))},
    (120, "16-bit", 64, "dkdv"): (32, 64, 8, 3),  # 64x64 w4 spills 20/16 B
}


def attention_tiles(capability, dtype, hs):
    """Launch settings {kernel: dict(BLOCK_M=, BLOCK_N=, num_warps=, num_stages=)} for the
    forward ("fwd") and the two backward kernels ("dkdv", "dq") on one GPU, one input dtype and
    one head size. capability: torch.cuda.get_device_capability(), e.g. (9, 0); None = the
    interpreter. `python -m kernels.compile` compiles every entry for real targets; a target it
    does not know (e.g. sm_87) gets DEFAULT_TILE, unchecked."""
    if capability is None:
        # small blocks keep the CPU interpreter fast and exercise the masked tails in tests
        return {k: dict(BLOCK_M=16, BLOCK_N=16, num_warps=4, num_stages=1) for k in ("fwd", "dkdv", "dq")}
    target = capability[0] * 10 + capability[1]
    group = "fp32" if dtype == torch.float32 else "16-bit"
    out = {}
    for kernel in ("fwd", "dkdv", "dq"):
        bm, bn, warps, stages = TUNED_TILES.get((target, group, hs, kernel), DEFAULT_TILE[group])
        out[kernel] = dict(BLOCK_M=bm, BLOCK_N=bn, num_warps=warps, num_stages=stages)
    return out


def pre_block(hs):
    """Rows per program of the tiny delta = rowsum(dO * O) kernel: 64, but 32 at hs 128 (64 rows of
    bf16 at hs 128 spill 76/76 B on sm_100; 32 are clean on all six targets)."""
    return 16 if INTERPRET else min(64, 4096 // hs)


def _tiles(x):
    """attention_tiles for tensor x's device (the interpreter's on CPU)."""
    capability = torch.cuda.get_device_capability(x.device) if x.is_cuda else None
    return attention_tiles(capability, x.dtype, x.shape[-1])


def _dot_dtype(x):
    # Triton 3.9's interpreter runs tl.dot on the raw uint16 bits of bf16 tensors,
    # so under the interpreter bf16 inputs are computed in fp32 (outputs stay bf16).
    x = x.float() if INTERPRET and x.dtype == torch.bfloat16 else x
    return x.contiguous()  # the kernels index rows as t * hs: no strides


class _FlashAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, causal, sm_scale):
        B, nh, T, hs = q.shape
        assert k.shape == q.shape and v.shape == q.shape, "q, k, v must all be (B, nh, T, hs)"
        assert hs in (16, 32, 64, 128), "head size must be 16, 32, 64 or 128"
        q_, k_, v_ = _dot_dtype(q), _dot_dtype(k), _dot_dtype(v)
        o = torch.empty_like(q, memory_format=torch.contiguous_format)
        lse = torch.empty(B, nh, T, device=q.device, dtype=torch.float32)
        tile = _tiles(q_)["fwd"]
        grid = (triton.cdiv(T, tile["BLOCK_M"]), B * nh)
        _attn_fwd_kernel[grid](q_, k_, v_, o, lse, sm_scale, T, HS=hs, CAUSAL=causal, **tile)
        ctx.save_for_backward(q_, k_, v_, o, lse)
        ctx.causal, ctx.sm_scale, ctx.dtype = causal, sm_scale, q.dtype
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, o, lse = ctx.saved_tensors
        B, nh, T, hs = q.shape
        do = do.contiguous()
        delta = torch.empty_like(lse)
        pre_grid = (triton.cdiv(B * nh * T, pre_block(hs)),)
        _attn_bwd_preprocess_kernel[pre_grid](o, do, delta, B * nh * T, HS=hs, BLOCK_M=pre_block(hs))
        do = _dot_dtype(do)
        dq, dk, dv = (torch.empty(q.shape, device=q.device, dtype=ctx.dtype) for _ in range(3))
        tiles = _tiles(q)
        t = tiles["dkdv"]  # a program per BLOCK_N keys
        _attn_bwd_dkdv_kernel[(triton.cdiv(T, t["BLOCK_N"]), B * nh)](
            q, k, v, do, lse, delta, dk, dv, ctx.sm_scale, T, HS=hs, CAUSAL=ctx.causal, **t)
        t = tiles["dq"]  # a program per BLOCK_M queries
        _attn_bwd_dq_kernel[(triton.cdiv(T, t["BLOCK_M"]), B * nh)](
            q, k, v, do, lse, delta, dq, ctx.sm_scale, T, HS=hs, CAUSAL=ctx.causal, **t)
        return dq, dk, dv, None, None


def flash_attention(q, k, v, causal=True, sm_scale=None):
    """Softmax attention, q, k, v: (B, nh, T, hs) -> (B, nh, T, hs); causal: query i sees keys j <= i."""
    sm_scale = 1.0 / math.sqrt(q.shape[-1]) if sm_scale is None else sm_scale
    if not use_triton(q):
        return flash_attention_ref(q, k, v, causal, sm_scale)
    return _FlashAttention.apply(q, k, v, causal, sm_scale)


# ----------------------------------------------------------------------------- check and benchmark
if __name__ == "__main__":
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if not use_triton(torch.empty(0, device=device)):
        print("no GPU: set TRITON_INTERPRET=1 to check the kernel on CPU with Triton's interpreter")
    torch.manual_seed(0)
    for causal, T, hs in ((True, 1, 16), (True, 37, 32), (False, 37, 32), (True, 100, 64), (False, 100, 128)):
        q, k, v, do = (torch.randn(2, 3, T, hs, device=device) for _ in range(4))
        xs = [x.requires_grad_() for x in (q, k, v)]
        xs64 = [x.detach().double().requires_grad_() for x in xs]
        o, o64 = flash_attention(*xs, causal=causal), flash_attention_ref(*xs64, causal=causal)
        got, want = (o, *torch.autograd.grad(o, xs, do)), (o64, *torch.autograd.grad(o64, xs64, do.double()))
        errs = " ".join(f"{(a - b).abs().max().item():.1e}" for a, b in zip(got, want))
        print(f"causal={causal!s:5} T={T:3} hs={hs:3}  max abs err o/dq/dk/dv: {errs}")
    if device == "cuda":
        from .bench import bench_attention

        bench_attention()
