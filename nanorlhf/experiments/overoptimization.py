"""
The over-optimization frontier (Gao et al. 2022) of one finished run: gold score and proxy RM score
against d = sqrt(KL(pi || pi_SFT)) for best-of-n from SFT and for plain PPO over training at two KL
coefficients, with Gao et al.'s functional forms fitted by least squares (linear in alpha, beta):

    best-of-n   gold(d) - gold(0) = d (alpha - beta d)
    RL          gold(d) - gold(0) = d (alpha - beta log d)

    python -m nanorlhf.experiments.overoptimization     # from out/world0/{sft,rm}; ~10 minutes on 2 cores (617 s of stages)

Writes out/overoptimization.{json,md} (coefficients, R^2, every point) and, with matplotlib,
out/overoptimization.png; the stages' outputs go to out/overoptimization/ (bon.json, ppo_beta*/), and
a stage whose output exists is skipped, so an interrupted study continues where it stopped (and a
stage is not redone when its options change: delete its output).

1. Best-of-n: --samples responses per test prompt from SFT at T=1 (the first --prompts of the
   world's test set); of the first n the proxy RM picks one (a sample cut at the length limit only
   if all are, as evaluate.best_of_n); KL = log n - (n-1)/n. gold(0), RM(0): the means over all samples.
2. PPO: train_ppo.py --ptx-coef 0 (plain PPO, as Gao et al.) at each --betas, from root/sft with
   root/rm. Per iteration its rollout's KL, RM score and gold score (64 episodes of RL prompts); the
   iterations are averaged in bins of --bin, in training order. gold(0), RM(0): SFT at T=1 on RL prompts,
   scored as the rollout scores them (32 new tokens, a truncated response gets -2).
3. PPO at its kept policies (every --snapshot-every iterations): each measured on the same
   --snapshot-prompts test prompts, KL by sampling (log pi - log pi_SFT of its own samples), against
   SFT measured the same way: a second PPO series whose points are far less noisy than one rollout.
R^2 = 1 - SS_res / SS_tot about the mean, over the points fitted (n values, or bins of iterations).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

import numpy as np
import torch

from nanorlhf import world
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.distributed import get_device
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import bon_kl, pm_scores, reward_of, sample
from nanorlhf.experiments.seeds import REPO, held

PPO_MAX_NEW_TOKENS, PPO_TRUNCATED_SCORE = 32, -2.0  # train_ppo.py's defaults: its rollouts are scored so


# ----------------------------------------------------------------------------------------------
# Gao et al.'s forms: pure functions

def _second_term(d, form):
    """The term beta multiplies: d^2 (best-of-n) or d log d (RL, -> 0 at d = 0)."""
    d = np.asarray(d, dtype=float)
    if form == "bon":
        return d * d
    return np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)


def gao(d, alpha, beta, form):
    """Gao et al.'s score change at d = sqrt(KL): d (alpha - beta d) for "bon", d (alpha - beta log d) for "rl"."""
    return alpha * np.asarray(d, dtype=float) - beta * _second_term(d, form)


def fit_gao(d, y, form):
    """Least-squares alpha, beta of y = gao(d, alpha, beta, form) (no intercept: y is the change from
    d = 0), R^2 about the mean of y, and the fitted peak d* where the score stops rising (None when
    beta <= 0: no peak): alpha / (2 beta) for "bon", exp(alpha / beta - 1) for "rl"."""
    d, y = np.asarray(d, dtype=float), np.asarray(y, dtype=float)
    X = np.stack([d, -_second_term(d, form)], 1)  # (P, 2): y = X @ [alpha, beta]
    (alpha, beta), *_ = np.linalg.lstsq(X, y, rcond=None)
    res, dev = y - X @ np.array([alpha, beta]), y - y.mean()
    r2 = 1.0 - float(res @ res) / float(dev @ dev) if dev @ dev > 0 else float("nan")
    peak = None if beta <= 0 else alpha / (2 * beta) if form == "bon" else math.exp(min(alpha / beta - 1, 50.0))
    return {"alpha": float(alpha), "beta": float(beta), "r2": r2, "peak_d": peak, "points": len(d)}


def binned(curve, size):
    """PPO curve points averaged over consecutive groups of `size` iterations, in training order (not
    sorted by d: that would select on the noise of each iteration's KL estimate); the last group may
    be smaller. -> {"d", "gold", "rm"}: lists, one value per bin."""
    pts = [(math.sqrt(max(c["kl"], 0.0)), c["gold_score"], c["rm_score"]) for c in curve]  # a KL estimate can dip < 0
    bins = [np.mean(pts[i:i + size], axis=0) for i in range(0, len(pts), size)]  # (3,) each
    return {k: [float(b[j]) for b in bins] for j, k in enumerate(("d", "gold", "rm"))}


