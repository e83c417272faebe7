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
import shutil
import subprocess
import sys

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


@pytest.fixture(scope="session")
def quick_root(tmp_path_factory):
    """A --quick SFT policy, reward model and PPO-ptx policy (root/sft, root/rm, root/ppo; their stdout
    in root/{stage}.log), trained once per session for the end-to-end tests. Copy it (`copy_root`)
    before a study writes beside it."""
    root = tmp_path_factory.mktemp("quick_root")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts run the PyTorch references
    for script, *args in [("train_sft.py",), ("train_rm.py", "--sft", root / "sft/model.pt"),
                          ("train_ppo.py", "--sft", root / "sft/model.pt", "--rm", root / "rm/model.pt")]:
        out = root / script[len("train_"):-len(".py")]
        p = subprocess.run([sys.executable, script, "--quick", *map(str, args), "--out", str(out)], capture_output=True,
                           text=True, env=env, cwd=repo, timeout=600)
        assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
        (root / f"{out.name}.log").write_text(p.stdout)  # what the script printed, for tests of its output
    return root


@pytest.fixture
def copy_root(quick_root, tmp_path):
    """tmp_path holding a copy of quick_root's sft/, rm/ and ppo/."""
    for stage in ("sft", "rm", "ppo"):
        shutil.copytree(quick_root / stage, tmp_path / stage)
    return tmp_path
