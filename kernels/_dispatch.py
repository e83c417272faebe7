"""Where each kernel call runs: one rule, kept in one place.

- CUDA tensors                       -> the Triton kernel.
- CPU tensors                        -> the plain PyTorch reference,
  unless TRITON_INTERPRET=1          -> the Triton kernel, run by Triton's CPU interpreter
                                        (slow, but lets anyone check the kernels without a GPU).
- Triton not installed (macOS, ...)  -> the reference, silently.

Triton reads TRITON_INTERPRET when `@triton.jit` runs, i.e. when `kernels` is imported,
so the variable must be set before that import (tests/conftest.py does it for pytest).
"""
import os

try:
    import triton
    import triton.language as tl
except ImportError:  # no Triton: kernel files must still import, so their references can be used

    class _Missing:
        """Stands in for `triton` and `triton.language`: `@triton.jit` returns the function untouched."""

        def __getattr__(self, name):
            return _Missing()

        def __call__(self, *args, **kwargs):
            return args[0] if args and callable(args[0]) else _Missing()

    triton = tl = _Missing()
    HAS_TRITON = False
else:
    HAS_TRITON = True

INTERPRET = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "0") == "1"


# Log-probs straight from hidden states (kernels.hidden_logprobs: no (N, V) logits) where a script
# only needs log pi(y): NANORLHF_FUSED_LOGPROBS=1 always, 0 never (the plain head + log_softmax),
# "auto" (default): on CUDA, and on CPU from a GPT-2-sized vocabulary (FUSED_CPU_VOCAB) up: at
# GPT-2-small width it cut the peak RSS of a 4,096-token CPU step from 7.6 to 5.5 GB for 8% more
# time (bench/gpt2_small.py); at the embedded world's 2,046 tokens the logits are small and the
# plain path stays, so its measured runs are unchanged.
FUSED_LOGPROBS = os.environ.get("NANORLHF_FUSED_LOGPROBS", "auto")
FUSED_CPU_VOCAB = 16384


def use_fused_logprobs(x, vocab_size):
    """True when log-probs over vocab_size tokens on tensor x's device come from hidden states."""
    if FUSED_LOGPROBS not in ("auto", "0", "1"):
        raise ValueError(f"NANORLHF_FUSED_LOGPROBS must be auto, 0 or 1, got {FUSED_LOGPROBS!r}")
    if FUSED_LOGPROBS == "auto":
        return x.is_cuda or vocab_size >= FUSED_CPU_VOCAB
    return FUSED_LOGPROBS == "1"


def use_triton(x):
    """True when the Triton kernel should handle tensor x (see the rule above)."""
    return HAS_TRITON and (x.is_cuda or INTERPRET)
