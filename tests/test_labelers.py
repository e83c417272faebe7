"""The held-out labelers study (nanorlhf.experiments.labelers): the exact labeler preference with and
without the taste, one policy judged three ways; and the study end to end at toy size."""
import json
import math
import os
import subprocess
import sys

import pytest

from nanorlhf import world
from nanorlhf.experiments.labelers import judged, preference

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts run the PyTorch references
P = "Sort these numbers: 5 2 8 1"


def test_preference_is_the_labelers_exact_pair_probability():
    sure, ideal = "Sure! 1 2 5 8.", "1 2 5 8."
    gap = world.score(P, sure)["total"] - world.score(P, ideal)["total"]
    for taste in (0.0, 0.2, 1.0):
        assert preference([P], [sure], [ideal], taste) == pytest.approx(1 / (1 + math.exp(-(gap + taste) / world.TAU)))
    assert preference([P, P], [ideal, sure], [ideal, ideal], 0.0) == pytest.approx((0.5 + 1 / (1 + math.exp(-gap / world.TAU))) / 2)


def test_a_policy_judged_by_taste_heldout_labelers_and_gold():
    prompts, sft = [P, P], ["1 2 5 8.", "8 5 2 1."]
    r = judged(prompts, ["Sure! 1 2 5 8.", "1 2 5 8."], sft, 1.0)
    assert r["opener_rate"] == 0.5 and r["training_labelers"] > r["heldout_labelers"]
    assert r["gold_win"] == 0.5  # the opener loses to the same answer without it; the right order beats the wrong
    assert r["heldout_labelers"] == pytest.approx(preference(prompts, ["Sure! 1 2 5 8.", "1 2 5 8."], sft, 0.0))


def test_study_end_to_end_quick(copy_root):
    tmp_path = copy_root
    study = lambda: subprocess.run([sys.executable, "-m", "nanorlhf.experiments.labelers", "--quick", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "lab"), "--taste", "5"],
                                   capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    p = study()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "lab.json").read_text())
    assert json.load(open(tmp_path / "lab/rm/metrics.json"))["args"]["labeler_taste"] == 5.0
    assert json.load(open(tmp_path / "lab/ppo/metrics.json"))["args"]["rm"].endswith("lab/rm/model.pt")
    sft = res["policies"]["SFT"]
    assert sft["heldout_labelers"] == sft["training_labelers"] == 0.5 and sft["gold_win"] == 0.5
    assert len(res["policies"]) == 3
    p = study()
    assert p.returncode == 0 and "train_rm.py" not in p.stdout and "train_ppo.py" not in p.stdout
