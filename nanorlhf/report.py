"""
The paper-style results (InstructGPT figures 1/3, the alignment tax of section 4.2) with the
baselines a reviewer asks for, from the checkpoints of one run folder, judged by the gold labeler
on the world's two test sets (held out by body; held-out combinations); and the gold / RM score
against KL over PPO training (Gao et al. 2022's over-optimization curve).

    python -m nanorlhf.report                    # evaluates out/{sft,rm,ppo_noptx,ppo} (~2 minutes, cached)
    python -m nanorlhf.report --run              # first runs whatever is missing (~12 minutes)
    python -m nanorlhf.report --root out/world1  # another run folder (nanorlhf.experiments.seeds makes them)
    python -m nanorlhf.report --png figures      # also the figures of nanorlhf/plots.py (needs matplotlib)

Rows: base and SFT at T=1 and greedy, SFT at its best temperature (chosen on validation prompts),
best-of-n from SFT judged by the RM (KL = log n - (n-1)/n), plain PPO and PPO-ptx at T=1 and greedy,
and the demonstrations' own gold score. Win rates are against SFT at the same decoding (T=1 rows
and best-of-n against SFT at T=1), ties counted half, with 95% CIs and tie rates; rates carry
Wilson 95% CIs (a win rate's with ties counted as half a win). Several runs (seeds) print as
mean +- standard deviation over runs. A run trained on --data (sft/metrics.json records it) has no
gold labeler: its report is the scripts' own metrics, the RM's accuracy on its held-out rankings,
and the KL / RM-score curve, without gold columns.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys

from nanorlhf.errors import UserError, exit_on_user_error

RUNS = {  # stage folder under --root -> the command that makes it
    "sft": ["train_sft.py"],
    "rm": ["train_rm.py"],
    "ppo_noptx": ["train_ppo.py", "--ptx-coef", "0"],
    "ppo": ["train_ppo.py"],
}
ROW_ORDER = ["base T=1", "base greedy", "SFT T=1", "SFT greedy", "SFT best T", "best-of-4", "best-of-16",
             "PPO T=1", "PPO greedy", "PPO-ptx T=1", "PPO-ptx greedy"]
FAMILIES = ["sort", "describe", "list", "facts", "polite"]


def load(folder):
    path = os.path.join(folder, "metrics.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def stage_command(root, stage, extra=(), rm=None):
    """The command line that makes root/stage (checkpoints read from the same root; the reward model
    from `rm` where given)."""
    script, *args = RUNS[stage]
    io = {"sft": ["--out", f"{root}/sft"], "rm": ["--sft", f"{root}/sft/model.pt", "--out", f"{root}/rm"]}.get(
        stage, ["--sft", f"{root}/sft/model.pt", "--rm", rm or f"{root}/rm/model.pt", "--out", f"{root}/{stage}"])
    return [script, *args, *io, *extra]


def evaluated(root, refresh=False):
    """evaluate_run(root), cached in root/report.json (recomputed when a checkpoint is newer)."""
    from nanorlhf.evaluate import evaluate_run
    path = os.path.join(root, "report.json")
    ckpts = [os.path.join(root, s, "model.pt") for s in RUNS if os.path.exists(os.path.join(root, s, "model.pt"))]
    if not refresh and os.path.exists(path) and all(os.path.getmtime(c) < os.path.getmtime(path) for c in ckpts):
        with open(path) as f:
            return json.load(f)
    res = evaluate_run(root)
    res["metrics"] = {s: load(os.path.join(root, s)) for s in RUNS}
    for m in res["metrics"].values():
        if m:
            m.pop("losses", None)  # per-step curves: not needed here
            m.pop("history", None)
    with open(path, "w") as f:
        json.dump(res, f, indent=1)
    return res


# ----------------------------------------------------------------------------------------------
# Cells: one run shows its value (and CI where it has one); several runs show mean +- sd

def cell(values, digits=3, cis=None):
    values = [v for v in values if v is not None and v == v]
    if not values:
        return "-"
    m = statistics.mean(values)
    if len(values) > 1:
        return f"{m:.{digits}f} ± {statistics.stdev(values):.{digits}f}"
    if cis and cis[0]:
        return f"{m:.{digits}f} ({cis[0][0]:.{digits}f}-{cis[0][1]:.{digits}f})"
    return f"{m:.{digits}f}"


def main_table(runs, test_set):
    cols = ["gold", "win vs SFT", "ties", "toxic", "made-up", "constraint", "refuse known", "habit", "KL"]
    lines = [f"| {test_set} set | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    get = lambda row, f: [f(r["rows"][row][test_set]) for r in runs if row in r["rows"]]
    for row in [r for r in ROW_ORDER if r in runs[0]["rows"]]:
        ci = lambda key: [x[key + "_ci95"] for x in get(row, lambda y: y)]
        vals = [cell(get(row, lambda x: x["gold_score"]), cis=ci("gold_score")),
                "-" if row.startswith("SFT") and row != "SFT best T" else
                cell(get(row, lambda x: x["vs_sft"]["win_rate"]), cis=[x["vs_sft"]["win_rate_ci95"] for x in get(row, lambda y: y)]),
                cell(get(row, lambda x: x["vs_sft"]["tie_rate"]), 2),
                cell(get(row, lambda x: x["toxic_rate"]), cis=ci("toxic_rate")),
                cell(get(row, lambda x: x["hallucination_rate"]), cis=ci("hallucination_rate")),
                cell(get(row, lambda x: x["constraint_rate"]), 2),
                cell(get(row, lambda x: x["refusal_rate_known"]), 2),
                cell(get(row, lambda x: x.get("habit_rate")), 2),
                cell([r["kl"].get(row) for r in runs], 2)]
        lines.append(f"| {row} | " + " | ".join(vals) + " |")
    n = runs[0]["rows"]["SFT T=1"][test_set]
    lines.append(f"\n{n['n']} prompts; made-up answers on {n['hallucination_rate_n']} unknowable questions; "
                 f"demonstrations' own gold score (on SFT prompts): {cell([r['demos']['gold_score'] for r in runs])}; "
                 f"SFT's best temperature on validation: {', '.join(str(r['sft_best_temperature']) for r in runs)}.")
    return "\n".join(lines)


def family_table(runs, test_set, rows=("base T=1", "SFT T=1", "SFT greedy", "best-of-16", "PPO-ptx T=1", "PPO-ptx greedy")):
    lines = [f"| {test_set}: gold / win vs SFT | " + " | ".join(FAMILIES) + " |", "|---" * (len(FAMILIES) + 1) + "|"]
    for row in [r for r in rows if r in runs[0]["rows"]]:
        g = lambda f, k: cell([(r["rows"][row][test_set] if k == "gold" else r["rows"][row][test_set]["vs_sft"])
                               [f"{k}_{f}"] for r in runs], 2)
        lines.append(f"| {row} | " + " | ".join(
            f"{g(f, 'gold')} / " + ("-" if row.startswith("SFT") else g(f, "win")) for f in FAMILIES) + " |")
    lines.append(f"| demonstrations | " + " | ".join(cell([r["demos"][f"gold_{f}"] for r in runs], 2) for f in FAMILIES) + " |")
    return "\n".join(lines)


def rm_table(runs):
    ms = [r["metrics"]["rm"] for r in runs if r["metrics"].get("rm")]
    if not ms:
        return ""
    data = ms[0]["args"].get("data")
    keys = [("val_accuracy", f"RM accuracy vs the held-out rankings of --data {data}" if data else
             "RM accuracy vs one noisy labeler (held out)"),
            ("labeler_agreement", "two noisy labelers agree (measured)"),
            ("expected_labeler_agreement", "two noisy labelers agree (exact expectation; TAU calibrated to 0.73)"),
            ("bayes_ceiling", "Bayes ceiling: the gold score vs one noisy labeler"),
            ("gold_accuracy", "RM accuracy vs the gold order")]
    lines = ["| reward model | value |", "|---|---|"]
    lines += [f"| {label} | {cell([m.get(k) for m in ms])} |" for k, label in keys if any(k in m for m in ms)]
    return "\n".join(lines)


def tax_table(runs):
    get = lambda stage, key: [(r["metrics"].get(stage) or {}).get(key) for r in runs]
    rows = [("base", get("sft", "base_pretrain_loss")), ("SFT", get("ppo", "sft_pretrain_loss")),
            ("PPO (ptx 0)", get("ppo_noptx", "pretrain_loss")), ("PPO-ptx", get("ppo", "pretrain_loss"))]
    return "| alignment tax | loss on held-out pretraining text |\n|---|---|\n" + \
        "\n".join(f"| {name} | {cell(v)} |" for name, v in rows)


def curve_table(folder, points=12):
    """KL, RM score and gold score over PPO training, averaged over equal slices of iterations."""
    with open(os.path.join(folder, "curve.json")) as f:
        curve = json.load(f)
    n = max(1, len(curve) // points)
    keys = ["kl", "rm_score"] + (["gold_score"] if all("gold_score" in c for c in curve) else [])  # no gold: no column
    lines = [f"{folder}: score against KL over training (each row averages {n} iterations; KL is the rollouts' "
             "summed log(pi/pi_SFT), a sample estimate that can dip below 0 near the start)",
             "| episodes | KL (nats/seq) | RM score |" + (" gold score |" if len(keys) == 3 else ""),
             "|---" * (len(keys) + 1) + "|"]
    for i in range(0, len(curve), n):
        c = curve[i:i + n]
        lines.append(f"| {c[-1]['episodes']} | " + " | ".join(f"{sum(x[k] for x in c) / len(c):.3f}" for k in keys) + " |")
    return "\n".join(lines)


OWN_KEYS = {"sft": ["base_pretrain_loss", "sft_gold_score", "sft_win_rate_vs_base"],
            "ppo_noptx": ["rm_score", "kl", "sampled_kl", "pretrain_loss", "gold_score", "win_rate_vs_sft"],
            "ppo": ["rm_score", "kl", "sampled_kl", "pretrain_loss", "sft_pretrain_loss", "gold_score", "win_rate_vs_sft"]}


def own_report(root, data):
    """A run trained on --data: the embedded world does not judge it, so no gold tables and no
    demonstrations row; the scripts' own metrics (gold ones only where they could compute them)."""
    ms = {s: load(os.path.join(root, s)) for s in RUNS}
    lines = [f"{root} was trained on --data {data}, which the embedded world's labeler does not judge: "
             "the scripts' own metrics only", "", "| stage | metric | value |", "|---|---|---|"]
    for stage, keys in OWN_KEYS.items():
        m = ms.get(stage) or {}
        if stage == "sft" and m.get("history"):
            val = m["history"][m["selected_epoch"] - 1]["val_loss"]
            lines.append(f"| sft | validation loss (epoch {m['selected_epoch']}, selected) | {val:.3f} |")
        lines += [f"| {stage} | {k} | {cell([m[k]])} |" for k in keys if k in m]
    return "\n\n".join(p for p in ["\n".join(lines), rm_table([{"metrics": ms}])] if p)