# ----------------------------------------------------------------------------------------------
# The stages: best-of-n from SFT (and SFT's own scores on RL prompts), PPO runs

def run_models(root, rm_path=None):
    """(SFT policy, proxy RM, tokenizer, device) of the run (another RM: rm_path), ready to evaluate."""
    device = get_device()
    sft, enc, _ = load_checkpoint(os.path.join(root, "sft", "model.pt"), kind="policy")
    rm = load_checkpoint(rm_path or os.path.join(root, "rm", "model.pt"), kind="reward")[0]
    return sft.to(device).eval(), rm.to(device).eval(), enc, device


def as_rollout(pi, rm, enc, prompts, device, seed):
    """A policy sampled and scored as train_ppo.py's rollout does it: T=1, 32 new tokens, a truncated
    response scored -2 by the RM. -> (texts, RM scores (N,), mean gold score)."""
    texts, stopped = sample(pi, enc, prompts, 1.0, max_new_tokens=PPO_MAX_NEW_TOKENS, seed=seed)
    r = reward_of(rm, enc, prompts, texts, device).cpu()
    r = torch.where(torch.tensor(stopped), r, torch.full_like(r, PPO_TRUNCATED_SCORE))
    return texts, r, float(np.mean([world.score(p, y)["total"] for p, y in zip(prompts, texts)]))


def best_of_n_stage(root, prompts, rl_prompts, k, ns, seed, rm_path=None):
    """Gold and RM score of the RM's pick among the first n of k samples per prompt, for each n;
    and the references: all samples' means (d = 0), and SFT on RL prompts as PPO's rollouts score it."""
    sft, rm, enc, device = run_models(root, rm_path)
    flat = [p for p in prompts for _ in range(k)]
    texts, stopped = sample(sft, enc, flat, 1.0, seed=seed + 2, batch_size=512)
    r = reward_of(rm, enc, flat, texts, device).cpu().view(len(prompts), k)  # (N, k) proxy RM
    g = torch.tensor([world.score(p, y)["total"] for p, y in zip(flat, texts)]).view(len(prompts), k)  # (N, k) gold
    pick_r = torch.where(torch.tensor(stopped).view(len(prompts), k), r, r - 1e6)  # truncated: last resort
    rows = torch.arange(len(prompts))
    points = []
    for n in ns:
        i = pick_r[:, :n].argmax(1)  # (N,) the RM's choice among the first n
        points.append({"n": n, "kl": bon_kl(n), "d": math.sqrt(bon_kl(n)), "gold": g[rows, i].mean().item(),
                       "rm": r[rows, i].mean().item()})
    _, rl_r, rl_gold = as_rollout(sft, rm, enc, rl_prompts, device, seed + 3)
    return {"prompts": len(prompts), "samples": k, "points": points,
            "ref": {"gold": g.mean().item(), "rm": r.mean().item()},
            "rl_ref": {"gold": rl_gold, "rm": rl_r.mean().item(), "prompts": len(rl_prompts)}}


@torch.no_grad()
def snapshot_stage(root, folder, prompts, seed):
    """PPO measured at its kept policies (train_ppo.py --snapshot-every) on the same test prompts (a
    prompt may repeat: several samples), each point from len(prompts) fresh samples rather than one
    iteration's 64 rollout episodes: gold, RM score (as_rollout) and KL(pi || pi_SFT), the mean of
    log pi(y|x) - log pi_SFT(y|x) over the policy's own samples y. The SFT policy is iteration 0."""
    sft, rm, enc, device = run_models(root)
    snaps = sorted(f for f in os.listdir(os.path.join(folder, "snapshots")) if f.endswith(".pt"))
    points = []
    for it, name in [(0, None)] + [(int(f[2:6]), f) for f in snaps]:
        pi = sft if name is None else load_checkpoint(os.path.join(folder, "snapshots", name), kind="policy")[0]
        pi = pi.to(device).eval()
        texts, r, gold = as_rollout(pi, rm, enc, prompts, device, seed + 4)
        kl = (pm_scores(pi, enc, prompts, texts, device, per_token=False)
              - pm_scores(sft, enc, prompts, texts, device, per_token=False)).mean().item()  # (N,) log-ratios, mean
        points.append({"iteration": it, "kl": kl, "d": math.sqrt(max(kl, 0.0)), "rm": r.mean().item(), "gold": gold})
    return points


