"""
The reward model's scaling curve against gold: RMs trained from the same SFT policy on more ranked
prompts, each judged on ONE held-out set, and the policies they make:

    python -m nanorlhf.experiments.rm_scaling --lock FILE     # 1,500 4,500 13,500 40,000 prompts
    python -m nanorlhf.experiments.rm_scaling --prompts 1500 4500 13500 --lock FILE   # what fits

Needs a finished run (--root, as `python -m nanorlhf.experiments.seeds --seeds 0` writes out/world0).
Writes out/rm_scaling.{json,md} and, with matplotlib, out/rm_scaling.png (plots.rm_scaling); the
stages go to out/rm_scaling/ (data/, n{N}/rm, n{N}/bon.json, n{N}/ppo_seed{s}), and a stage whose
output exists is skipped.

Per point N (the --n-prompts of train_rm.py; its sampler draws fresh responses for each round over
the world's RM prompts, so 13,500 is nine rounds over its 1,500):
  RM          train_rm.py --n-prompts N from root/sft (root/rm itself where N is its own budget).
  accuracy    against one noisy labeler and against the gold order on the SAME held-out comparisons
              (root/rm/val_comparisons.jsonl, copied to OUT/data on the first run) for every N, beside
              that set's inter-labeler agreement and Bayes ceiling (agreement.ceilings), and the
              control: the base LM's own mean token log-likelihood as the score
              (askell.accuracies), which uses no label.
  best-of-16  gold of the RM's pick among 16 SFT samples (the same samples for every N) on the
              --n-eval test prompts (overoptimization.best_of_n_stage).
  PPO-ptx     train_ppo.py (its defaults) on that RM with the shared --data folder (world 0's
              prompts, so a train seed changes only the run): gold at T=1 and greedy and the win rates
              against SFT, on the --n-eval test prompts; the first seed everywhere, every --seeds at
              the two largest N. Mean +- sd over seeds.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

from nanorlhf import agreement, plots, world
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import gold_order, pair_accuracy
from nanorlhf.experiments.algorithms import run_stage, write_data
from nanorlhf.experiments.askell import accuracies, write_results
from nanorlhf.experiments.overoptimization import best_of_n_stage
from nanorlhf.experiments.seeds import REPO, held
from nanorlhf.report import cell

OLD_DEFAULT = 4500  # train_rm.py's budget when a run's metrics did not record it


def load(path):
    with open(path) as f:
        return json.load(f)


def seeds_at(n, prompts, seeds):
    """Train seeds of PPO-ptx at point n: all of them at the two largest, the first elsewhere."""
    return seeds if n in sorted(prompts)[-2:] else seeds[:1]


def row_of(n, rm, acc, bon, ppo):
    """One point of the curve from its RM metrics, [labeler, gold] accuracy, best-of-n and PPO runs."""
    pick = {p["n"]: p["gold"] for p in bon["points"]}
    get = lambda k: [m[k] for m in ppo]
    return {"prompts": n, "ranked": rm["n_comparisons"], "pairs": rm["n_pairs"], "labeler_acc": acc[0],
            "gold_acc": acc[1], "rm_seconds": rm["wall_seconds"], "bon1_gold": pick[1], "bon16_gold": pick[16],
            "ppo_seeds": [m["args"]["seed"] for m in ppo], "gold": get("gold_score"), "greedy_gold": get("greedy_gold_score"),
            "win": get("win_rate_vs_sft"), "greedy_win": get("greedy_win_rate_vs_sft"),
            "win_ci": [m["win_rate_vs_sft_ci95"] for m in ppo]}


def bends(rows):
    """Gain of gold accuracy per tripling of the ranked prompts between neighbouring points
    (log base 3), the curve's slope; where it falls most is where it bends."""
    return [{"from": a["prompts"], "to": b["prompts"],
             "gold_acc_per_x3": (b["gold_acc"] - a["gold_acc"]) / np.log(b["ranked"] / a["ranked"]) * np.log(3)}
            for a, b in zip(rows, rows[1:])]


