"""The algorithms study (nanorlhf.experiments.algorithms): its grid, one point from a script's
metrics, the CI, seeds aggregated, the frontier series and the table; and the study end to end at
toy size."""
import json
import os
import subprocess
import sys

import pytest

from nanorlhf.evaluate import wilson
from nanorlhf.experiments.algorithms import aggregate, grid, point_of, series_of, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts run the PyTorch references


def test_grid_has_every_seed_only_at_the_default_points():
    g = grid(["RLOO", "DPO"], [0.02, 0.1], [0.1, 0.3], [1, 3], [0, 1, 2])
    key = lambda p: (p["method"], p["beta"], p["epochs"], p["seed"])
    assert [key(p) for p in g] == [("RLOO", 0.02, None, 0), ("RLOO", 0.1, None, 0), ("RLOO", 0.1, None, 1),
                                   ("RLOO", 0.1, None, 2), ("DPO", 0.1, 1, 0), ("DPO", 0.1, 1, 1), ("DPO", 0.1, 1, 2),
                                   ("DPO", 0.1, 3, 0), ("DPO", 0.3, 1, 0), ("DPO", 0.3, 3, 0)]


def test_wilson_with_ties_counted_half():
    lo, hi = wilson(5, 10)  # the textbook value
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    lo, hi = wilson(6.5, 10)  # 6 wins and one tie of 10
    assert lo == pytest.approx(0.3536, abs=1e-3) and hi == pytest.approx(0.8631, abs=1e-3)


def metrics(**kw):
    m = {"n_eval_prompts": 10, "greedy_win_rate_vs_sft": 0.65, "win_rate_vs_sft": 0.6, "win_rate_vs_sft_ci95": [0.3, 0.8],
         "sampled_kl": 0.25, "gold_score": 0.5, "greedy_gold_score": 0.7, "sft_greedy_gold_score": 0.4,
         "wall_seconds": 130.0, "train_seconds": 115.2, "seconds_per_pair": 0.01,
         "args": {"iterations": 90, "rollout_size": 64}}
    return {**m, **kw}


def test_point_from_metrics():
    p = point_of({"method": "GRPO", "beta": 0.1, "epochs": None, "seed": 0}, metrics(), {"rm": 1.5}, {"max_rss_mb": 470})
    assert p["d"] == pytest.approx(0.5) and p["kl"] == 0.25 and p["gold"] == 0.5 and p["rm"] == 1.5
    assert p["greedy_gold_change"] == pytest.approx(0.3)
    assert p["greedy_win_ci"] == pytest.approx(wilson(6.5, 10)) and p["win_ci"] == [0.3, 0.8]
    assert p["seconds_per_unit"] == pytest.approx(115.2 / (90 * 64)) and p["max_rss_mb"] == 470
    dpo = point_of({"method": "DPO", "beta": 0.1, "epochs": 1, "seed": 0}, metrics(sampled_kl=-0.01), {"rm": 0.0}, {})
    assert dpo["d"] == 0.0 and dpo["seconds_per_unit"] == 0.01 and dpo["max_rss_mb"] is None  # a KL estimate < 0: d 0


def pt(method, beta, seed, d, gold, rm, epochs=None):
    return {"method": method, "beta": beta, "epochs": epochs, "seed": seed, "kl": d * d, "d": d, "gold": gold,
            "greedy_gold_change": 0.0, "rm": rm, "win": 0.5 + gold, "greedy_win": 0.5, "win_ci": [gold, 1.0],
            "greedy_win_ci": [0.4, 0.6], "wall_seconds": 100.0, "seconds_per_unit": 0.02, "max_rss_mb": 500.0}


POINTS = [pt("RLOO", 0.1, 1, 0.6, 0.3, 1.2), pt("RLOO", 0.1, 0, 0.4, 0.1, 0.8), pt("RLOO", 0.02, 0, 1.0, 0.05, 2.0),
          pt("RLOO", 0.3, 0, 0.2, 0.12, 0.4), pt("DPO", 0.1, 0, 0.3, 0.2, 0.1, 1), pt("DPO", 0.1, 0, 0.5, 0.15, 0.2, 3)]
BON = {"ref": {"gold": 0.1, "rm": 0.0}, "points": [{"n": n, "kl": k, "d": k ** 0.5, "gold": g, "rm": r} for n, k, g, r in
                                                   [(1, 0.0, 0.1, 0.0), (2, 0.19, 0.15, 0.3), (4, 0.64, 0.2, 0.5)]]}


