"""
One gold-vs-KL frontier for every way of using the same labels: best-of-n from SFT, PPO-ptx, RLOO,
GRPO and DPO, all from one finished run (root/sft/model.pt, root/rm/model.pt and the RM's
comparisons.jsonl, as `python -m nanorlhf.experiments.seeds --seeds 0` writes out/world0), judged by
the same gold labeler on the same test prompts:

    python -m nanorlhf.experiments.algorithms --lock FILE   # --dpo-betas 0.1 0.3: 68 min of stages measured (half-speed machine); --betas 0.02 0.1 --seeds 0: 38 min

Writes out/algorithms.{json,md} and, with matplotlib, out/algorithms.png (plots.frontier); the stages
go to out/algorithms/ (data/, bon.json, {method}_beta{b}[_ep{e}]_seed{s}/), and a stage whose output
exists is skipped (delete it to redo it after changing its options).

Method. data/ holds world 0's RL prompts, pretraining text and first --n-eval test prompts and the
RM's comparisons (train and held out); every run reads them with --data, so the train seed (--seed
of the scripts, 0 1 2 at each method's default point) changes the run, never the prompts.
  best-of-n  overoptimization.best_of_n_stage on the --n-eval test prompts, 64 samples each, n = 1..64.
  PPO-ptx    train_ppo.py (its defaults: 90 iterations x 64 episodes, ptx 0.2), --advantage gae;
  RLOO, GRPO the same with --advantage rloo / grpo (k = 4 samples per prompt): same episodes, same betas.
  DPO        train_dpo.py on the RM's comparisons, at --dpo-betas, for each of --dpo-epochs.
Measured per trained point, on the --n-eval test prompts (400 of 1,100: the budget): gold score at
T=1 and greedy, win rate against SFT at T=1 and greedy (ties half, Wilson 95% CI: evaluate.wilson)
and KL(pi || pi_SFT) of the policy's own samples (log pi - log pi_SFT; the scripts' metrics.json,
not re-evaluated); the RM score of those same T=1 samples (regenerated with the evaluation's seed,
the one number metrics.json lacks); wall time, seconds per episode (DPO: per comparison pair) and
the stage's peak memory (the child's ru_maxrss). x = d = sqrt(KL); scores as changes from SFT at T=1
(best-of-n's mean over all samples; greedy gold from SFT greedy). Three seeds: mean +- sd.
Calibrated, not measured: Gao et al.'s forms (overoptimization.fit_gao), d (alpha - beta d) for
best-of-n, d (alpha - beta log d) for the trained methods (DPO included, an RL optimizer's form), fitted
where a series has >= 3 points. Best-of-n has no win rate (best_of_n_stage keeps no texts).
Budget, from README's stage times (PPO-ptx ~150 s at n-eval 1100; ~125 s at 400), not a measured
full run: best-of-n 35 s + PPO-ptx 5 x 125 + RLOO, GRPO 2 x 5 x 110 (no value function) + DPO
3 x 30 + 3 x 50 (3 epochs) + 2 x 30 + RM scores 23 x 5 = ~2200 s.
"""
import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time

import numpy as np

from nanorlhf import world
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.data import write_jsonl
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import mean_gold, reward_of, sample, wilson
from nanorlhf.experiments.overoptimization import best_of_n_stage, fit_gao, run_models, write_frontier
from nanorlhf.experiments.seeds import REPO, held
from nanorlhf.report import cell

RL = {"PPO-ptx": "gae", "RLOO": "rloo", "GRPO": "grpo"}  # method -> train_ppo.py --advantage
DEFAULT = {"beta": 0.1, "epochs": 1}  # every method's default point (DPO: 1 epoch)


def grid(methods, betas, dpo_betas, dpo_epochs, seeds):
    """The trained points: [{"method", "beta", "epochs" (DPO, else None), "seed"}]; every seed at a
    method's default point, the first seed elsewhere."""
    out = []
    for m in methods:
        configs = [(b, e) for b in dpo_betas for e in dpo_epochs] if m == "DPO" else [(b, None) for b in betas]
        for b, e in configs:
            default = b == DEFAULT["beta"] and e in (None, DEFAULT["epochs"])
            out += [{"method": m, "beta": b, "epochs": e, "seed": s} for s in (seeds if default else seeds[:1])]
    return out


