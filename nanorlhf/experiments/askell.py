"""
Askell et al. 2021 ("A General Language Assistant as a Laboratory for Alignment", section 4) against
the gold labeler: ranked preference modeling vs binary discrimination vs imitation learning, at two
model sizes.

    python -m nanorlhf.experiments.askell          # after the seed-0 pipeline (out/world0); ~15 min

The same labeler budget for every objective: the seed-0 SFT policy's samples for the RM prompts,
ranked and judged (acceptable or not) once by the noisy labeler (train_rm.py --sample-only).
The same trunk per size: the pretrained base model, as Askell et al. start preference models from
the LM (not from SFT, as the pipeline's RM does). The same steps, batch and learning rate
(train_rm.py's defaults, --epochs below); imitation reads one response per prompt where the others
read all K, so it spends about a quarter of their compute. Measured on held-out comparisons (the
validation prompts) against the labeler and the gold order, and as a best-of-n judge (n = 4, 16)
over the SFT policy's samples for the test prompts, by gold score. At 1x, two more training seeds
per objective put the differences beside seed noise (the 4x runs and best-of-n are seed 0 only).

Sizes: 1x is out/world0/sft/base.pt (1.1M parameters; the seeds study makes it); 4x is 5 layers of
width 256 (4.5M parameters, 4.2x), pretrained the same way (train_sft.py, same steps, data and
learning rate) into out/x4/sft if absent (about 15 minutes more, once). Writes out/askell.{json,md}.
"""
import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time

import torch

from nanorlhf import plots, world
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.data import load_dataset
from nanorlhf.evaluate import best_of_n, comparison_scores, gold_order, mean_ci, pair_accuracy, sample
from nanorlhf.experiments.seeds import REPO, held

SIZES = {"1x": ("out/world0/sft", []), "4x": ("out/x4/sft", ["--n-layer", "5", "--n-embd", "256", "--n-head", "8"])}
OBJECTIVES = ("ranked", "binary", "imitation")
SFT = "out/world0/sft/model.pt"


def run_stage(cmd, lock, done):
    """Run `python cmd...` from the repository root unless the file `done` exists (resumable)."""
    with held(lock):
        if os.path.exists(done):  # looked at under the lock: another job may have just made it
            return
        print(f"[study] {' '.join(cmd)}", flush=True)
        subprocess.run([sys.executable, *cmd], check=True, cwd=REPO)


def labeler_data(root, lock):
    """The labeler's comparisons of the SFT policy's samples, once for every study: a --data folder
    (4,500 prompts: the budget the studies were measured with)."""
    if not os.path.exists(os.path.join(REPO, SFT)):
        raise UserError(f"{SFT}: not found; run the seed-0 pipeline first: python -m nanorlhf.experiments.seeds --seeds 0")
    data = os.path.join(root, "data")
    run_stage(["train_rm.py", "--sample-only", "--n-prompts", "4500", "--sft", SFT, "--out", data], lock,
              os.path.join(REPO, data, "val_comparisons.jsonl"))
    return data


def base_model(size, lock):
    folder, shape = SIZES[size]
    run_stage(["train_sft.py", "--out", folder, "--n-eval", "200", *shape], lock, os.path.join(REPO, folder, "base.pt"))
    return os.path.join(folder, "base.pt")


def metrics(folder):
    with open(os.path.join(REPO, folder, "metrics.json")) as f:
        return json.load(f)


def accuracies(pm_path, data, lock):
    """[labeler, gold] pair accuracy of a preference model (or an LM's likelihood) on the held-out
    labeler comparisons of the --data folder `data`."""
    with held(lock):
        pm, enc, _ = load_checkpoint(os.path.join(REPO, pm_path))
        val = load_dataset(os.path.join(REPO, data), "comparisons", split="val")
        scores = comparison_scores(pm.eval(), enc, val, torch.device("cpu"))
        acc = [pair_accuracy(scores, val, order) for order in (lambda c: c["ranking"], gold_order)]
    return [hits / total for hits, total in acc]


