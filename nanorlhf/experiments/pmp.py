"""
Preference-model pretraining (PMP, Askell et al. 2021, section 5) against the gold labeler: does a
PM pretrained on cheap public comparisons need fewer labeler comparisons?

    python -m nanorlhf.experiments.pmp             # after the seed-0 pipeline (out/world0); ~15 min

1. The public data: corpus.forum_votes, voted forum threads on training questions (never a test,
   validation or heldout body), answered in the forums' style and ranked by votes. The voters are
   not the labelers: noisier, kinder to insults, harder on "I don't know", and early answers get
   more votes (Askell et al.'s StackExchange).
2. PMP: a ranked preference model from the 1x base model on the forum comparisons (one epoch).
3. Fine-tuning on the first N labeler comparisons (the askell study's data), N in 100, 300, 1000 and
   all, from the PMP model and from the base model, with the same steps for both (2 epochs, at
   least 100 steps), for several seeds (a seed draws a different subset and order).
Measured on the held-out labeler comparisons (validation prompts): accuracy against the labeler and
against the gold order. N = 0 is the PMP model as it is. Writes out/pmp.{json,md}.
"""
import argparse
import math
import os
import random
import statistics
import time

from nanorlhf import corpus, plots, world
from nanorlhf.data import write_jsonl
from nanorlhf.errors import exit_on_user_error
from nanorlhf.experiments.askell import REPO, accuracies, base_model, labeler_data, metrics, run_stage, write_results

NS = (100, 300, 1000, None)  # None: all


def mean_sd(xs):
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/pmp", help="folder for the forum data and the preference models")
    ap.add_argument("--askell-root", default="out/askell", help="where the labeler comparisons live (made if absent)")
    ap.add_argument("--n-forum", type=int, default=20000, help="voted forum threads")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="fine-tuning seeds (subsets)")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    args = ap.parse_args(argv)
    t0 = time.time()
    data, base = labeler_data(args.askell_root, args.lock), base_model("1x", args.lock)
    forum = os.path.join(args.root, "forum")
    if not os.path.exists(os.path.join(REPO, forum, "comparisons.jsonl")):
        threads = corpus.forum_votes(world.make_world(seed=0)["forum_questions"], args.n_forum, random.Random(0))
        write_jsonl(os.path.join(REPO, forum, "comparisons.jsonl"), threads)
    pmp = os.path.join(args.root, "pmp")
    run_stage(["train_rm.py", "--data", forum, "--init", base, "--epochs", "1", "--out", pmp], args.lock,
              os.path.join(REPO, pmp, "metrics.json"))
    pm_forum = metrics(pmp)
    walls, n_all = [pm_forum["wall_seconds"]], metrics(data)["n_comparisons"]
    curve = {"pmp": {0: [accuracies(os.path.join(pmp, "model.pt"), data, args.lock)] * len(args.seeds)}, "base": {}}
    for arm, init in (("pmp", os.path.join(pmp, "model.pt")), ("base", base)):
        for n in NS:
            n = n or n_all
            steps_per_epoch = n // 16  # train_rm.py's --batch-size
            epochs = max(2, math.ceil(100 / steps_per_epoch))
            for seed in args.seeds:
                folder = os.path.join(args.root, f"{arm}_n{n}_s{seed}")
                run_stage(["train_rm.py", "--data", data, "--init", init, "--n-prompts", str(n), "--epochs", str(epochs),
                           "--seed", str(seed), "--out", folder], args.lock, os.path.join(REPO, folder, "metrics.json"))
                m = metrics(folder)
                walls.append(m["wall_seconds"])
                curve[arm].setdefault(n, []).append([m["val_accuracy"], m["gold_accuracy"]])
    lines = [f"# PMP: {pm_forum['n_comparisons']} voted forum threads, then N labeler comparisons; held-out accuracy, "
             f"mean ± sd over seeds {' '.join(map(str, args.seeds))}\n",
             "| N labeler comparisons | vs labeler, PMP | vs labeler, no PMP | vs gold, PMP | vs gold, no PMP |",
             "|---|---|---|---|---|"]
    table = {}
    for n in sorted(set(curve["pmp"]) | set(curve["base"])):
        cells = {}
        for arm in ("pmp", "base"):
            runs = curve[arm].get(n)
            cells[arm] = [mean_sd([r[i] for r in runs]) for i in (0, 1)] if runs else None
        table[n] = cells
        show = lambda c, i: "-" if c is None else f"{c[i][0]:.3f} ± {c[i][1]:.3f}"
        lines.append(f"| {n}{' (all)' if n == n_all else ''} | {show(cells['pmp'], 0)} | {show(cells['base'], 0)} | "
                     f"{show(cells['pmp'], 1)} | {show(cells['base'], 1)} |")
    for i, name in ((0, "labeler"), (1, "gold")):  # per N without PMP: the fewest comparisons with PMP that match it
        matched = []
        for n in sorted(curve["base"]):
            target = table[n]["base"][i][0]
            enough = [m for m in sorted(curve["pmp"]) if table[m]["pmp"][i][0] >= target]
            matched.append(f"{target:.3f} at N = {n} by N = {enough[0]} ({enough[0] / n:.2f}x)" if enough else
                           f"{target:.3f} at N = {n} by no N")
        lines.append(f"\nAgainst the {name}, PMP matches no PMP's " + "; ".join(matched) + ".")
    lines += ["", f"The PMP model on its own forum validation threads: {pm_forum['val_accuracy']:.3f} against the votes, "
              f"{pm_forum['gold_accuracy']:.3f} against the gold order. Wall seconds of the training stages when they ran: "
              f"{sum(walls):.0f} (PMP {pm_forum['wall_seconds']:.0f}); this invocation {time.time() - t0:.0f}."]
    text = "\n".join(lines)
    print(text)
    write_results(os.path.join(REPO, os.path.dirname(args.root.rstrip("/")) or ".", "pmp"), text,
                  {"curve": curve, "table": table, "n_all": n_all, "seeds": args.seeds, "pmp_metrics": pm_forum,
                   "study_seconds": time.time() - t0}, lambda path: plots.pmp_curve(table, path))


if __name__ == "__main__":
    exit_on_user_error(main)