def folder_of(out, p):
    return os.path.join(out, f"{p['method']}_beta{p['beta']:g}" + (f"_ep{p['epochs']}" if p["epochs"] else "")
                        + f"_seed{p['seed']}")


def command(root, data, folder, p, args):
    common = ["--data", data, "--out", folder, "--beta", f"{p['beta']:g}", "--n-eval", str(args.n_eval),
              "--seed", str(p["seed"]), "--sft", os.path.join(root, "sft", "model.pt")] + ["--quick"] * args.quick
    if p["method"] == "DPO":
        return [sys.executable, os.path.join(REPO, "train_dpo.py"), *common, "--epochs", str(p["epochs"])]
    return [sys.executable, os.path.join(REPO, "train_ppo.py"), *common, "--rm", os.path.join(root, "rm", "model.pt"),
            "--advantage", RL[p["method"]]]


def run_stage(cmd):
    """Run a training script; -> its peak resident memory in MB (the child's own ru_maxrss, in KiB on Linux)."""
    print(f"[algorithms] {' '.join(cmd)}", flush=True)
    child = subprocess.Popen(cmd)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, cmd)
    return usage.ru_maxrss / 1024


def rm_stage(root, folder, prompts, seed):
    """The RM score of the final policy's T=1 samples on the test prompts, the samples regenerated as
    evaluate_policy drew them (seed + 1); their gold mean is kept to check that they are the same."""
    _, rm, enc, device = run_models(root)
    pi = load_checkpoint(os.path.join(folder, "model.pt"), kind="policy")[0].to(device).eval()
    texts, _ = sample(pi, enc, prompts, 1.0, seed=seed + 1)
    return {"rm": reward_of(rm, enc, prompts, texts, device).mean().item(), "gold": mean_gold(prompts, texts)}


def point_of(p, m, rm, stage):
    """One trained point from its metrics.json m, RM score rm and stage record (wall, peak memory)."""
    n, gw = m["n_eval_prompts"], m["greedy_win_rate_vs_sft"]
    a = m["args"]
    per = m["seconds_per_pair"] if p["method"] == "DPO" else m["train_seconds"] / (a["iterations"] * a["rollout_size"])
    return {**p, "kl": m["sampled_kl"], "d": math.sqrt(max(m["sampled_kl"], 0.0)), "gold": m["gold_score"],
            "greedy_gold_change": m["greedy_gold_score"] - m["sft_greedy_gold_score"], "rm": rm["rm"],
            "win": m["win_rate_vs_sft"], "win_ci": m["win_rate_vs_sft_ci95"], "greedy_win": gw,
            "greedy_win_ci": wilson(gw * n, n), "n_eval": n, "wall_seconds": m["wall_seconds"],
            "seconds_per_unit": per, "max_rss_mb": stage.get("max_rss_mb")}


KEYS = ("kl", "d", "gold", "greedy_gold_change", "rm", "win", "greedy_win", "wall_seconds", "seconds_per_unit", "max_rss_mb")


def aggregate(points):
    """Points of the same method, beta and epochs -> one row, each KEYS value the list over seeds
    (in seed order), the CIs of a single seed kept."""
    rows = {}
    for p in sorted(points, key=lambda p: p["seed"]):
        r = rows.setdefault((p["method"], p["beta"], p["epochs"]), {"method": p["method"], "beta": p["beta"],
                                                                     "epochs": p["epochs"], "seeds": []})
        r["seeds"].append(p["seed"])
        for k in KEYS:
            r.setdefault(k, []).append(p[k])
        r["win_ci"], r["greedy_win_ci"] = [p["win_ci"]], [p["greedy_win_ci"]]
    return list(rows.values())


