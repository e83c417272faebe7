"""
The default pipeline over several world seeds, reported as mean +- standard deviation.

Each seed is a different world (prompts, splits, corpus, demonstrations; the facts are fixed) and a
different training seed. Per seed: train_sft.py, train_rm.py, train_ppo.py --ptx-coef 0 (plain
PPO) and train_ppo.py (PPO-ptx), then the report's evaluation suite (nanorlhf.report). A stage whose
metrics.json exists is skipped, so an interrupted study continues where it stopped.

    python -m nanorlhf.experiments.seeds                   # seeds 0 1 2, the default (gap) world, ~40 min
    python -m nanorlhf.experiments.seeds --control         # the control world: no generation-verification gap

Runs land in out/world{seed} (out/control{seed}); the table in out/seeds[_control].{json,md}. The
control world has the same pretraining corpus, so where out/world{seed}/sft/base.pt exists the control
fine-tunes that same base model (train_sft.py --init) instead of pretraining it again.
"""
import argparse
import contextlib
import fcntl
import json
import os
import subprocess
import sys
import time

from nanorlhf.report import RUNS, evaluated, load, report, stage_command

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@contextlib.contextmanager
def held(lock_path):
    """Hold an exclusive file lock (or nothing): lets a long study share a machine with other jobs."""
    if not lock_path:
        yield
        return
    with open(lock_path, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="world and training seeds")
    ap.add_argument("--control", action="store_true", help="the control world (the demonstrations' mode is the ideal)")
    ap.add_argument("--no-plain-ppo", action="store_true", help="skip train_ppo.py --ptx-coef 0")
    ap.add_argument("--out", default="out", help="parent folder of the runs")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    args = ap.parse_args()
    name = "control" if args.control else "world"
    results, walls = [], {}
    for seed in args.seeds:
        root = os.path.join(args.out, f"{name}{seed}")
        for stage in RUNS:
            if stage == "ppo_noptx" and args.no_plain_ppo or load(os.path.join(root, stage)):
                continue
            extra = ["--seed", str(seed)] + ["--control"] * args.control
            base = os.path.join(args.out, f"world{seed}", "sft", "base.pt")
            if stage == "sft" and args.control and os.path.exists(base):
                extra += ["--init", base]  # the control's corpus is the same: start from the same base model
            cmd = stage_command(root, stage, extra)
            print(f"[seeds] {' '.join(cmd)}", flush=True)
            with held(args.lock):
                subprocess.run([sys.executable, os.path.join(REPO, cmd[0]), *cmd[1:]], check=True)
        with held(args.lock):
            t0 = time.time()
            results.append(evaluated(root))
            print(f"[seeds] evaluated {root} in {time.time() - t0:.0f}s", flush=True)
        walls[seed] = {s: (load(os.path.join(root, s)) or {}).get("wall_seconds") for s in RUNS}
    lines = [f"# {'control' if args.control else 'default (gap)'} world, seeds {' '.join(map(str, args.seeds))}: mean ± sd over seeds "
             "(a single seed shows its 95% CI)\n", report(results), "\n| seed | " + " | ".join(RUNS) + " | pipeline (s) |",
             "|---" * (len(RUNS) + 2) + "|"]
    for seed, w in walls.items():
        total = sum(v for k, v in w.items() if v and k != "ppo_noptx")
        lines.append(f"| {seed} | " + " | ".join("-" if v is None else f"{v:.0f}" for v in w.values()) + f" | {total:.0f} |")
    text = "\n".join(lines)
    print(text)
    base = os.path.join(args.out, "seeds" + ("_control" if args.control else ""))
    with open(base + ".md", "w") as f:
        f.write(text + "\n")
    with open(base + ".json", "w") as f:
        json.dump({"seeds": args.seeds, "control": args.control, "runs": results, "wall_seconds": walls}, f, indent=1)
    print(f"wrote {base}.md, {base}.json")


if __name__ == "__main__":
    main()
