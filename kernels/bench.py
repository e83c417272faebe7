"""
Benchmark the kernels against PyTorch on a GPU and print markdown tables.

    python -m kernels.bench

1. flash_attention vs F.scaled_dot_product_attention (PyTorch picks its own flash /
   cuDNN / memory-efficient backend), bf16, causal, T = 1k..8k, hs = 64 and 128,
   16k tokens per batch (B = 16384 / T) and nh * hs = 2048.
   FLOPs: the forward does two (T x T x hs) matmuls per head, 4 * B * nh * T^2 * hs
   flops, half of them under the causal mask; the backward does five, 2.5x the forward
   (the convention of the FlashAttention papers and the Triton tutorial).
2. token_logprobs vs log_softmax(logits.float()).gather(...) (token_logprobs_ref),
   N = 16k tokens, V = 50257, bf16 logits. Memory-bound, so we report GB/s of the
   bf16 logits read (forward) or read twice and written once (forward + backward).

Times are medians of triton.testing.do_bench (it flushes L2 between runs). Peak
memory is what the call allocates beyond its inputs (torch.cuda.max_memory_allocated).
Without CUDA there is nothing to time: the script says so and exits 0.
"""
import torch
import torch.nn.functional as F

from .flash_attention import flash_attention
from .logprobs import hidden_logprobs, hidden_logprobs_ref, token_logprobs, token_logprobs_ref


def measure(fn, grads=()):
    """(median ms, peak MiB allocated beyond what was live before) of fn()."""
    from triton.testing import do_bench

    ms = do_bench(fn, grad_to_none=list(grads), return_mode="median")
    for x in grads:
        x.grad = None
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    peak = (torch.cuda.max_memory_allocated() - base) / 2**20
    for x in grads:
        x.grad = None
    return ms, peak


def bench_attention(tokens=16384, width=2048):
    sdpa = lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)  # noqa: E731
    triton_fa = lambda q, k, v: flash_attention(q, k, v, causal=True)  # noqa: E731
    print("\n| attention (bf16, causal) | B x nh x T x hs | pass | ms | TFLOP/s | peak MiB |")
    print("|---|---|---|---:|---:|---:|")
    for hs in (64, 128):
        for T in (1024, 2048, 4096, 8192):
            B, nh = tokens // T, width // hs
            q, k, v, do = (torch.randn(B, nh, T, hs, device="cuda", dtype=torch.bfloat16) for _ in range(4))
            for x in (q, k, v):
                x.requires_grad_()
            fwd_flops = 4 * B * nh * T * T * hs * 0.5  # causal: half the score matrix
            for name, attn in (("triton", triton_fa), ("sdpa", sdpa)):
                runs = (
                    ("fwd", lambda: attn(q, k, v), fwd_flops, ()),
                    ("fwd+bwd", lambda: attn(q, k, v).backward(do), 3.5 * fwd_flops, (q, k, v)),
                )
                for pass_, fn, flops, grads in runs:
                    ms, peak = measure(fn, grads)
                    shape = f"{B} x {nh} x {T} x {hs}"
                    print(f"| {name} | {shape} | {pass_} | {ms:.3f} | {flops / ms / 1e9:.1f} | {peak:.0f} |")
            del q, k, v, do


def bench_logprobs(N=16384, V=50257):
    logits = torch.randn(N, V, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    targets = torch.randint(0, V, (N,), device="cuda")
    gb = N * V * logits.element_size() / 1e9  # one pass over the bf16 logits
    print(f"\n| log-probs (bf16, N = {N}, V = {V}) | pass | ms | GB/s | peak MiB |")
    print("|---|---|---:|---:|---:|")
    for name, fn in (("triton", token_logprobs), ("log_softmax + gather", token_logprobs_ref)):
        runs = (
            ("fwd", lambda: fn(logits, targets), gb, ()),
            ("fwd+bwd", lambda: fn(logits, targets).sum().backward(), 3 * gb, (logits,)),
        )
        for pass_, run, traffic, grads in runs:
            ms, peak = measure(run, grads)
            print(f"| {name} | {pass_} | {ms:.3f} | {traffic / ms * 1e3:.0f} | {peak:.0f} |")


def bench_hidden_logprobs(N=16384, V=50257, C=768, chunk=1024):
    """Fused log-probs from hidden states (no (N, V) logits) against the plain head + log_softmax, under bf16
    autocast and in fp32. The docstring of kernels/logprobs.py predicts ~9.9 GB (fp32) / ~13 GB (bf16)
    unfused and under 1 GB fused at these sizes; the peak column (torch.cuda.max_memory_allocated) checks it."""
    h = torch.randn(N, C, device="cuda", requires_grad=True)
    W = (0.02 * torch.randn(V, C, device="cuda")).requires_grad_()
    y = torch.randint(0, V, (N,), device="cuda")
    print(f"\n| log-probs from hidden states (N = {N}, V = {V}, C = {C}) | dtype | pass | ms | peak MiB |")
    print("|---|---|---|---:|---:|")
    for dtype in (torch.float32, torch.bfloat16):
        for name, fn in (("fused", lambda: hidden_logprobs(h, W, y, chunk=chunk)),
                         ("h @ W.T + log_softmax + gather", lambda: hidden_logprobs_ref(h, W, y))):
            def run(fn=fn, dtype=dtype):
                with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                    return fn()
            for pass_, f, grads in (("fwd", run, ()), ("fwd+bwd", lambda run=run: run().sum().backward(), (h, W))):
                ms, peak = measure(f, grads)
                print(f"| {name} | {str(dtype)[6:]} | {pass_} | {ms:.3f} | {peak:.0f} |")


if __name__ == "__main__":
    if not torch.cuda.is_available():
        print("CUDA is not available: nothing to benchmark. To check the kernels on CPU instead, run")
        print("  TRITON_INTERPRET=1 python -m kernels.flash_attention")
        print("  TRITON_INTERPRET=1 python -m kernels.logprobs")
        raise SystemExit(0)
    print(f"# {torch.cuda.get_device_name()}, torch {torch.__version__}")
    bench_attention()
    bench_logprobs()
    bench_hidden_logprobs()
