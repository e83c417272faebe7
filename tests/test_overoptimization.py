"""The over-optimization study (nanorlhf.experiments.overoptimization): Gao et al.'s fits recover
known coefficients, the binning and the table, the figure, and the study end to end at a tiny size."""
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from nanorlhf.experiments.overoptimization import binned, fit_gao, gao, series, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts run the PyTorch references


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fit_recovers_known_coefficients_on_exact_data(form):
    d = np.linspace(0.0, 2.5, 20)  # d = 0 included: d log d -> 0 there, not NaN
    f = fit_gao(d, gao(d, 0.4, 0.15, form), form)
    assert f["alpha"] == pytest.approx(0.4, abs=1e-9) and f["beta"] == pytest.approx(0.15, abs=1e-9)
    assert f["r2"] == pytest.approx(1.0, abs=1e-12) and f["points"] == 20
    # the fitted peak is where the curve stops rising
    assert f["peak_d"] == pytest.approx(0.4 / 0.3 if form == "bon" else math.exp(0.4 / 0.15 - 1))


@pytest.mark.parametrize("form", ["bon", "rl"])
def test_fit_on_noisy_data_is_close_with_r2_below_one(form):
    rng = np.random.default_rng(0)
    d = np.linspace(0.05, 2.5, 200)
    f = fit_gao(d, gao(d, 0.4, 0.15, form) + rng.normal(0, 0.02, d.shape), form)
    assert f["alpha"] == pytest.approx(0.4, abs=0.03) and f["beta"] == pytest.approx(0.15, abs=0.03)
    assert 0.5 < f["r2"] < 1.0


def test_no_peak_when_the_score_keeps_rising():
    d = np.linspace(0.1, 2, 10)
    assert fit_gao(d, 0.3 * d + 0.05 * d * d, "bon")["peak_d"] is None  # beta < 0: convex, no peak


def test_binned_averages_sqrt_kl_in_training_order():
    curve = [dict(kl=k, gold_score=g, rm_score=r) for k, g, r in
             [(-0.01, 0.0, 0.0), (0.25, 0.2, 0.4), (4.0, 1.0, 2.0), (1.0, 0.5, 1.0), (9.0, 0.0, 3.0)]]
    b = binned(curve, 2)  # d: 0, 0.5 | 2, 1 | 3 (a KL estimate below 0 counts as 0)
    assert b["d"] == pytest.approx([0.25, 1.5, 3.0])
    assert b["gold"] == pytest.approx([0.1, 0.75, 0.0]) and b["rm"] == pytest.approx([0.2, 1.5, 3.0])


def fake_result():
    d = [0.0, 0.5, 1.0, 1.5]
    return {"series": [series("best-of-n", "bon", d, [0.3, 0.4, 0.45, 0.44], [0.0, 0.3, 0.6, 0.9],
                              {"gold": 0.3, "rm": 0.0}, n=[1, 2, 4, 8]),
                       series("PPO beta 0.1", "rl", d, [0.3, 0.38, 0.4, 0.39], [0.0, 0.2, 0.5, 0.7],
                              {"gold": 0.3, "rm": 0.0})]}


def test_table_lists_fits_then_points():
    text = table(fake_result())
    lines = text.splitlines()
    assert lines[0].startswith("| series | score | form | alpha | beta | R^2 |")
    assert sum(line.startswith("| best-of-n | gold | bon |") for line in lines) == 1
    assert sum(line.startswith("| PPO beta 0.1 | rm | rl |") for line in lines) == 1
    assert "| best-of-n | n = 8 | 1.500 | 2.250 | +0.140 | +0.900 |" in lines
    assert "| PPO beta 0.1 | bin 1 | 0.000 | 0.000 | +0.000 | +0.000 |" in lines


def test_frontier_png(tmp_path, monkeypatch):
    """Each method's points and fitted curve, on the RM panel and the gold panel, read back from the
    figure's axes (not the PNG's size)."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    from nanorlhf import plots
    drawn, save = [], plots._save
    monkeypatch.setattr(plots, "_save", lambda fig, path: (drawn.append(fig), save(fig, path))[1])
    res = fake_result()
    for s in res["series"]:
        s["fit_d"] = np.linspace(0, 1.6, 50)
        s["fit_gold"], s["fit_rm"] = (gao(s["fit_d"], s["fits"][k]["alpha"], s["fits"][k]["beta"], s["form"])
                                      for k in ("gold", "rm"))
    path = plots.frontier(res["series"], str(tmp_path / "f.png"))
    assert os.path.exists(path)
    for ax, key in zip(drawn[0].axes, ("rm", "gold")):
        got = [(np.asarray(line.get_xdata(), float), np.asarray(line.get_ydata(), float)) for line in ax.get_lines()]
        assert len(got) == 2 * len(res["series"]) + 1  # points and fit per series, and the zero line
        for i, s in enumerate(res["series"]):
            (px, py), (fx, fy) = got[2 * i], got[2 * i + 1]
            np.testing.assert_allclose(px, s["d"])
            np.testing.assert_allclose(py, s[key])
            np.testing.assert_allclose(fx, s["fit_d"])
            np.testing.assert_allclose(fy, s[f"fit_{key}"])
        assert [t.get_text() for t in ax.get_legend().get_texts()] == [s["label"] for s in res["series"]]


def study(*args):
    return subprocess.run([sys.executable, "-m", "nanorlhf.experiments.overoptimization", *args], capture_output=True,
                          text=True, env=ENV, cwd=ROOT, timeout=600)


def test_missing_run_is_a_one_line_user_error(tmp_path):
    p = study("--root", str(tmp_path / "nothing"), "--out", str(tmp_path / "o"))
    assert p.returncode == 2 and p.stderr.count("\n") == 1, p.stderr
    assert "sft/model.pt not found" in p.stderr and "nanorlhf.experiments.seeds" in p.stderr


def test_study_end_to_end_quick_and_resumes(copy_root):
    tmp_path = copy_root
    out = tmp_path / "oo"
    p = study("--quick", "--root", str(tmp_path), "--out", str(out))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "oo.json").read_text())
    assert [s["label"] for s in res["series"]] == ["best-of-n", "PPO beta 0.02", "PPO beta 0.02, checkpoints",
                                                    "PPO beta 0.1", "PPO beta 0.1, checkpoints"]
    assert res["series"][2]["iteration"] == [1, 2, 3]  # --quick keeps the policy every iteration
    assert res["series"][0]["n"] == [1, 2, 4, 8] and res["series"][0]["d"][0] == 0.0
    assert all(np.isfinite(s["fits"][k]["alpha"]) for s in res["series"] for k in ("gold", "rm"))
    assert (tmp_path / "oo.md").read_text().startswith("# Over-optimization frontier")
    # every stage's output exists now: a second run only refits
    p = study("--quick", "--root", str(tmp_path), "--out", str(out))
    assert p.returncode == 0 and "train_ppo.py" not in p.stdout
    assert json.loads((tmp_path / "oo.json").read_text())["series"] == res["series"]