def series_of(bon, rows):
    """Frontier series: best-of-n, then one per method (DPO one per epoch count) ordered by d; points as
    changes from SFT (best-of-n's mean over all samples), seeds averaged; fits where >= 3 points."""
    ref, pts = bon["ref"], bon["points"]
    out = {"best-of-n": {"label": "best-of-n", "form": "bon", "n": [p["n"] for p in pts], "d": [p["d"] for p in pts],
                         "gold": [p["gold"] - ref["gold"] for p in pts], "rm": [p["rm"] - ref["rm"] for p in pts]}}
    for r in rows:
        label = r["method"] + (f", {r['epochs']} epoch{'s' * (r['epochs'] > 1)}" if r["epochs"] else "")
        s = out.setdefault(label, {"label": label, "form": "rl", "beta": [], "d": [], "gold": [], "rm": []})
        s["beta"].append(r["beta"]), s["d"].append(float(np.mean(r["d"])))
        s["gold"].append(float(np.mean(r["gold"])) - ref["gold"]), s["rm"].append(float(np.mean(r["rm"])) - ref["rm"])
    out = list(out.values())
    for s in out:
        order = np.argsort(s["d"], kind="stable")
        for k in ("n", "beta", "d", "gold", "rm"):
            if k in s:
                s[k] = [s[k][i] for i in order]
        s["fits"] = {k: fit_gao(s["d"], s[k], s["form"]) if len(s["d"]) >= 3 else None for k in ("gold", "rm")}
    return out


def table(res):
    """Markdown: every trained point (mean +- sd over seeds; one seed: its 95% CI), best-of-n, the fits."""
    ref = res["bon"]["ref"]
    lines = ["| method | beta | epochs | seeds | d | KL | gold - SFT | greedy gold - SFT | RM - SFT | win vs SFT, T=1 "
             "| win, greedy | s / episode | peak MB |", "|---" * 13 + "|"]
    for r in res["rows"]:
        c = lambda k, **kw: cell(r[k], **kw)
        lines.append(f"| {r['method']} | {r['beta']:g} | {r['epochs'] or '-'} | {' '.join(map(str, r['seeds']))} "
                     f"| {c('d')} | {c('kl')} | {cell([g - ref['gold'] for g in r['gold']])} | {c('greedy_gold_change')} "
                     f"| {cell([x - ref['rm'] for x in r['rm']])} | {c('win', cis=r['win_ci'])} "
                     f"| {c('greedy_win', cis=r['greedy_win_ci'])} | {c('seconds_per_unit', digits=4)} "
                     f"| {c('max_rss_mb', digits=0)} |")
    for p in res["bon"]["points"]:
        lines.append(f"| best-of-{p['n']} | - | - | - | {p['d']:.3f} | {p['kl']:.3f} | {p['gold'] - ref['gold']:+.3f} "
                     f"| - | {p['rm'] - ref['rm']:+.3f} | - | - | - | - |")
    lines += ["", "| series | score | form | alpha | beta | R^2 | points | fitted peak d |", "|---" * 8 + "|"]
    for s in res["series"]:
        for k, f in s["fits"].items():
            if f:
                peak = "none" if f["peak_d"] is None else f"{f['peak_d']:.2f}"
                lines.append(f"| {s['label']} | {k} | {s['form']} | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.2f} "
                             f"| {f['points']} | {peak} |")
    return "\n".join(lines)


