"""Hand-written Triton kernels for nanorlhf, each next to its plain PyTorch reference.

CUDA tensors run the kernels; CPU tensors run the references, unless TRITON_INTERPRET=1
was set before import, in which case Triton's interpreter runs the kernels on CPU
(see kernels/_dispatch.py). `python -m kernels.bench` benchmarks them on a GPU.
"""
from .flash_attention import flash_attention, flash_attention_ref
from .logprobs import (hidden_logprobs, hidden_logprobs_ref, token_entropy, token_entropy_ref, token_kl, token_kl_ref,
                       token_logprobs, token_logprobs_ref)

__all__ = [
    "flash_attention",
    "flash_attention_ref",
    "token_logprobs",
    "token_logprobs_ref",
    "token_entropy",
    "token_entropy_ref",
    "token_kl",
    "token_kl_ref",
    "hidden_logprobs",
    "hidden_logprobs_ref",
]