@torch.no_grad()
def best_of_n_gold(root, pms, n_prompts, ns, lock):
    """Gold score (mean, 95% CI) of best-of-n by each preference model {name: checkpoint} over the
    same SFT samples of the seed-0 test prompts; with the baselines: one sample (n = 1), the noisy
    labeler's and the gold labeler's own best of max(ns). Cached per model in root/bon.json."""
    path = os.path.join(REPO, root, "bon.json")
    out = json.load(open(path)) if os.path.exists(path) else {}
    if out.get("n_prompts") != n_prompts:
        out = {"n_prompts": n_prompts, "seconds": 0.0}
    if all(name in out for name in pms):
        return out
    t0 = time.time()
    device, N = torch.device("cpu"), max(ns)
    prompts = world.make_world(seed=0)["test_prompts"][:n_prompts]
    with held(lock):
        policy, enc, _ = load_checkpoint(os.path.join(REPO, SFT), kind="policy")
        texts, stopped = sample(policy, enc, [p for p in prompts for _ in range(N)], temperature=1.0, seed=1234)
        samples, stops = ([xs[i * N:(i + 1) * N] for i in range(len(prompts))] for xs in (texts, stopped))
        gold = [[world.score(p, y)["total"] for y in ss] for p, ss in zip(prompts, samples)]
        rng = random.Random(0)
        out.update({"sft_sample": mean_ci([g[0] for g in gold]),
                    f"labeler_best_of_{N}": mean_ci([g[world.rank(p, ss, rng)[0]] for p, ss, g in zip(prompts, samples, gold)]),
                    f"gold_best_of_{N}": mean_ci([max(g) for g in gold])})
        for name, ckpt in pms.items():
            if name not in out:
                pm, _, _ = load_checkpoint(os.path.join(REPO, ckpt))
                picks = best_of_n(pm.eval(), enc, prompts, samples, stops, ns, device)
                out[name] = {str(n): mean_ci([world.score(p, y)["total"] for p, y in zip(prompts, picks[n])]) for n in ns}
                out["seconds"] += time.time() - t0  # the compute, summed over invocations
                t0 = time.time()
                with open(path, "w") as f:
                    json.dump(out, f, indent=1)
    return out


def write_results(out, text, result, figure=None):
    """out.md (the table), out.json (the numbers) and, with matplotlib, out.png drawn by figure(path)."""
    with open(out + ".md", "w") as f:
        f.write(text + "\n")
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {out}.md, {out}.json")
    if figure is None:
        return
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only
    except ImportError:
        print("no matplotlib: the table is the figure (pip install -e '.[plot]')")
    else:
        print(f"wrote {figure(out + '.png')}")