def report(runs):
    """Every table, as markdown, for one run or several (seeds)."""
    parts = []
    for test_set in ("test", "heldout"):
        parts += [main_table(runs, test_set), family_table(runs, test_set)]
    parts += [rm_table(runs), tax_table(runs)]
    return "\n\n".join(p for p in parts if p)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out", help="run folder with sft/, rm/, ppo_noptx/, ppo/")
    ap.add_argument("--run", action="store_true", help="run the scripts whose output folder is missing")
    ap.add_argument("--refresh", action="store_true", help="re-evaluate even if ROOT/report.json is up to date")
    ap.add_argument("--curves", nargs="*", help="PPO folders whose KL curve to print (default: ROOT/ppo_noptx, ROOT/ppo)")
    ap.add_argument("--png", metavar="DIR", help="also draw overoptimization.png, ppo_curves.png, losses.png into DIR from "
                    "ROOT (every ROOT/ppo* folder); needs matplotlib: pip install -e '.[plot]'")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")

    def error(message):  # one line, exit 2, like every other user error
        raise UserError(message)
    ap.error = error
    args = ap.parse_args(argv)
    args.curves = [f"{args.root}/ppo_noptx", f"{args.root}/ppo"] if args.curves is None else args.curves
    if args.run:
        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        for stage in RUNS:
            if load(os.path.join(args.root, stage)) is None:
                cmd = stage_command(args.root, stage)
                print(f"[report] running {' '.join(cmd)}", flush=True)
                subprocess.run([sys.executable, os.path.join(repo, cmd[0]), *cmd[1:]], check=True)
    if load(os.path.join(args.root, "sft")) is None:
        raise UserError(f"--root {args.root}: no sft/metrics.json there; run the scripts first, "
                        "or python -m nanorlhf.report --run")
    data = load(os.path.join(args.root, "sft"))["args"].get("data")
    print(own_report(args.root, data) if data else report([evaluated(args.root, args.refresh)]))
    for folder in args.curves:
        if os.path.exists(os.path.join(folder, "curve.json")):
            print("\n" + curve_table(folder))
    if args.png:
        try:
            import matplotlib  # noqa: F401  (optional: the [plot] extra)
        except ImportError:
            raise UserError("--png needs matplotlib: pip install -e '.[plot]'") from None
        from nanorlhf import plots
        for path in plots.write_pngs(args.png, root=args.root, folders=args.curves):
            print(f"wrote {path}")


if __name__ == "__main__":
    exit_on_user_error(main)