def write_data(root, data, w, n_eval):
    """The shared --data folder: world prompts (test: the first n_eval), pretraining text, the RM's comparisons."""
    write_jsonl(os.path.join(data, "rl_prompts.jsonl"), [{"prompt": p} for p in w["rl_prompts"]])
    write_jsonl(os.path.join(data, "test_prompts.jsonl"), [{"prompt": p} for p in w["test_prompts"][:n_eval]])
    write_jsonl(os.path.join(data, "pretrain.jsonl"), [{"text": t} for t in w["pretrain"]])
    for name in ("val_comparisons.jsonl", "comparisons.jsonl"):  # comparisons.jsonl last: it marks the folder done
        shutil.copyfile(os.path.join(root, "rm", name), os.path.join(data, name))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/world0", help="the run: root/sft/model.pt, root/rm/{model.pt,comparisons.jsonl}")
    ap.add_argument("--out", default="out/algorithms", help="stage folder; results in OUT.json, OUT.md, OUT.png")
    ap.add_argument("--world-seed", type=int, default=0, help="the run's world seed (its prompts)")
    ap.add_argument("--methods", nargs="+", default=[*RL, "DPO"], choices=[*RL, "DPO"])
    ap.add_argument("--betas", type=float, nargs="+", default=[0.02, 0.1, 0.3], help="KL coefficients of PPO-ptx, RLOO, GRPO")
    ap.add_argument("--dpo-betas", type=float, nargs="+", default=[0.03, 0.1, 0.3])
    ap.add_argument("--dpo-epochs", type=int, nargs="+", default=[1, 3])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="train seeds at each default point")
    ap.add_argument("--n-eval", type=int, default=400, help="test prompts of every evaluation (best-of-n too)")
    ap.add_argument("--samples", type=int, default=64, help="best-of-n: samples per prompt, the largest n")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    ap.add_argument("--quick", action="store_true", help="tiny world and runs: a smoke test (root from --quick scripts)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_eval, args.samples = 8, 8
    for path in ("sft/model.pt", "rm/model.pt", "rm/comparisons.jsonl", "rm/val_comparisons.jsonl"):
        if not os.path.isfile(os.path.join(args.root, path)):
            raise UserError(f"{args.root}/{path} not found: train the run first "
                            f"(python -m nanorlhf.experiments.seeds --seeds {args.world_seed})")
    w = world.make_world(seed=args.world_seed, scale=0.05 if args.quick else 1.0)
    data, test = os.path.join(args.out, "data"), w["test_prompts"][:args.n_eval]
    if not os.path.exists(os.path.join(data, "comparisons.jsonl")):
        write_data(args.root, data, w, args.n_eval)
    bon_path = os.path.join(args.out, "bon.json")
    if not os.path.exists(bon_path):
        with held(args.lock):
            t0 = time.time()
            bon = best_of_n_stage(args.root, test, w["rl_prompts"][:64], args.samples,
                                  [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= args.samples], args.world_seed)
            bon["wall_seconds"] = time.time() - t0
        with open(bon_path, "w") as f:
            json.dump(bon, f, indent=1)
    with open(bon_path) as f:
        bon = json.load(f)
    points, walls = [], {"best-of-n": bon["wall_seconds"]}
    for p in grid(args.methods, args.betas, args.dpo_betas, args.dpo_epochs, args.seeds):
        folder = folder_of(args.out, p)
        paths = {k: os.path.join(folder, f"{k}.json") for k in ("metrics", "stage", "rm_test")}
        if not os.path.exists(paths["metrics"]):
            with held(args.lock):
                rss = run_stage(command(args.root, data, folder, p, args))
            with open(paths["stage"], "w") as f:
                json.dump({"max_rss_mb": rss}, f)
        if not os.path.exists(paths["rm_test"]):
            with held(args.lock):
                t0 = time.time()
                rm = {**rm_stage(args.root, folder, test, p["seed"]), "wall_seconds": time.time() - t0}
            with open(paths["rm_test"], "w") as f:
                json.dump(rm, f)
        m, stage, rm = ({} if not os.path.exists(v) else json.load(open(v)) for v in paths.values())
        points.append(point_of(p, m, rm, stage))
        walls[os.path.basename(folder)] = m["wall_seconds"] + rm["wall_seconds"]
    rows = aggregate(points)
    res = {"args": vars(args), "bon": bon, "points": points, "rows": rows, "series": series_of(bon, rows),
           "wall_seconds": walls, "total_wall_seconds": sum(walls.values())}
    text = (f"# Algorithms on one gold-vs-KL frontier: {args.root}, {len(test)} test prompts, train seeds "
            f"{' '.join(map(str, args.seeds))} at the default points\n\n{table(res)}\n\ntotal stage wall time "
            f"{res['total_wall_seconds']:.0f} s\n")
    write_frontier(args.out, res, text, res["series"])

if __name__ == "__main__":
    exit_on_user_error(main)
