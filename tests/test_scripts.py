"""Smoke tests: each script end to end at a tiny size, in a subprocess, as a user runs it; and the
same pipeline on a user's own JSONL files through --data."""
import json
import os
import subprocess
import sys

import pytest
import torch

from nanorlhf import world
from nanorlhf.checkpoint import load_checkpoint, load_state
from nanorlhf.data import write_jsonl
from nanorlhf.evaluate import comparison_scores, gold_order, pair_accuracy, reward_of

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scripts run the PyTorch references on CPU: the Triton interpreter is for the kernel tests.
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


def run(script, *args):
    p = subprocess.run([sys.executable, os.path.join(ROOT, script), *args], capture_output=True, text=True,
                       env=ENV, cwd=ROOT, timeout=600)
    assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p.stdout


@pytest.fixture(scope="module")
def pipeline(quick_root):
    """The session's quick run (conftest.quick_root) and what each stage printed; tests here write only
    beside its sft/, rm/ and ppo/."""
    return quick_root, {s: (quick_root / f"{s}.log").read_text() for s in ("sft", "rm", "ppo")}


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


def held_out_accuracy(model_path, comparisons_path, order_of):
    """(accuracy, pairs) of a saved preference model on saved held-out comparisons, recomputed here."""
    pm, enc, _ = load_checkpoint(str(model_path))
    val = [json.loads(line) for line in open(comparisons_path)]
    hits, n = pair_accuracy(comparison_scores(pm.eval(), enc, val, torch.device("cpu")), val, order_of)
    return hits / n, n


def test_rm_metrics_and_demo_normalization(pipeline):
    """The saved RM, scored here: the demonstrations average 0 (the paper's normalization, by a bias
    shift that did move it), and its held-out accuracies are the ones metrics.json reports."""
    d, _ = pipeline
    m = metrics(d, "rm")
    for key in ["val_accuracy", "gold_accuracy", "labeler_agreement", "demo_mean_reward", "wall_seconds"]:
        assert key in m, key
    rm, enc, _ = load_checkpoint(str(d / "rm/model.pt"), kind="reward")
    demos = world.make_world(seed=0, scale=0.05)["demos"]  # what the --quick run normalized on
    r = reward_of(rm.eval(), enc, [x["prompt"] for x in demos], [x["response"] for x in demos], torch.device("cpu"))
    assert abs(r.mean().item()) < 1e-4 and abs(m["demo_bias_removed"]) > 1e-3
    for key, order_of in (("val_accuracy", lambda c: c["ranking"]), ("gold_accuracy", gold_order)):
        acc, n = held_out_accuracy(d / "rm/model.pt", d / "rm/val_comparisons.jsonl", order_of)
        assert m[key] == pytest.approx(acc, abs=1e-9) and n == m["n_val_pairs" if key == "val_accuracy" else "n_gold_pairs"]


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
        assert m["n_comparisons"] == 20
        assert m["gold_accuracy"] == pytest.approx(held_out_accuracy(d / objective / "model.pt",
                                                                     d / "rm/val_comparisons.jsonl", gold_order)[0])
        assert ("binary_val_accuracy" in m) == (objective == "binary")
        assert ("gold_accuracy_sum_logprob" in m) == (objective == "imitation")
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
    curve = json.load(open(d / "ppo/curve.json"))
    assert len(curve) == 3 and all(c["first_ratio_dev"] == 0.0 for c in curve)  # at every iteration


@pytest.mark.parametrize("advantage", ["rloo", "grpo"])
def test_critic_free_advantages_train_without_a_value_model(pipeline, advantage):
    d, _ = pipeline
    out = run("train_ppo.py", "--quick", "--sft", str(d / "sft/model.pt"), "--rm", str(d / "rm/model.pt"),
              "--advantage", advantage, "--save-every", "1", "--out", str(d / advantage))
    assert f"advantage {advantage} (k 4)" in out  # --quick's 16 episodes: 4 prompts x 4 samples
    m = metrics(d, advantage)
    assert m["first_minibatch_max_abs_log_ratio"] == 0.0 and 0 <= m["win_rate_vs_sft"] <= 1
    curve = json.load(open(d / advantage / "curve.json"))
    assert all(c["vf_loss"] == 0 for c in curve) and all(c["k3_kl"] >= 0 for c in curve)
    assert curve[-1]["k3_kl"] > 0  # the policy moved off SFT: k3 sees it
    state = load_state(str(d / advantage / "state.pt"))
    assert state["value"] is None  # no value function: none saved, none in the optimizer
    policy_params = len(list(load_checkpoint(str(d / "sft/model.pt"))[0].parameters()))
    assert len(state["opt"]["param_groups"][0]["params"]) == policy_params


