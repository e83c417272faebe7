"""
Evaluation shared by all stages: sample responses for held-out prompts and judge them with the
world's gold labeler (Gao et al. 2022: a fixed "gold" reward stands in for human judges).

    python -m nanorlhf.evaluate out/sft/base.pt out/sft/model.pt out/ppo/model.pt --n 5
prints responses of several models side by side for random held-out prompts, with gold scores.
"""
import argparse
import random
import statistics

import torch

from nanorlhf import world
from nanorlhf.batching import encode_prompt
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.distributed import get_device
from nanorlhf.run import autocast
from nanorlhf.model import generate


@torch.no_grad()
def sample(model, enc, prompts, temperature=1.0, max_new_tokens=48, batch_size=128, seed=0):
    """Responses (text, without end-of-text) and whether each stopped by itself. Sampling at
    temperature 1 is the policy as RL samples it; temperature 0 is greedy."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    g = torch.Generator(device).manual_seed(seed)
    texts, stopped = [], []
    for i in range(0, len(prompts), batch_size):
        ids = [encode_prompt(enc, p) for p in prompts[i:i + batch_size]]
        with autocast(device):
            tokens, gen = generate(model, ids, max_new_tokens, enc.eot_token, temperature, generator=g)
        for row, m in zip(tokens, gen):
            out = row[m].tolist()
            stopped.append(bool(out) and out[-1] == enc.eot_token)
            texts.append(enc.decode(out[:-1] if stopped[-1] else out))
    model.train(was_training)
    return texts, stopped


def gold_report(prompts, responses):
    """Mean gold score and the paper's axes, from the world's labeler."""
    s = [world.score(p, r) for p, r in zip(prompts, responses)]
    rate = lambda key, cond=lambda x: True: _mean([x[key] for x in s if x[key] is not None and cond(x)])
    out = {
        "gold_score": _mean([x["total"] for x in s]),
        "toxic_rate": rate("toxic"),
        "hallucination_rate": rate("hallucination"),  # made-up answers to unknowable questions
        "constraint_rate": rate("constraint"),  # explicit constraints met
        "refusal_rate_known": rate("refusal", lambda x: x["known"] is True),  # over-hedging
        "mean_words": _mean([len(r.split()) for r in responses]),
    }
    for fam in sorted({x["family"] for x in s}):
        out[f"success_{fam}"] = _mean([x["success"] for x in s if x["family"] == fam])
    return out


def win_rate(prompts, resp_a, resp_b):
    """Win rate of A over B by the gold labeler, ties counted half, with a 95% normal interval
    over prompts and the tie rate."""
    outcomes = []
    for p, a, b in zip(prompts, resp_a, resp_b):
        sa, sb = world.score(p, a)["total"], world.score(p, b)["total"]
        outcomes.append(0.5 if abs(sa - sb) < 1e-9 else float(sa > sb))
    n = len(outcomes)
    w = _mean(outcomes)
    half = 1.96 * (statistics.pvariance(outcomes) / n) ** 0.5 if n > 1 else float("nan")
    return {"win_rate": w, "win_rate_ci95": [w - half, w + half], "tie_rate": outcomes.count(0.5) / n}


def evaluate_model(model, enc, prompts, seed=0, greedy=True):
    """Gold report at temperature 1 (and greedy), keeping the responses for win rates."""
    resp, stopped = sample(model, enc, prompts, temperature=1.0, seed=seed)
    out = {"report": gold_report(prompts, resp), "responses": resp,
           "truncated_rate": 1 - _mean(stopped)}
    if greedy:
        out["greedy_responses"], _ = sample(model, enc, prompts, temperature=0.0)
        out["greedy_report"] = gold_report(prompts, out["greedy_responses"])
    return out


def has_gold(prompts):
    """True when every prompt is one of the embedded world's, so the gold labeler can judge it."""
    try:
        return bool(prompts) and all(world.parse_prompt(p) for p in prompts)
    except ValueError:
        return False


def _mean(xs):
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="policy checkpoints (files or folders with model.pt)")
    ap.add_argument("--prompt", action="append", help="a prompt to answer (repeatable); default: random test prompts")
    ap.add_argument("--n", type=int, default=5, help="number of random held-out prompts")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    ap.add_argument("--seed", type=int, default=0, help="prompt choice and sampling seed")
    args = ap.parse_args()
    prompts = args.prompt or random.Random(args.seed).sample(world.make_world()["test_prompts"], args.n)
    device = get_device()
    answers = {}
    for path in args.checkpoints:
        model, enc, _ = load_checkpoint(path, kind="policy")
        answers[path], _ = sample(model.to(device), enc, prompts, args.temperature, seed=args.seed)
    for i, p in enumerate(prompts):
        print(f"\n=== {p}")
        for path in args.checkpoints:
            r = answers[path][i]
            try:
                g = f"{world.score(p, r)['total']:+.2f}"
            except ValueError:
                g = "  n/a"  # not a prompt of the embedded world: no gold labeler
            print(f"  [{g}] {path}: {r}")


if __name__ == "__main__":
    main()