def ppo_command(root, folder, beta, args):
    cmd = [sys.executable, os.path.join(REPO, "train_ppo.py"), "--sft", os.path.join(root, "sft", "model.pt"),
           "--rm", os.path.join(root, "rm", "model.pt"), "--out", folder, "--beta", f"{beta:g}", "--ptx-coef", "0",
           "--n-eval", str(args.n_eval), "--seed", str(args.seed),
           "--snapshot-every", str(args.snapshot_every)]
    return cmd + ["--quick"] * args.quick + ["--iterations", str(args.iterations)]


# ----------------------------------------------------------------------------------------------
# The table

def table(res):
    """Markdown: the fitted coefficients, then every point, from the study's result dict."""
    lines = ["| series | score | form | alpha | beta | R^2 | points | fitted peak d (KL) |", "|---" * 8 + "|"]
    for s in res["series"]:
        for key in ("gold", "rm"):
            f = s["fits"][key]
            peak = "none" if f["peak_d"] is None else f"{f['peak_d']:.2f} ({f['peak_d'] ** 2:.2f})" + \
                (", beyond the points" if f["peak_d"] > max(s["d"]) else "")
            lines.append(f"| {s['label']} | {key} | {s['form']} | {f['alpha']:.3f} | {f['beta']:.3f} | {f['r2']:.2f} "
                         f"| {f['points']} | {peak} |")
    lines += ["", "| series | point | d | KL | gold - gold(0) | RM - RM(0) |", "|---" * 6 + "|"]
    for s in res["series"]:
        for j, (d, g, r) in enumerate(zip(s["d"], s["gold"], s["rm"])):
            point = f"n = {s['n'][j]}" if "n" in s else f"iteration {s['iteration'][j]}" if "iteration" in s else f"bin {j + 1}"
            lines.append(f"| {s['label']} | {point} | {d:.3f} | {d * d:.3f} | {g:+.3f} | {r:+.3f} |")
    return "\n".join(lines)


def series(label, form, d, gold, rm, ref, **extra):
    """One line of the frontier: its points as changes from d = 0, and both fits."""
    gold, rm = [x - ref["gold"] for x in gold], [x - ref["rm"] for x in rm]
    return {"label": label, "form": form, "d": d, "gold": gold, "rm": rm, "ref": ref, **extra,
            "fits": {"gold": fit_gao(d, gold, form), "rm": fit_gao(d, rm, form)}}