def test_aggregate_lists_seeds_in_order():
    rows = aggregate(POINTS)
    assert [(r["method"], r["beta"], r["epochs"]) for r in rows] == [("RLOO", 0.1, None), ("RLOO", 0.02, None),
                                                                     ("RLOO", 0.3, None), ("DPO", 0.1, 1), ("DPO", 0.1, 3)]
    assert rows[0]["seeds"] == [0, 1] and rows[0]["gold"] == [0.1, 0.3] and rows[0]["d"] == [0.4, 0.6]
    assert rows[1]["seeds"] == [0] and rows[1]["win_ci"] == [[0.05, 1.0]]


def test_series_are_changes_from_sft_sorted_by_d_fitted_from_three_points():
    s = {x["label"]: x for x in series_of(BON, aggregate(POINTS))}
    assert list(s) == ["best-of-n", "RLOO", "DPO, 1 epoch", "DPO, 3 epochs"]
    assert s["best-of-n"]["gold"] == pytest.approx([0.0, 0.05, 0.1]) and s["best-of-n"]["n"] == [1, 2, 4]
    r = s["RLOO"]  # the default point is the mean over its two seeds
    assert r["beta"] == [0.3, 0.1, 0.02] and r["d"] == pytest.approx([0.2, 0.5, 1.0])
    assert r["gold"] == pytest.approx([0.02, 0.1, -0.05]) and r["rm"] == pytest.approx([0.4, 1.0, 2.0])
    assert r["fits"]["gold"]["points"] == 3 and s["best-of-n"]["fits"]["rm"]["points"] == 3
    assert s["DPO, 1 epoch"]["fits"] == {"gold": None, "rm": None}  # one point: nothing to fit


def test_table_rows():
    rows = aggregate(POINTS)
    lines = table({"bon": BON, "rows": rows, "series": series_of(BON, rows)}).splitlines()
    assert "| RLOO | 0.1 | - | 0 1 | 0.500 ± 0.141 | 0.260 ± 0.141 | 0.100 ± 0.141 | 0.000 ± 0.000 | 1.000 ± 0.283 " \
           "| 0.700 ± 0.141 | 0.500 ± 0.000 | 0.0200 ± 0.0000 | 500 ± 0 |" in lines
    assert "| RLOO | 0.02 | - | 0 | 1.000 | 1.000 | -0.050 | 0.000 | 2.000 | 0.550 (0.050-1.000) | 0.500 (0.400-0.600) " \
           "| 0.0200 | 500 |" in lines
    assert "| best-of-4 | - | - | - | 0.800 | 0.640 | +0.100 | - | +0.500 | - | - | - | - |" in lines
    assert sum(line.startswith("| RLOO | gold | rl |") for line in lines) == 1
    assert not any(line.startswith("| DPO, 1 epoch |") for line in lines)


def test_study_end_to_end_quick_and_resumes(copy_root):
    tmp_path = copy_root
    study = lambda: subprocess.run([sys.executable, "-m", "nanorlhf.experiments.algorithms", "--quick", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "alg"), "--methods", "RLOO", "DPO", "--betas",
                                    "0.1", "--seeds", "0", "1", "--dpo-betas", "0.3", "--dpo-epochs", "1"], capture_output=True, text=True,
                                   env=ENV, cwd=ROOT, timeout=600)
    p = study()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "alg.json").read_text())
    assert [(r["method"], r["seeds"]) for r in res["rows"]] == [("RLOO", [0, 1]), ("DPO", [0])]
    assert all(x["n_eval"] == 8 and x["max_rss_mb"] > 50 for x in res["points"])
    with open(tmp_path / "alg/RLOO_beta0.1_seed1/metrics.json") as f:
        m = json.load(f)
    assert m["args"]["advantage"] == "rloo" and m["args"]["seed"] == 1 and m["args"]["data"].endswith("data")
    assert (tmp_path / "alg.md").read_text().startswith("# Algorithms on one gold-vs-KL frontier")
    p = study()  # every stage's output exists now: nothing is trained again
    assert p.returncode == 0 and "train_ppo.py" not in p.stdout and "train_dpo.py" not in p.stdout
    assert json.loads((tmp_path / "alg.json").read_text())["rows"] == res["rows"]
