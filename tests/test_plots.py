"""The figures of `python -m nanorlhf.report --png DIR`, drawn from fake output folders: each PNG is
written, large, and not blank."""
import json
import math
import os
import random

import numpy as np
import pytest

from nanorlhf import plots

matplotlib = pytest.importorskip("matplotlib")


def fake_out(root, ppo_runs=("ppo", "ppo_noptx", "ppo_beta0.02"), gold=True):
    """metrics.json / curve.json shaped like the scripts' own, with made-up numbers."""
    rng = random.Random(0)
    os.makedirs(root / "sft")
    os.makedirs(root / "rm")
    (root / "sft/metrics.json").write_text(json.dumps({"losses": {
        "pretrain": [4 * math.exp(-i / 80) + 0.9 + rng.gauss(0, 0.05) for i in range(300)],
        "sft": [2 * math.exp(-i / 40) + 0.5 + rng.gauss(0, 0.05) for i in range(120)]}}))
    (root / "rm/metrics.json").write_text(json.dumps({"losses": [0.69 - 0.2 * (1 - math.exp(-i / 30)) + rng.gauss(0, 0.03)
                                                                 for i in range(90)]}))
    for j, name in enumerate(ppo_runs):
        os.makedirs(root / name)
        curve = []
        for it in range(1, 61):
            kl = it * (0.05 + 0.1 * j) + rng.gauss(0, 0.05)
            curve.append(dict(iteration=it, episodes=64 * it, beta=[0.1, 0.1, 0.02][j % 3], kl=kl,
                              rm_score=0.3 * math.sqrt(max(kl, 0)) + rng.gauss(0, 0.05),
                              gold_score=(0.5 + 0.1 * kl - 0.02 * kl * kl + rng.gauss(0, 0.05)) if gold else float("nan"),
                              entropy=2 - 0.01 * it, ptx_loss=0.0 if name == "ppo_noptx" else 1.2 + rng.gauss(0, 0.02),
                              clipfrac=0.05 + rng.gauss(0, 0.01), pg_loss=0.0, vf_loss=0.1, approx_kl=0.01, truncated=0.0))
        (root / name / "curve.json").write_text(json.dumps(curve))


def check_png(path):
    """Written, a real figure (> 20 KB), and not blank: many distinct colors."""
    assert os.path.getsize(path) > 20_000, os.path.getsize(path)
    img = matplotlib.image.imread(path)  # (H, W, 3 or 4) floats
    colors = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 200, len(colors)


def test_report_png_writes_three_figures(tmp_path):
    fake_out(tmp_path / "out")
    written = plots.write_pngs(str(tmp_path / "png"), root=str(tmp_path / "out"))
    assert [os.path.basename(p) for p in written] == ["overoptimization.png", "ppo_curves.png", "losses.png"]
    for p in written:
        check_png(p)
    assert plots.ppo_folders(str(tmp_path / "out")) == [str(tmp_path / "out" / n) for n in
                                                         ("ppo", "ppo_beta0.02", "ppo_noptx")]


def test_user_data_without_gold_or_ppo_still_draws(tmp_path):
    """Runs on a user's data have NaN gold scores; a folder with no PPO run yet gets the loss figure only."""
    fake_out(tmp_path / "out", ppo_runs=("ppo",), gold=False)
    for p in plots.write_pngs(str(tmp_path / "png"), root=str(tmp_path / "out")):
        check_png(p)
    os.remove(tmp_path / "out/ppo/curve.json")
    assert [os.path.basename(p) for p in plots.write_pngs(str(tmp_path / "png2"), root=str(tmp_path / "out"))] == \
        ["losses.png"]


def test_smooth_is_a_trailing_mean():
    y = [1.0, 2.0, 3.0, 4.0, 5.0]
    np.testing.assert_allclose(plots.smooth(y, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(plots.smooth(y, 1), y)


def test_askell_figures_draw(tmp_path):
    """plots.objectives (accuracy and best-of-16 by size and objective) and plots.pmp_curve (accuracy
    against N with and without PMP, PMP alone as a line), from rows shaped like the studies' own."""
    matplotlib.use("Agg")
    rows = [{"objective": obj, "n_params": n, "labeler_accuracy": 0.6 + 0.01 * i + 0.02 * (n > 2e6),
             "gold_accuracy": 0.65 + 0.01 * i, "best_of_16": (0.4 + 0.05 * i, (0.35, 0.45))}
            for i, obj in enumerate(["ranked", "binary", "imitation", "base LM likelihood (control)"]) for n in (1.1e6, 4.5e6)]
    check_png(plots.objectives(rows, str(tmp_path / "askell.png")))
    table = {0: {"pmp": [(0.58, 0.0), (0.6, 0.0)], "base": None}}
    for j, n in enumerate((100, 300, 1000, 4080)):
        table[n] = {"pmp": [(0.6 + 0.02 * j, 0.01), (0.62 + 0.02 * j, 0.01)],
                    "base": [(0.57 + 0.02 * j, 0.02), (0.59 + 0.03 * j, 0.02)]}
    check_png(plots.pmp_curve(table, str(tmp_path / "pmp.png")))