def dpo_counts(path):
    rows = [json.loads(line) for line in open(path)]
    return len(rows), sum(len(r["ranking"]) * (len(r["ranking"]) - 1) // 2 for r in rows)


def test_dpo_trains_on_the_rm_comparisons_and_evaluates_like_ppo(pipeline):
    d, _ = pipeline
    run("train_dpo.py", "--quick", "--sft", str(d / "sft/model.pt"), "--comparisons", str(d / "rm/comparisons.jsonl"),
        "--out", str(d / "dpo"))
    m = metrics(d, "dpo")
    assert (m["n_comparisons"], m["n_pairs"]) == dpo_counts(d / "rm/comparisons.jsonl")  # every C(K,2) pair
    for key in ["win_rate_vs_sft", "greedy_win_rate_vs_sft", "gold_score", "sft_gold_score", "sampled_kl",
                "pretrain_loss", "sft_pretrain_loss", "val_accuracy", "gold_accuracy", "seconds_per_pair"]:
        assert key in m, key
    assert m["losses"][0] == pytest.approx(0.6931, abs=1e-3)  # pi = pi_ref at the start: h = 0, -log sigmoid(0)
    assert metrics(d, "ppo").keys() - m.keys() <= {"rm_score", "kl", "first_minibatch_max_abs_log_ratio"}


def test_dpo_resumes_exactly(pipeline):
    d, _ = pipeline
    args = ["--quick", "--ipo", "--beta", "0.5", "--sft", str(d / "sft/model.pt"),
            "--comparisons", str(d / "rm/comparisons.jsonl"), "--n-eval", "4"]
    run("train_dpo.py", *args, "--out", str(d / "ipo_full"))
    out = run("train_dpo.py", *args, "--out", str(d / "ipo_part"), "--stop-at-step", "4")
    assert "saved a resumable state at step 4" in out and not (d / "ipo_part/model.pt").exists()
    run("train_dpo.py", *args, "--out", str(d / "ipo_part"), "--resume")
    full, part = metrics(d, "ipo_full"), metrics(d, "ipo_part")
    assert len(full["losses"]) == 10 and full["losses"] == part["losses"]
    assert full["losses"][0] == pytest.approx(1.0, abs=1e-4)  # IPO at h = 0: (0 - 1/(2 beta))^2
    a, b, sft = (torch.load(d / f, weights_only=True)["model"] for f in ("ipo_full/model.pt", "ipo_part/model.pt",
                                                                         "sft/model.pt"))
    assert all(torch.equal(a[k], b[k]) for k in a) and not all(torch.equal(a[k], sft[k]) for k in a)


def test_report_evaluates_every_baseline_on_both_test_sets(pipeline):
    d, _ = pipeline
    p = subprocess.run([sys.executable, "-m", "nanorlhf.report", "--root", str(d), "--curves"], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.load(open(d / "report.json"))
    assert set(res["rows"]) == {"base T=1", "base greedy", "SFT T=1", "SFT greedy", "SFT best T", "best-of-4",
                                "best-of-16", "PPO-ptx T=1", "PPO-ptx greedy"}  # no ppo_noptx in this run
    w = world.make_world(seed=0, scale=0.05)
    for name, row in res["rows"].items():
        for s, n in (("test", len(w["test_prompts"])), ("heldout", len(w["heldout_prompts"]))):
            vs = row[s]["vs_sft"]
            assert row[s]["n"] == n, (name, s)
            # each prompt is a win (1), a tie (1/2) or a loss (0): 2 n win_rate is a whole number, and the
            # ties alone put it within [tie_rate / 2, 1 - tie_rate / 2]
            assert abs(2 * n * vs["win_rate"] - round(2 * n * vs["win_rate"])) < 1e-6, (name, s)
            assert vs["tie_rate"] / 2 - 1e-9 <= vs["win_rate"] <= 1 - vs["tie_rate"] / 2 + 1e-9, (name, s)
    for row in ("SFT T=1", "SFT greedy"):  # against itself: all ties
        assert res["rows"][row]["test"]["vs_sft"]["tie_rate"] == 1.0 and res["rows"][row]["test"]["vs_sft"]["win_rate"] == 0.5
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
    run("train_dpo.py", "--quick", "--data", str(data), "--sft", str(out / "sft/model.pt"), "--out", str(out / "dpo"))
    assert json.load(open(out / "dpo/metrics.json"))["n_pairs"] == 3 * 40
    assert "val_loss" in json.dumps(json.load(open(out / "sft/metrics.json")))
    assert "val_accuracy" in json.load(open(out / "rm/metrics.json"))
    assert (out / "ppo/model.pt").exists()
    with pytest.raises(ValueError):  # sanity: these prompts are indeed foreign to the gold labeler
        world.score(prompts[0], "Hello, friend!")
