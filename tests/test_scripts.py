"""Smoke tests: each script end to end at a tiny size, in a subprocess, as a user runs it; and the
same pipeline on a user's own JSONL files through --data."""
import json
import os
import subprocess
import sys

import pytest

from nanorlhf import world
from nanorlhf.data import write_jsonl

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scripts run the PyTorch references on CPU: the Triton interpreter is for the kernel tests.
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def run(script, *args):
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                       env=ENV, cwd=ROOT, timeout=600)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    out = {"sft": run("train_sft.py", "--quick", "--out", str(d / "sft"))}
    out["rm"] = run("train_rm.py", "--quick", "--sft", str(d / "sft/model.pt"), "--out", str(d / "rm"))
    out["ppo"] = run("train_ppo.py", "--quick", "--sft", str(d / "sft/model.pt"), "--rm", str(d / "rm/model.pt"),
                     "--out", str(d / "ppo"))
    return d, out


def metrics(d, stage):
    with open(d / stage / "metrics.json") as f:
        return json.load(f)


def test_sft_writes_checkpoints_and_metrics(pipeline):
    d, out = pipeline
    m = metrics(d, "sft")
    for key in ["base_gold_score", "sft_gold_score", "base_toxic_rate", "sft_toxic_rate", "base_hallucination_rate",
                "sft_hallucination_rate", "base_constraint_rate", "sft_constraint_rate", "sft_win_rate_vs_base",
                "tie_rate_vs_base", "demo_gold_score", "base_refusal_rate_known", "sft_refusal_rate_known",
                "n_eval_prompts", "wall_seconds"]:
        assert key in m, key
    assert (d / "sft/base.pt").exists() and (d / "sft/model.pt").exists()
    assert "ETA" in out["sft"]  # progress lines


def test_rm_metrics_and_demo_normalization(pipeline):
    d, _ = pipeline
    m = metrics(d, "rm")
    for key in ["val_accuracy", "gold_accuracy", "labeler_agreement", "demo_mean_reward", "wall_seconds"]:
        assert key in m, key
    assert abs(m["demo_mean_reward"]) < 1e-3  # the paper's normalization: demonstrations score 0


def test_rm_objectives_on_the_same_comparisons(pipeline):
    """Askell et al.'s three objectives from the comparisons the ranked run sampled (with the labeler's
    yes/no and the held-out file), a capped budget, and a start from a reward model (PMP)."""
    d, _ = pipeline
    rows = [json.loads(line) for line in open(d / "rm/val_comparisons.jsonl")]
    assert rows and all(len(r["acceptable"]) == len(r["responses"]) for r in rows)
    for objective in ("binary", "imitation"):
        run("train_rm.py", "--quick", "--data", str(d / "rm"), "--init", str(d / "sft/base.pt"), "--objective", objective,
            "--n-prompts", "20", "--batch-size", "4", "--out", str(d / objective))
        m = metrics(d, objective)
        assert m["n_comparisons"] == 20 and 0 <= m["gold_accuracy"] <= 1
        assert ("binary_val_accuracy" in m) == (objective == "binary")
        assert ("gold_accuracy_sum_logprob" in m) == (objective == "imitation")
    from nanorlhf.checkpoint import load_checkpoint
    assert load_checkpoint(str(d / "imitation/model.pt"))[2]["kind"] == "policy"
    run("train_rm.py", "--quick", "--data", str(d / "rm"), "--init", str(d / "rm/model.pt"), "--out", str(d / "from_rm"))
    p = subprocess.run([sys.executable, "train_rm.py", "--quick", "--data", str(d / "rm"), "--init", str(d / "rm/model.pt"),
                        "--objective", "imitation", "--out", str(d / "bad")], capture_output=True, text=True, env=ENV, cwd=ROOT)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "imitation" in p.stderr


def test_ppo_metrics_and_exact_first_ratio(pipeline):
    d, out = pipeline
    m = metrics(d, "ppo")
    for key in ["win_rate_vs_sft", "tie_rate_vs_sft", "greedy_win_rate_vs_sft", "gold_score", "sft_gold_score",
                "refusal_rate_known", "rm_score", "kl", "pretrain_loss", "sft_pretrain_loss", "toxic_rate",
                "hallucination_rate", "constraint_rate", "wall_seconds"]:
        assert key in m, key
    # Old log-probs and the first minibatch's log-probs come from identical forwards: ratio exactly 1.
    assert m["first_minibatch_max_abs_log_ratio"] == 0.0
    assert (d / "ppo/curve.json").exists()


def test_report_evaluates_every_baseline_on_both_test_sets(pipeline):
    d, _ = pipeline
    p = subprocess.run([sys.executable, "-m", "nanorlhf.report", "--root", str(d), "--curves"], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.load(open(d / "report.json"))
    assert set(res["rows"]) == {"base T=1", "base greedy", "SFT T=1", "SFT greedy", "SFT best T", "best-of-4",
                                "best-of-16", "PPO-ptx T=1", "PPO-ptx greedy"}  # no ppo_noptx in this run
    for row in res["rows"].values():
        for s in ("test", "heldout"):
            assert 0 <= row[s]["vs_sft"]["win_rate"] <= 1 and row[s]["n"] > 0
    assert res["rows"]["SFT T=1"]["test"]["vs_sft"]["tie_rate"] == 1.0  # against itself: all ties
    assert res["kl"]["best-of-16"] == pytest.approx(2.7726 - 15 / 16, abs=1e-3)
    assert "| test set |" in p.stdout and "| heldout set |" in p.stdout and "Bayes ceiling" in p.stdout


def test_user_jsonl_data_trains_through_every_script(tmp_path):
    """A tiny user data set in the documented JSONL formats, prompts NOT from the world: no gold
    labeler, so the scripts must train and report what they can."""
    data = tmp_path / "data"
    prompts = [f"Say hello to friend number {i}." for i in range(40)]
    write_jsonl(data / "pretrain.jsonl", [{"text": f"Hello friend {i}, nice to see you again today."} for i in range(300)])
    write_jsonl(data / "demos.jsonl", [{"prompt": p, "response": "Hello, friend!"} for p in prompts])
    write_jsonl(data / "comparisons.jsonl", [{"prompt": p, "responses": ["Hello, friend!", "Go away.", "Hi."],
                                              "ranking": [0, 2, 1]} for p in prompts])
    write_jsonl(data / "rl_prompts.jsonl", [{"prompt": p} for p in prompts])
    out = tmp_path / "out"
    run("train_sft.py", "--quick", "--data", str(data), "--out", str(out / "sft"))
    run("train_rm.py", "--quick", "--data", str(data), "--sft", str(out / "sft/model.pt"), "--out", str(out / "rm"),
        "--batch-size", "4")
    run("train_ppo.py", "--quick", "--data", str(data), "--sft", str(out / "sft/model.pt"),
        "--rm", str(out / "rm/model.pt"), "--out", str(out / "ppo"))
    assert "val_loss" in json.dumps(json.load(open(out / "sft/metrics.json")))
    assert "val_accuracy" in json.load(open(out / "rm/metrics.json"))
    assert (out / "ppo/model.pt").exists()
    with pytest.raises(ValueError):  # sanity: these prompts are indeed foreign to the gold labeler
        world.score(prompts[0], "Hello, friend!")
