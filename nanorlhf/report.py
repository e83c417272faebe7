"""
The paper-style results table (InstructGPT figures 1/3 and the alignment tax of section 4.2),
read from the output folders of the three scripts, and the gold / RM score against KL over PPO
training (Gao et al. 2022's over-optimization curve).

    python -m nanorlhf.report                       # reads out/sft, out/ppo_noptx, out/ppo
    python -m nanorlhf.report --run                 # first runs whatever is missing (~15 minutes)
    python -m nanorlhf.report --png figures      # also the figures of nanorlhf/plots.py (needs matplotlib)
"""
import argparse
import json
import os
import subprocess
import sys

RUNS = {  # folder -> the command that makes it
    "out/sft": ["train_sft.py"],
    "out/rm": ["train_rm.py"],
    "out/ppo_noptx": ["train_ppo.py", "--ptx-coef", "0", "--out", "out/ppo_noptx"],
    "out/ppo": ["train_ppo.py"],
}


def load(folder):
    path = os.path.join(folder, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def table(sft, ppo, noptx):
    """Rows base / SFT / PPO / PPO-ptx; columns as the paper reports them."""
    cols = ["win vs SFT (T=1)", "win vs SFT (greedy)", "gold (T=1)", "gold (greedy)", "toxic", "halluc.",
            "constraint", "refuse known", "KL (nats)", "pretrain loss"]
    rows = []
    if sft:
        rows.append(("base", [1 - sft["sft_win_rate_vs_base"], 1 - sft["sft_greedy_win_rate_vs_base"],
                              sft["base_gold_score"], sft["base_greedy_gold_score"], sft["base_toxic_rate"],
                              sft["base_hallucination_rate"], sft["base_constraint_rate"],
                              sft["base_refusal_rate_known"], None, sft.get("base_pretrain_loss")]))
    ref = ppo or noptx
    if sft or ref:
        s = ref or {}
        src = (lambda k: s.get("sft_" + k)) if ref else (lambda k: sft.get("sft_" + k))
        rows.append(("SFT", [0.5, 0.5, src("gold_score"), src("greedy_gold_score"), src("toxic_rate"),
                             src("hallucination_rate"), src("constraint_rate"), src("refusal_rate_known"), 0.0,
                             s.get("sft_pretrain_loss")]))
    for name, m in (("PPO (ptx 0)", noptx), ("PPO-ptx", ppo)):
        if m:
            rows.append((name, [m["win_rate_vs_sft"], m["greedy_win_rate_vs_sft"], m["gold_score"],
                                m["greedy_gold_score"], m["toxic_rate"], m["hallucination_rate"],
                                m["constraint_rate"], m["refusal_rate_known"], m["kl"], m.get("pretrain_loss")]))
    fmt = lambda v: "-" if v is None else f"{v:.3f}"
    lines = ["| model | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {name} | " + " | ".join(fmt(v) for v in vals) + " |" for name, vals in rows]
    if sft:
        lines.append(f"\nDemonstrations' own gold score: {sft['demo_gold_score']:.3f}. "
                     f"Evaluated on {sft['n_eval_prompts']} held-out test prompts.")
    for name, m in (("PPO (ptx 0)", noptx), ("PPO-ptx", ppo)):
        if m:
            lo, hi = m["win_rate_vs_sft_ci95"]
            lines.append(f"{name}: win rate vs SFT {m['win_rate_vs_sft']:.3f} (95% CI {lo:.3f}-{hi:.3f}), "
                         f"ties {m['tie_rate_vs_sft']:.3f}, {m['wall_seconds']:.0f}s")
    return "\n".join(lines)


def curve_table(folder, points=12):
    """KL, RM score and gold score over PPO training, averaged over equal slices of iterations."""
    with open(os.path.join(folder, "curve.json")) as f:
        curve = json.load(f)
    n = max(1, len(curve) // points)
    lines = [f"{folder}: score against KL over training (each row averages {n} iterations)",
             "| episodes | KL (nats/seq) | RM score | gold score |", "|---|---|---|---|"]
    for i in range(0, len(curve), n):
        c = curve[i:i + n]
        avg = lambda k: sum(x[k] for x in c) / len(c)
        lines.append(f"| {c[-1]['episodes']} | {avg('kl'):.3f} | {avg('rm_score'):.3f} | {avg('gold_score'):.3f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="store_true", help="run the scripts whose output folder is missing")
    ap.add_argument("--curves", nargs="*", default=["out/ppo_noptx", "out/ppo"], help="PPO folders to plot")
    ap.add_argument("--png", metavar="DIR", help="also draw overoptimization.png, ppo_curves.png, losses.png into DIR from "
                    "out/ (every out/ppo* folder); needs matplotlib: pip install -e '.[plot]'")
    args = ap.parse_args()
    if args.run:
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for folder, cmd in RUNS.items():
            if load(folder) is None:
                print(f"[report] running {' '.join(cmd)}", flush=True)
                subprocess.run([sys.executable, os.path.join(root, cmd[0]), *cmd[1:]], check=True)
    sft, ppo, noptx = load("out/sft"), load("out/ppo"), load("out/ppo_noptx")
    if not (sft or ppo or noptx):
        sys.exit("no results in out/: run the scripts first, or python -m nanorlhf.report --run")
    print(table(sft, ppo, noptx))
    for folder in args.curves:
        if os.path.exists(os.path.join(folder, "curve.json")):
            print("\n" + curve_table(folder))
    if args.png:
        try:
            import matplotlib  # noqa: F401  (optional: the [plot] extra)
        except ImportError:
            sys.exit("--png needs matplotlib: pip install -e '.[plot]'")
        from nanorlhf import plots
        for path in plots.write_pngs(args.png, folders=args.curves):
            print(f"wrote {path}")


if __name__ == "__main__":
    main()
