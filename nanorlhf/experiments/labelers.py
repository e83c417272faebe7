"""
Held-out labelers (InstructGPT section 4.1): how much of RLHF's gain is the training labelers' own
taste, and how much is the truth? The training labelers here have one taste the gold labeler lacks:
they like a response that opens with "Sure!" by --taste gold points (world.rank(taste=); the list
family's demonstrators already open that way, and the gold labeler charges those two tokens as
unread). An RM and PPO-ptx are trained on their rankings, the rest of the default pipeline kept:

    python -m nanorlhf.experiments.labelers --lock FILE     # beside out/world0: ~8 min estimated

Stages: OUT/rm (train_rm.py --labeler-taste T from root/sft), OUT/ppo (train_ppo.py with that RM);
the reference is root/ppo, PPO-ptx on the world's own (tasteless) labelers. A stage whose
metrics.json exists is skipped. Writes OUT.{json,md}.

Measured on the first --n-eval test prompts, one T=1 sample per prompt of SFT and of each policy
(the same seed): the preference over SFT of a labeler with the taste (the training labelers), of one
without it (held-out labelers) and of gold; the expected labeler preference is exact, not sampled:
P(y above y') = sigmoid((s(y) - s(y')) / TAU), as world.rank draws it, s = gold + taste * opener;
gold's win rate counts ties half (evaluate.win_rate). Beside them: the opener's rate and mean gold.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import torch

from nanorlhf import world
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import mean_gold, sample, win_rate
from nanorlhf.experiments.algorithms import run_stage
from nanorlhf.experiments.askell import write_results
from nanorlhf.experiments.seeds import REPO, held


def preference(prompts, a, b, taste):
    """Expected rate at which a labeler with this taste ranks response a above b (one pair a prompt)."""
    s = lambda p, y: world.score(p, y)["total"] + taste * world.has_taste(y)
    return float(np.mean([1 / (1 + math.exp(-(s(p, x) - s(p, y)) / world.TAU)) for p, x, y in zip(prompts, a, b)]))


def judged(prompts, texts, sft, taste):
    """One policy's samples judged against SFT's: by the training labelers, held-out ones and gold."""
    g = win_rate(prompts, texts, sft)
    return {"training_labelers": preference(prompts, texts, sft, taste), "heldout_labelers": preference(prompts, texts, sft, 0.0),
            "gold_win": g["win_rate"], "gold_win_ci95": g["win_rate_ci95"], "gold": mean_gold(prompts, texts),
            "opener_rate": float(np.mean([world.has_taste(y) for y in texts]))}


def table(res):
    lines = ["| policy | training labelers (taste) prefer it to SFT | held-out labelers | gold win vs SFT "
             "| gold | opens with \"Sure!\" |", "|---" * 6 + "|"]
    for name, r in res["policies"].items():
        lo, hi = r["gold_win_ci95"]
        lines.append(f"| {name} | {r['training_labelers']:.3f} | {r['heldout_labelers']:.3f} | {r['gold_win']:.3f} "
                     f"({lo:.3f}-{hi:.3f}) | {r['gold']:.3f} | {r['opener_rate']:.3f} |")
    return "\n".join(lines)


@torch.no_grad()
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--root", default="out/world0", help="the run: root/sft/model.pt, root/ppo/model.pt")
    ap.add_argument("--out", default="out/labelers", help="stage folder; results in OUT.json, OUT.md")
    ap.add_argument("--taste", type=float, default=0.2, help="the training labelers' liking of the opener, in gold "
                    "points (TAU is 0.228: 0.2 makes P(prefer) 0.71 between equals)")
    ap.add_argument("--world-seed", type=int, default=0, help="the run's world seed (its prompts)")
    ap.add_argument("--n-eval", type=int, default=1100, help="test prompts")
    ap.add_argument("--lock", help="a file to lock while a stage runs (to share the machine with other jobs)")
    ap.add_argument("--quick", action="store_true", help="tiny world and runs: a smoke test (root from --quick scripts)")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")
    args = ap.parse_args(argv)
    if args.quick:
        args.n_eval = 8
    for path in ("sft/model.pt", "ppo/model.pt"):
        if not os.path.isfile(os.path.join(args.root, path)):
            raise UserError(f"{args.root}/{path} not found: train the run first "
                            f"(python -m nanorlhf.experiments.seeds --seeds {args.world_seed})")
    sft_path, quick = os.path.join(args.root, "sft", "model.pt"), ["--quick"] * args.quick
    common = ["--sft", sft_path, "--seed", str(args.world_seed), *quick]
    rm, ppo = os.path.join(args.out, "rm"), os.path.join(args.out, "ppo")
    for folder, cmd in ((rm, ["train_rm.py", "--labeler-taste", f"{args.taste:g}"]),
                        (ppo, ["train_ppo.py", "--rm", os.path.join(rm, "model.pt"), "--n-eval", str(args.n_eval)])):
        if not os.path.exists(os.path.join(folder, "metrics.json")):
            with held(args.lock):
                run_stage([sys.executable, os.path.join(REPO, cmd[0]), *cmd[1:], "--out", folder, *common])
    test = world.make_world(seed=args.world_seed, scale=0.05 if args.quick else 1.0)["test_prompts"][:args.n_eval]
    policies = {"SFT": sft_path, "PPO-ptx, world labelers": os.path.join(args.root, "ppo", "model.pt"),
                f"PPO-ptx, labelers with the taste (+{args.taste:g})": os.path.join(ppo, "model.pt")}
    texts = {}
    with held(args.lock):
        for name, path in policies.items():
            pi, enc, _ = load_checkpoint(path, kind="policy")
            texts[name] = sample(pi, enc, test, 1.0, seed=args.world_seed + 11)[0]
    rm_m = json.load(open(os.path.join(rm, "metrics.json")))
    res = {"args": vars(args), "rm_val_accuracy": rm_m["val_accuracy"], "rm_gold_accuracy": rm_m.get("gold_accuracy"),
           "policies": {n: judged(test, t, texts["SFT"], args.taste) for n, t in texts.items()}}
    text = (f"# Held-out labelers: training labelers who like \"Sure!\" by {args.taste:g} gold, {len(test)} test "
            f"prompts\n\n{table(res)}\n\nThe RM on their rankings: {res['rm_val_accuracy']:.3f} against them "
            f"(held out), {res['rm_gold_accuracy'] or float('nan'):.3f} against the gold order.\n")
    print(text)
    write_results(args.out, text, res)

if __name__ == "__main__":
    exit_on_user_error(main)
