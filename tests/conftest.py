"""pytest setup shared by every test file.

Triton reads TRITON_INTERPRET when `@triton.jit` runs, i.e. when `kernels` is first imported,
not when a kernel is launched, so it has to be set here, before any test module is collected.
Without CUDA it is set to 1: Triton's interpreter then runs the kernels on CPU tensors (slow but
exact), which is how tests/test_kernels.py checks them. With CUDA it stays unset and the kernels
compile for the GPU. An explicit TRITON_INTERPRET in the environment always wins.
"""
import os

import torch
from hypothesis import settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

# one profile: no deadline (first calls compile or warm up), bounded, reproducible
settings.register_profile("ci", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("ci")
