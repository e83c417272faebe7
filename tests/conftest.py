"""pytest setup shared by every test file.

Triton reads TRITON_INTERPRET when `@triton.jit` runs, i.e. when `kernels` is first imported,
not when a kernel is launched, so it has to be set here, before any test module is collected.
Without CUDA it is set to 1: Triton's interpreter then runs the kernels on CPU tensors (slow but
exact), which is how tests/test_kernels.py checks them. With CUDA it stays unset and the kernels
compile for the GPU. An explicit TRITON_INTERPRET in the environment always wins.

Hypothesis profiles (README "Testing"): "ci", the default, is derandomized (every run draws the same
cases) with 200 examples per property test; a test that is expensive per example (the Triton
interpreter, a tokenizer built per case) lowers it with its own @settings(max_examples=...).
`pytest --hypothesis-profile=thorough` draws 5,000 fresh random cases per cheap test; "mutation" is
the quick one mutmut uses.
"""
import os

import pytest
import torch
from hypothesis import Phase, settings

if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

settings.register_profile("ci", deadline=None, max_examples=200, derandomize=True)
settings.register_profile("thorough", deadline=None, max_examples=5000, derandomize=False)
# for mutmut (pyproject [tool.mutmut]): a mutant is killed by its first failing example, so no shrinking
settings.register_profile("mutation", deadline=None, max_examples=50, derandomize=True, database=None,
                          phases=[Phase.explicit, Phase.generate])
settings.load_profile("ci")  # --hypothesis-profile loads its profile after this file


@pytest.fixture
def reference_kernels(monkeypatch):
    """The PyTorch references instead of Triton's interpreter, as the scripts run on CPU: for tests of
    the code around the kernels (tests/test_kernels.py checks the kernels themselves)."""
    from kernels import _dispatch
    monkeypatch.setattr(_dispatch, "INTERPRET", False)
