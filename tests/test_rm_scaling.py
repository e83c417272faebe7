"""The RM scaling study (nanorlhf.experiments.rm_scaling): where PPO seeds go, one point's row, the
slope per tripling, the table; and the study end to end at toy size, resuming without retraining."""
import json
import os
import subprocess
import sys

import pytest

from nanorlhf import agreement
from nanorlhf.experiments.rm_scaling import bends, row_of, seeds_at, table

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts run the PyTorch references


def test_every_seed_only_at_the_two_largest_points():
    prompts = [13500, 1500, 40000, 4500]
    assert [seeds_at(n, prompts, [0, 1, 2]) for n in (1500, 4500, 13500, 40000)] == [[0], [0], [0, 1, 2], [0, 1, 2]]


def ppo(seed, gold):
    return {"args": {"seed": seed}, "gold_score": gold, "greedy_gold_score": gold + 0.2, "win_rate_vs_sft": 0.6,
            "greedy_win_rate_vs_sft": 0.7, "win_rate_vs_sft_ci95": [0.5, 0.7]}


def test_a_row_and_its_slope_and_table():
    bon = {"points": [{"n": 1, "gold": 0.1}, {"n": 4, "gold": 0.2}, {"n": 16, "gold": 0.3}]}
    rm = lambda k, s: {"n_comparisons": k, "n_pairs": 8 * k, "wall_seconds": s}
    rows = [row_of(1500, rm(1000, 40.0), [0.6, 0.7], bon, [ppo(0, 0.25)]),
            row_of(4500, rm(3000, 90.0), [0.65, 0.76], bon, [ppo(0, 0.3), ppo(1, 0.4)])]
    assert rows[1]["gold"] == [0.3, 0.4] and rows[1]["ppo_seeds"] == [0, 1] and rows[0]["bon16_gold"] == 0.3
    assert rows[0]["bon1_gold"] == 0.1 and rows[1]["greedy_gold"] == pytest.approx([0.5, 0.6])
    b = bends(rows)  # 3x the ranked prompts gave +0.06 gold accuracy
    assert b == [{"from": 1500, "to": 4500, "gold_acc_per_x3": pytest.approx(0.06)}]
    ceiling = {"labeler_agreement": 0.74, "expected_labeler_agreement": 0.72, "bayes_ceiling": 0.77,
               "n_val_pairs": 2369, "n_gold_pairs": 1625, "base_lm": [0.55, 0.66]}
    lines = table({"ceiling": ceiling, "rows": rows, "bends": b}).splitlines()
    assert "| 4,500 | 3,000 (24,000) | 0.650 | 0.760 | 0.300 | 0 1 | 0.350 ± 0.071 | 0.550 ± 0.071 " \
           "| 0.600 ± 0.000 | 0.700 ± 0.000 | 90 |" in lines
    assert "| 1,500 | 1,000 (8,000) | 0.600 | 0.700 | 0.300 | 0 | 0.250 | 0.450 | 0.600 (0.500-0.700) | 0.700 | 40 |" in lines
    assert "| 1,500 | 4,500 | +0.060 |" in lines
    assert any("base LM's likelihood (no labels): vs labeler 0.550, vs gold 0.660" in line for line in lines)


def test_study_end_to_end_quick_and_resumes(copy_root):
    tmp_path = copy_root
    study = lambda: subprocess.run([sys.executable, "-m", "nanorlhf.experiments.rm_scaling", "--quick", "--root",
                                    str(tmp_path), "--out", str(tmp_path / "rs"), "--prompts", "20", "40", "30",
                                    "--seeds", "0", "1"], capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=600)
    p = study()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "rs.json").read_text())
    assert [(r["prompts"], r["ppo_seeds"]) for r in res["rows"]] == [(20, [0]), (30, [0, 1]), (40, [0, 1])]
    r = [r["ranked"] for r in res["rows"]]
    assert r[0] < r[1] < r[2] <= 40  # each RM saw its own budget (prompts whose K fell under 2 drop out)
    with open(tmp_path / "rs/n30/ppo_seed1/metrics.json") as f:
        m = json.load(f)
    assert m["args"]["rm"].endswith("n30/rm/model.pt") and m["args"]["seed"] == 1 and m["args"]["data"].endswith("data")
    with open(tmp_path / "rs/n40/ppo_seed0/metrics.json") as f:  # the root's RM (its budget: --quick's 40) is a point
        assert json.load(f)["args"]["rm"] == str(tmp_path / "rm/model.pt") and not (tmp_path / "rs/n40/rm").exists()
    assert all(0 <= r["gold_acc"] <= 1 for r in res["rows"]) and len(res["bends"]) == 2
    # The ceilings are the study's own held-out set's, however the root's RM changes after it began
    m = json.loads((tmp_path / "rm/metrics.json").read_text())
    (tmp_path / "rm/metrics.json").write_text(json.dumps({**m, "labeler_agreement": 0.0, "bayes_ceiling": 0.0,
                                                          "n_val_pairs": 1, "n_gold_pairs": 1}))
    (tmp_path / "rm/val_comparisons.jsonl").write_text((tmp_path / "rm/val_comparisons.jsonl").read_text().split("\n")[0])
    p = study()  # every stage's output exists: nothing is trained again
    assert p.returncode == 0 and "train_rm.py" not in p.stdout and "train_ppo.py" not in p.stdout
    again = json.loads((tmp_path / "rs.json").read_text())
    assert again["rows"] == res["rows"] and again["ceiling"] == res["ceiling"]
    val = [json.loads(line) for line in open(tmp_path / "rs/data/val_comparisons.jsonl")]
    assert res["ceiling"]["n_val_pairs"] == sum(len(c["ranking"]) * (len(c["ranking"]) - 1) // 2 for c in val) > 1
    assert res["ceiling"]["labeler_agreement"] == agreement.ceilings(val, 0)["labeler_agreement"] > 0
