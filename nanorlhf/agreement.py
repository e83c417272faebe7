"""
How well noisy labelers can agree, and the best any reward model can do against them.

The world's noisy labeler (`world.rank`) prefers response i to j with probability
p = sigmoid((g_i - g_j) / tau) for gold scores g. Two independent labelers then agree on a pair
with probability p^2 + (1-p)^2 (the paper's "inter-labeler agreement", 72.6 +- 1.5%), while the
gold score itself, a perfect RM, agrees with one labeler with probability max(p, 1-p): the Bayes
ceiling of RM accuracy, which is higher. TAU is calibrated (an input) so that the expected
agreement on the default SFT model's samples is 73%; the ceiling and the RM's accuracy are results.

    python -m nanorlhf.agreement out/rm/comparisons.jsonl    # tau for 73% on these samples
"""
import argparse
import math
import random

from nanorlhf.data import read_jsonl
from nanorlhf.world import TAU, rank, score


def _pair_probs(prompts, responses_per_prompt, tau):
    """p = P(one noisy labeler prefers i to j) = sigmoid((g_i - g_j)/tau), per pair of distinct responses."""
    for prompt, responses in zip(prompts, responses_per_prompt):
        s = [score(prompt, r)["total"] for r in responses]
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                if responses[i] != responses[j]:
                    yield 1 / (1 + math.exp(max(-50.0, min(50.0, -(s[i] - s[j]) / tau))))


def labeler_agreement(prompts, responses_per_prompt, rng, tau=TAU):
    """Two independent rankings per prompt: fraction of pairs of distinct responses ordered alike."""
    agree = total = 0
    for prompt, responses in zip(prompts, responses_per_prompt):
        a, b = (rank(prompt, responses, rng, tau) for _ in range(2))
        pa, pb = {i: k for k, i in enumerate(a)}, {i: k for k, i in enumerate(b)}
        for i in range(len(responses)):
            for j in range(i + 1, len(responses)):
                if responses[i] != responses[j]:
                    agree += (pa[i] < pa[j]) == (pb[i] < pb[j])
                    total += 1
    return agree / max(1, total)


def expected_agreement(prompts, responses_per_prompt, tau):
    """The exact expectation of labeler_agreement: E[p^2 + (1-p)^2] over pairs."""
    ps = list(_pair_probs(prompts, responses_per_prompt, tau))
    return sum(p * p + (1 - p) * (1 - p) for p in ps) / max(1, len(ps))


def bayes_ceiling(prompts, responses_per_prompt, tau=TAU):
    """The best expected accuracy of ANY reward model against one noisy labeler: the gold score's
    own, E[max(p, 1-p)] (a gold tie, p = 1/2, is a coin flip). It exceeds the inter-labeler
    agreement E[p^2 + (1-p)^2], the paper's yardstick."""
    ps = list(_pair_probs(prompts, responses_per_prompt, tau))
    return sum(max(p, 1 - p) for p in ps) / max(1, len(ps))


def ceilings(comparisons, seed):
    """On held-out comparisons ({prompt, responses}): two labelers' measured agreement (their
    rankings drawn from random.Random(seed + 7)), its exact expectation and the Bayes ceiling."""
    prompts, responses = [c["prompt"] for c in comparisons], [c["responses"] for c in comparisons]
    return {"labeler_agreement": labeler_agreement(prompts, responses, random.Random(seed + 7)),
            "expected_labeler_agreement": expected_agreement(prompts, responses, TAU),
            "bayes_ceiling": bayes_ceiling(prompts, responses, TAU), "tau": TAU}


def calibrate_tau(prompts, responses_per_prompt, target=0.73):
    """Bisect tau (agreement falls as tau grows) so that expected agreement hits target."""
    lo, hi = 1e-3, 10.0
    for _ in range(40):
        mid = math.sqrt(lo * hi)
        lo, hi = (mid, hi) if expected_agreement(prompts, responses_per_prompt, mid) > target else (lo, mid)
    return math.sqrt(lo * hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("comparisons", help="comparisons.jsonl of the world's prompts (train_rm.py writes one)")
    ap.add_argument("--target", type=float, default=0.73, help="inter-labeler agreement to calibrate to")
    args = ap.parse_args()
    comps = read_jsonl(args.comparisons, "comparisons")
    prompts, responses = [c["prompt"] for c in comps], [c["responses"] for c in comps]
    tau = calibrate_tau(prompts, responses, args.target)
    print(f"{len(comps)} prompts: TAU={TAU} gives agreement {expected_agreement(prompts, responses, TAU):.4f} "
          f"(ceiling {bayes_ceiling(prompts, responses, TAU):.4f}); tau for {args.target}: {tau:.4f} "
          f"(ceiling {bayes_ceiling(prompts, responses, tau):.4f})")


if __name__ == "__main__":
    main()