def table(res):
    c = res["ceiling"]
    lines = ["| RM prompts | ranked (pairs) | RM vs labeler | RM vs gold | best-of-16 gold | PPO-ptx seeds "
             "| PPO-ptx gold T=1 | PPO-ptx gold greedy | win vs SFT T=1 | win greedy | RM wall s |", "|---" * 11 + "|"]
    for r in res["rows"]:
        lines.append(f"| {r['prompts']:,} | {r['ranked']:,} ({r['pairs']:,}) | {r['labeler_acc']:.3f} | {r['gold_acc']:.3f} "
                     f"| {r['bon16_gold']:.3f} | {' '.join(map(str, r['ppo_seeds']))} | {cell(r['gold'])} "
                     f"| {cell(r['greedy_gold'])} | {cell(r['win'], cis=r['win_ci'])} | {cell(r['greedy_win'])} "
                     f"| {r['rm_seconds']:.0f} |")
    lines += ["", f"Held-out set: {c['n_val_pairs']:,} labeler pairs, {c['n_gold_pairs']:,} gold-ordered pairs "
              "(OUT/data/val_comparisons.jsonl: root/rm's when the study began). Measured inter-labeler "
              f"agreement {c['labeler_agreement']:.3f} "
              f"(expected {c['expected_labeler_agreement']:.3f}), Bayes ceiling {c['bayes_ceiling']:.3f}; "
              f"control, the base LM's likelihood (no labels): vs labeler {c['base_lm'][0]:.3f}, vs gold "
              f"{c['base_lm'][1]:.3f}. SFT: best-of-1 gold {res['rows'][0]['bon1_gold']:.3f}.", "",
              "| from | to | gold accuracy gained per 3x the ranked prompts |", "|---|---|---|"]
    lines += [f"| {b['from']:,} | {b['to']:,} | {b['gold_acc_per_x3']:+.3f} |" for b in res["bends"]]
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/world0", help="the run: root/sft/{model,base}.pt, root/rm")
    ap.add_argument("--out", default="out/rm_scaling", help="stage folder; results in OUT.json, OUT.md, OUT.png")
    ap.add_argument("--world-seed", type=int, default=0, help="the run's world seed (its prompts)")
    ap.add_argument("--prompts", type=int, nargs="+", default=[1500, 4500, 13500, 40000], help="RM prompts (train_rm.py --n-prompts)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="PPO-ptx train seeds at the two largest points")
    ap.add_argument("--n-eval", type=int, default=400, help="test prompts of every evaluation (best-of-16 too)")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    ap.add_argument("--quick", action="store_true", help="tiny world and runs: a smoke test (root from --quick scripts)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_eval = 8
    prompts = sorted(set(args.prompts))
    for path in ("sft/model.pt", "sft/base.pt", "rm/model.pt", "rm/metrics.json", "rm/val_comparisons.jsonl"):
        if not os.path.isfile(os.path.join(args.root, path)):
            raise UserError(f"{args.root}/{path} not found: train the run first "
                            f"(python -m nanorlhf.experiments.seeds --seeds {args.world_seed})")
    w = world.make_world(seed=args.world_seed, scale=0.05 if args.quick else 1.0)
    data, test = os.path.join(args.out, "data"), w["test_prompts"][:args.n_eval]
    if not os.path.exists(os.path.join(data, "comparisons.jsonl")):
        write_data(args.root, data, w, args.n_eval)
    quick = ["--quick"] * args.quick
    own = load(os.path.join(args.root, "rm", "metrics.json"))
    base_lm = os.path.join(args.out, "base_lm.json")
    if not os.path.exists(base_lm):
        with open(base_lm, "w") as f:
            json.dump(accuracies(os.path.join(args.root, "sft", "base.pt"), data, args.lock), f)
    with open(os.path.join(data, "val_comparisons.jsonl")) as f:  # the held-out set of every accuracy below
        val = [json.loads(line) for line in f]
    zeros = [[0] * len(c["responses"]) for c in val]  # any scores: pair_accuracy also counts the pairs
    ceiling = {**agreement.ceilings(val, args.world_seed), "base_lm": load(base_lm),
               "n_val_pairs": pair_accuracy(zeros, val, lambda c: c["ranking"])[1],
               "n_gold_pairs": pair_accuracy(zeros, val, gold_order)[1]}
    rows, walls = [], {}
    for n in prompts:
        folder = os.path.join(args.out, f"n{n}")
        rm_dir = os.path.join(folder, "rm")
        os.makedirs(folder, exist_ok=True)
        if n == (own["args"].get("n_prompts") or OLD_DEFAULT):
            rm_dir = os.path.join(args.root, "rm")  # the run's own RM is this point
        if not os.path.exists(os.path.join(rm_dir, "metrics.json")):
            with held(args.lock):
                run_stage([sys.executable, os.path.join(REPO, "train_rm.py"), "--sft", os.path.join(args.root, "sft", "model.pt"),
                           "--n-prompts", str(n), "--out", rm_dir, "--seed", str(args.world_seed), *quick])
        rm_model = os.path.join(rm_dir, "model.pt")
        stages = {k: os.path.join(folder, f"{k}.json") for k in ("accuracy", "bon")}
        if not os.path.exists(stages["accuracy"]):
            with open(stages["accuracy"], "w") as f:
                json.dump(accuracies(rm_model, data, args.lock), f)
        if not os.path.exists(stages["bon"]):
            with held(args.lock):
                t0 = time.time()
                bon = best_of_n_stage(args.root, test, w["rl_prompts"][:64], 16, [1, 4, 16], args.world_seed, rm_model)
            with open(stages["bon"], "w") as f:
                json.dump({**bon, "wall_seconds": time.time() - t0}, f, indent=1)
        ppo = []
        for s in seeds_at(n, prompts, args.seeds):
            run = os.path.join(folder, f"ppo_seed{s}")
            if not os.path.exists(os.path.join(run, "metrics.json")):
                with held(args.lock):
                    run_stage([sys.executable, os.path.join(REPO, "train_ppo.py"), "--data", data, "--out", run,
                               "--sft", os.path.join(args.root, "sft", "model.pt"), "--rm", rm_model,
                               "--n-eval", str(args.n_eval), "--seed", str(s), *quick])
            ppo.append(load(os.path.join(run, "metrics.json")))
            walls[f"n{n}/ppo_seed{s}"] = ppo[-1]["wall_seconds"]
        rm = load(os.path.join(rm_dir, "metrics.json"))
        walls[f"n{n}/rm"], walls[f"n{n}/bon"] = rm["wall_seconds"], load(stages["bon"])["wall_seconds"]
        rows.append(row_of(n, rm, load(stages["accuracy"]), load(stages["bon"]), ppo))
    res = {"args": vars(args), "ceiling": ceiling, "rows": rows, "bends": bends(rows), "wall_seconds": walls,
           "total_wall_seconds": sum(walls.values())}
    text = (f"# The reward model's scaling curve: {args.root}, {len(test)} test prompts\n\n{table(res)}\n\n"
            f"total stage wall time {res['total_wall_seconds']:.0f} s\n")
    print(text)
    write_results(args.out, text, res, lambda path: plots.rm_scaling(res, path))

if __name__ == "__main__":
    exit_on_user_error(main)