def fmt(m, ci=None):
    return f"{m:.3f}" if ci is None else f"{m:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/askell", help="folder for the preference models")
    ap.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES), help="trunk sizes")
    ap.add_argument("--epochs", type=int, default=2, help="passes over the comparisons, every objective and size")
    ap.add_argument("--n-test", type=int, default=600, help="test prompts for best-of-n (of 1,100; 600 keeps the study "
                    "under 15 min)")
    ap.add_argument("--seeds-1x", type=int, nargs="+", default=[1, 2], help="more training seeds (order, head) at 1x: the "
                    "objectives' differences against seed noise (seed 0 is the table's)")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    args = ap.parse_args(argv)
    t0 = time.time()
    data = labeler_data(args.root, args.lock)
    walls = {"sample_and_rank": metrics(data)["wall_seconds"]}
    bases = {size: base_model(size, args.lock) for size in args.sizes}

    def train(size, obj, seed=0):  # one preference model; its folder
        folder = os.path.join(args.root, f"{size}_{obj}" + (f"_s{seed}" if seed else ""))
        run_stage(["train_rm.py", "--data", data, "--init", bases[size], "--objective", obj, "--epochs", str(args.epochs),
                   "--seed", str(seed), "--out", folder], args.lock, os.path.join(REPO, folder, "metrics.json"))
        walls[os.path.basename(folder)] = metrics(folder)["wall_seconds"]
        return folder
    folders = {(size, obj): train(size, obj) for size in args.sizes for obj in OBJECTIVES}
    seeded = {obj: [folders["1x", obj]] + [train("1x", obj, seed) for seed in args.seeds_1x]
              for obj in OBJECTIVES} if "1x" in args.sizes else {}
    n_params = {size: sum(p.numel() for p in load_checkpoint(os.path.join(REPO, b))[0].parameters())
                for size, b in bases.items()}
    # controls with no labeler data: the likelihood of the base LM and of SFT (demonstrations only)
    controls = {(size, "base LM likelihood (control)"): b for size, b in bases.items()}
    controls["1x", "SFT likelihood (control)"] = SFT
    pms = {**{(s, o): os.path.join(f, "model.pt") for (s, o), f in folders.items()}, **controls}
    bon = best_of_n_gold(args.root, {f"{s}_{o}": path for (s, o), path in pms.items()}, args.n_test, (4, 16), args.lock)
    walls["best_of_n"] = bon["seconds"]
    rows = []
    for (size, obj), path in pms.items():
        if (size, obj) in folders:
            m = metrics(folders[size, obj])
            acc = [m["val_accuracy"], m["gold_accuracy"]]
            extra = {k: m[k] for k in ("gold_accuracy_sum_logprob", "binary_val_accuracy", "acceptable_rate") if k in m}
        else:
            acc, extra = accuracies(path, data, args.lock), {}
        rows.append({"size": size, "n_params": n_params[size], "objective": obj, "labeler_accuracy": acc[0],
                     "gold_accuracy": acc[1], "best_of_4": bon[f"{size}_{obj}"]["4"], "best_of_16": bon[f"{size}_{obj}"]["16"],
                     **extra})
    m0 = metrics(folders[args.sizes[0], "ranked"])
    lines = [f"# Askell et al. 2021's three objectives: {m0['n_comparisons']} labeler comparisons, {args.epochs} epochs; "
             f"held-out pairs: {m0['n_val_pairs']} (labeler), {m0['n_gold_pairs']} (gold)\n",
             "| size | params | objective | acc. vs labeler | acc. vs gold | best-of-4 gold [95% CI] | best-of-16 gold [95% CI] |",
             "|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r["n_params"], "control" in r["objective"])):
        lines.append(f"| {r['size']} | {r['n_params'] / 1e6:.2f}M | {r['objective']} | {r['labeler_accuracy']:.3f} | "
                     f"{r['gold_accuracy']:.3f} | {fmt(*r['best_of_4'])} | {fmt(*r['best_of_16'])} |")
    lines += ["", f"Baselines on the same {args.n_test} test prompts and samples: one SFT sample {fmt(*bon['sft_sample'])}; "
              f"the noisy labeler's best of 16 {fmt(*bon['labeler_best_of_16'])}; the gold labeler's best of 16 "
              f"{fmt(*bon['gold_best_of_16'])}. Labelers agree with each other on {m0['labeler_agreement']:.3f} of the "
              f"held-out pairs; the Bayes ceiling against one labeler is {m0['bayes_ceiling']:.3f}. Imitation's score "
              "is the mean token log-likelihood; the summed log-likelihood orders gold pairs at "
              + ", ".join(f"{r['gold_accuracy_sum_logprob']:.3f} ({r['size']})" for r in rows if "gold_accuracy_sum_logprob" in r) + ".",
              "", "Wall seconds of each stage when it ran: " + ", ".join(f"{k} {v:.0f}" for k, v in walls.items())
              + f"; in all {sum(walls.values()):.0f} (this invocation: {time.time() - t0:.0f})."]
    rows_seeds = None
    if seeded and args.seeds_1x:  # paired by seed: each seed's ranked run against its binary / imitation run
        acc = {obj: [[metrics(f)[k] for f in fs] for k in ("val_accuracy", "gold_accuracy")] for obj, fs in seeded.items()}
        ms = lambda xs: f"{statistics.mean(xs):.3f} ± {statistics.stdev(xs):.3f}"
        lines[-2:-2] = ["", f"1x over seeds 0 {' '.join(map(str, args.seeds_1x))} (mean ± sd; the seed sets the order of "
                        "the comparisons and the head's initialization):", "",
                        "| objective | acc. vs labeler | acc. vs gold | ranked minus it, vs gold (paired by seed) |", "|---|---|---|---|"]
        lines[-2:-2] = [f"| {obj} | {ms(a[0])} | {ms(a[1])} | " + ("-" if obj == "ranked" else
                        ms([r - x for r, x in zip(acc["ranked"][1], a[1])])) + " |" for obj, a in acc.items()]
        rows_seeds = {obj: {"labeler_accuracy": a[0], "gold_accuracy": a[1]} for obj, a in acc.items()}
    text = "\n".join(lines)
    print(text)
    write_results(os.path.join(REPO, os.path.dirname(args.root.rstrip("/")) or ".", "askell"), text,
                  {"rows": rows, "seeds_1x": rows_seeds, "baselines": bon,
                   "epochs": args.epochs, "wall_seconds": walls, "study_seconds": time.time() - t0},
                  lambda path: plots.objectives(rows, path))


if __name__ == "__main__":
    exit_on_user_error(main)