def write_frontier(out, res, text, series):
    """Print text; write out.json (res), out.md (text) and, with matplotlib, out.png: the series' points
    and Gao et al.'s fitted curves on a fine grid of d (none where a score was not fitted)."""
    print(text)
    for ext, body in (("json", json.dumps(res, indent=1)), ("md", text)):
        with open(f"{out}.{ext}", "w") as f:
            f.write(body)
    try:
        import matplotlib
        matplotlib.use("Agg")
    except ImportError:
        print("matplotlib not installed: the points are in the table above (pip install -e '.[plot]' for the figure)")
        return
    from nanorlhf.plots import frontier
    for s in series:
        s["fit_d"] = np.linspace(0, max(s["d"]) * 1.05, 100)
        for k, fit in s["fits"].items():
            s[f"fit_{k}"] = gao(s["fit_d"], fit["alpha"], fit["beta"], s["form"]) if fit else np.full(100, np.nan)
    print(f"wrote {out}.json, {out}.md, {frontier(series, out + '.png')}")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/world0", help="the run: root/sft/model.pt (policy), root/rm/model.pt (proxy RM)")
    ap.add_argument("--out", default="out/overoptimization", help="stage folder; results in OUT.json, OUT.md, OUT.png")
    ap.add_argument("--seed", type=int, default=0, help="the run's world seed (prompts) and the sampling seed")
    ap.add_argument("--prompts", type=int, default=1100, help="test prompts for best-of-n")
    ap.add_argument("--samples", type=int, default=64, help="samples per prompt: the largest n")
    ap.add_argument("--rl-prompts", type=int, default=4000, help="RL prompts for SFT's reference score (PPO's d = 0)")
    ap.add_argument("--betas", type=float, nargs="+", default=[0.02, 0.1], help="KL coefficients of the PPO runs")
    ap.add_argument("--iterations", type=int, default=150, help="PPO iterations (train_ppo.py's default is 90: beta "
                    "0.02 needs longer to pass its gold peak)")
    ap.add_argument("--n-eval", type=int, default=100, help="test prompts of each PPO run's final evaluation")
    ap.add_argument("--bin", type=int, default=5, help="PPO iterations averaged per point (sorted by d)")
    ap.add_argument("--snapshot-every", type=int, default=15, help="PPO iterations between kept policies, each "
                    "measured on --snapshot-prompts test prompts (a second, less noisy PPO series)")
    ap.add_argument("--snapshot-prompts", type=int, default=1100, help="test prompts per kept PPO policy")
    ap.add_argument("--snapshot-samples", type=int, default=4, help="samples per test prompt per kept PPO policy")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    ap.add_argument("--quick", action="store_true", help="tiny world and runs: a smoke test (root from --quick scripts)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = ap.parse_args(argv)
    if args.quick:
        args.prompts, args.samples, args.rl_prompts, args.n_eval, args.bin, args.iterations = 8, 8, 16, 8, 1, 3
        args.snapshot_every, args.snapshot_prompts, args.snapshot_samples = 1, 8, 2
    for stage in ("sft", "rm"):
        if not os.path.isfile(os.path.join(args.root, stage, "model.pt")):
            raise UserError(f"{args.root}/{stage}/model.pt not found: train the run first "
                            f"(python -m nanorlhf.experiments.seeds --seeds {args.seed})")
    os.makedirs(args.out, exist_ok=True)
    w = world.make_world(seed=args.seed, scale=0.05 if args.quick else 1.0)

    bon_path = os.path.join(args.out, "bon.json")
    if not os.path.exists(bon_path):
        with held(args.lock):
            t0 = time.time()
            bon = best_of_n_stage(args.root, w["test_prompts"][:args.prompts], w["rl_prompts"][:args.rl_prompts],
                                  args.samples, [n for n in (1, 2, 4, 8, 16, 32, 64) if n <= args.samples], args.seed)
            bon["wall_seconds"] = time.time() - t0
        with open(bon_path, "w") as f:
            json.dump(bon, f, indent=1)
    with open(bon_path) as f:
        bon = json.load(f)
    pts = bon["points"]
    out = [series("best-of-n", "bon", [p["d"] for p in pts], [p["gold"] for p in pts], [p["rm"] for p in pts],
                  bon["ref"], n=[p["n"] for p in pts])]
    walls = {"best-of-n": bon["wall_seconds"]}
    for beta in args.betas:
        folder = os.path.join(args.out, f"ppo_beta{beta:g}")
        if not os.path.exists(os.path.join(folder, "metrics.json")):
            cmd = ppo_command(args.root, folder, beta, args)
            print(f"[overoptimization] {' '.join(cmd)}", flush=True)
            with held(args.lock):
                subprocess.run(cmd, check=True)
        with open(os.path.join(folder, "curve.json")) as f:
            b = binned(json.load(f), args.bin)
        with open(os.path.join(folder, "metrics.json")) as f:
            walls[f"PPO beta {beta:g}"] = json.load(f)["wall_seconds"]
        out.append(series(f"PPO beta {beta:g}", "rl", b["d"], b["gold"], b["rm"], bon["rl_ref"]))
        snap_path = os.path.join(folder, "snapshots.json")
        if not os.path.exists(snap_path) and os.path.isdir(os.path.join(folder, "snapshots")):
            with held(args.lock):
                t0 = time.time()
                pts = snapshot_stage(args.root, folder, w["test_prompts"][:args.snapshot_prompts] * args.snapshot_samples, args.seed)
            with open(snap_path, "w") as f:
                json.dump({"points": pts, "prompts": args.snapshot_prompts, "samples": args.snapshot_samples,
                           "wall_seconds": time.time() - t0}, f, indent=1)
        if os.path.exists(snap_path):
            with open(snap_path) as f:
                snap = json.load(f)
            walls[f"PPO beta {beta:g} checkpoints"] = snap["wall_seconds"]
            p0, pts = snap["points"][0], snap["points"][1:]
            out.append(series(f"PPO beta {beta:g}, checkpoints", "rl", [p["d"] for p in pts], [p["gold"] for p in pts],
                              [p["rm"] for p in pts], {"gold": p0["gold"], "rm": p0["rm"]},
                              iteration=[p["iteration"] for p in pts]))

    res = {"args": vars(args), "series": out, "wall_seconds": walls, "total_wall_seconds": sum(walls.values())}
    text = (f"# Over-optimization frontier of {args.root}: best-of-n ({bon['prompts']} test prompts x {bon['samples']} "
            f"samples) and plain PPO ({args.iterations} iterations, binned by {args.bin})\n\n{table(res)}\n\nwall time (s): "
            + ", ".join(f"{k} {v:.0f}" for k, v in walls.items()) + f"; total {res['total_wall_seconds']:.0f}\n")
    write_frontier(args.out, res, text, out)

if __name__ == "__main__":
    exit_on_user_error(main)
