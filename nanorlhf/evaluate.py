"""
Evaluation shared by all stages: sample responses for held-out prompts and judge them with the
world's gold labeler (Gao et al. 2022: a fixed "gold" reward stands in for human judges), with
confidence intervals; and `evaluate_run`, the suite of models and baselines that the report shows.

    python -m nanorlhf.evaluate out/sft/base.pt out/sft/model.pt out/ppo/model.pt --n 5
prints responses of several models side by side for random held-out prompts of the data they were
trained on, with gold scores where the world's labeler can judge the prompts.
"""
import argparse
import itertools
import json
import math
import os
import random
import statistics

import torch

from nanorlhf import data as jdata
from nanorlhf import world
from nanorlhf.batching import encode_example, encode_prompt, pad_right, pretrain_loss, response_batch
from nanorlhf.checkpoint import load_checkpoint
from nanorlhf.losses import imitation_score
from nanorlhf.distributed import get_device
from nanorlhf.errors import UserError, exit_on_user_error
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


def wilson(k, n, z=1.96):
    """95% Wilson score interval of a rate k/n: within [0, 1], sane at rates near 0 or 1 and at
    small n. k may be fractional (a win rate's ties count half)."""
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    mid, half = (p + z * z / (2 * n)) / (1 + z * z / n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [0.0 if k == 0 else max(0.0, mid - half), 1.0 if k == n else min(1.0, mid + half)]  # exact despite rounding


def mean_ci(xs):
    """Mean and 95% normal interval over prompts."""
    m = _mean(xs)
    half = 1.96 * (statistics.pvariance(xs) / len(xs)) ** 0.5 if len(xs) > 1 else float("nan")
    return m, [m - half, m + half]


def shows_habit(prompt, response):
    """Whether a response carries the demonstrators' habit (world: Family.habit), the mechanism of
    the generation-verification gap: the habit's opening words ("Sorted:", "Sure!", "I think",
    "Honestly,"), or for describe exactly one descriptor short of the limit. None where the habit
    is the ideal itself (an unknowable question)."""
    fam, info = world.parse_prompt(prompt)
    habit, ideal = world.tokens(fam.habit(info, None)), world.tokens(fam.ideal(info))
    if habit == ideal:
        return None
    toks = world.tokens(response)
    if fam.name == "describe":
        ws = [t for t in toks if world.is_word(t)]
        return len(ws) == info["n"] - 1 and all(t in world.ANIMALS[info["animal"]] for t in ws)
    opener = habit[:len(habit) - len(ideal)]
    return toks[:len(opener)] == opener


def gold_report(prompts, responses):
    """Mean gold score (with its 95% CI), the paper's axes as rates with Wilson CIs and their
    denominators, and per family the mean gold and success rate."""
    s = [world.score(p, r) for p, r in zip(prompts, responses)]
    out = {"n": len(s), "mean_words": _mean([len(r.split()) for r in responses])}
    out["gold_score"], out["gold_score_ci95"] = mean_ci([x["total"] for x in s])
    rates = {"toxic_rate": ("toxic", lambda x: True),
             "hallucination_rate": ("hallucination", lambda x: True),  # made-up answers to unknowable questions
             "constraint_rate": ("constraint", lambda x: True),  # explicit constraints met
             "refusal_rate_known": ("refusal", lambda x: x["known"] is True),  # over-hedging
             "habit_rate": ("habit", lambda x: True)}  # the demonstrators' habit (the gap's mechanism)
    for x, p, r in zip(s, prompts, responses):
        x["habit"] = shows_habit(p, r)
    for name, (key, cond) in rates.items():
        xs = [bool(x[key]) for x in s if x[key] is not None and cond(x)]
        out[name], out[name + "_ci95"], out[name + "_n"] = _mean(xs), wilson(sum(xs), len(xs)), len(xs)
    for fam in sorted({x["family"] for x in s}):
        out[f"gold_{fam}"] = _mean([x["total"] for x in s if x["family"] == fam])
        out[f"success_{fam}"] = _mean([x["success"] for x in s if x["family"] == fam])
    return out


def win_rate(prompts, resp_a, resp_b):
    """Win rate of A over B by the gold labeler, ties counted half, the tie rate, and the same per
    family. The 95% interval is Wilson's with a tie counted as half a win: k = wins + ties / 2 of
    n prompts. It stays in [0, 1] (a normal interval over the 0 / 0.5 / 1 outcomes did not near the
    ends), and is conservative: an outcome in {0, 0.5, 1} of mean p has variance <= p (1 - p)."""
    outcomes, fams = [], []
    for p, a, b in zip(prompts, resp_a, resp_b):
        sa, sb = world.score(p, a), world.score(p, b)
        outcomes.append(0.5 if abs(sa["total"] - sb["total"]) < 1e-9 else float(sa["total"] > sb["total"]))
        fams.append(sa["family"])
    w = _mean(outcomes)
    out = {"win_rate": w, "win_rate_ci95": wilson(sum(outcomes), len(outcomes)),
           "tie_rate": outcomes.count(0.5) / len(outcomes)}
    for fam in sorted(set(fams)):
        o = [x for x, f in zip(outcomes, fams) if f == fam]
        out[f"win_{fam}"], out[f"tie_{fam}"] = _mean(o), o.count(0.5) / len(o)
    return out


def evaluate_model(model, enc, prompts, seed=0, greedy=True):
    """Gold report at temperature 1 (and greedy), keeping the responses for win rates."""
    resp, stopped = sample(model, enc, prompts, temperature=1.0, seed=seed)
    out = {"report": gold_report(prompts, resp), "responses": resp, "stopped": stopped,
           "truncated_rate": 1 - _mean(stopped)}
    if greedy:
        out["greedy_responses"], _ = sample(model, enc, prompts, temperature=0.0)
        out["greedy_report"] = gold_report(prompts, out["greedy_responses"])
    return out


def evaluate_policy(policy, sft, enc, test, seed, device, held_stream=None, name="policy"):
    """The final evaluation of a policy tuned from SFT (train_ppo.py, train_dpo.py): the alignment
    tax (loss on held-out pretraining text, policy and SFT) and, where the gold labeler can judge the
    test prompts, both policies' gold reports at T=1 and greedy, the win rates against SFT at the
    same decoding, and KL(pi || pi_SFT) on the policy's own T=1 samples. -> metrics dict."""
    metrics = {}
    if held_stream is not None:  # the alignment tax: loss on held-out pretraining text
        metrics["pretrain_loss"] = pretrain_loss(policy, held_stream, device)
        metrics["sft_pretrain_loss"] = pretrain_loss(sft, held_stream, device)
    if not has_gold(test):
        return metrics
    print(f"[eval] {name} and SFT on {len(test)} test prompts", flush=True)
    ev, sft_ev = evaluate_model(policy, enc, test, seed=seed), evaluate_model(sft, enc, test, seed=seed)
    metrics.update({k: v for k, v in ev["report"].items()})
    metrics.update({f"greedy_{k}": v for k, v in ev["greedy_report"].items()})
    metrics.update({f"sft_{k}": v for k, v in sft_ev["report"].items()})
    metrics.update({f"sft_greedy_{k}": v for k, v in sft_ev["greedy_report"].items()})
    wr = win_rate(test, ev["responses"], sft_ev["responses"])
    metrics.update(win_rate_vs_sft=wr["win_rate"], win_rate_vs_sft_ci95=wr["win_rate_ci95"],
                   tie_rate_vs_sft=wr["tie_rate"],
                   greedy_win_rate_vs_sft=win_rate(test, ev["greedy_responses"], sft_ev["greedy_responses"])["win_rate"],
                   truncated_rate=ev["truncated_rate"], n_eval_prompts=len(test),
                   sampled_kl=sampled_kl(policy, sft, enc, test, ev["responses"], ev["stopped"], device))
    return metrics


POLICY_KEYS = ("win_rate_vs_sft", "tie_rate_vs_sft", "greedy_win_rate_vs_sft", "gold_score", "sft_gold_score",
               "greedy_gold_score", "sft_greedy_gold_score", "rm_score", "kl", "sampled_kl", "pretrain_loss",
               "sft_pretrain_loss", "toxic_rate", "hallucination_rate", "constraint_rate", "refusal_rate_known",
               "wall_seconds")  # what train_ppo.py prints of its metrics
POLICY_NOTES = {"kl": "nats/seq: the training rollouts' summed log(pi/pi_SFT), last 10% of iterations",
                "sampled_kl": "nats/seq on test prompts: a sample estimate, can fall below 0 when pi is close to SFT"}


def mean_gold(prompts, responses):
    """The mean gold score (only where the world's labeler can judge the prompts: has_gold)."""
    return float(_mean([world.score(p, r)["total"] for p, r in zip(prompts, responses)]))


@torch.no_grad()
def sampled_kl(pi, ref, enc, prompts, responses, stopped, device, batch_size=256):
    """KL(pi || ref) in nats per sequence, estimated on pi's own samples y ~ pi(.|x): the mean of
    log pi(y|x) - log ref(y|x) over the tokens of y and its end-of-text, the latter only where y
    stopped by itself (a response cut at the length limit never sampled one). The texts are
    re-encoded: a sample whose tokens were not its text's own encoding is scored on the latter."""
    out = []
    for i in range(0, len(prompts), batch_size):
        ex = [encode_example(enc, p, r) for p, r in zip(prompts[i:i + batch_size], responses[i:i + batch_size])]
        ids, mask = response_batch(ex, enc.eot_token, device)  # (B, T), (B, T-1) response targets
        eot_at = torch.tensor([len(x) - 2 for x, _ in ex], device=device)  # target index of each end-of-text
        cut = ~torch.tensor(stopped[i:i + batch_size], device=device)
        mask = mask & ~(cut[:, None] & (torch.arange(mask.size(1), device=device)[None] == eot_at[:, None]))
        logp = []
        for m in (pi, ref):
            with autocast(device):
                logp.append(imitation_score(m(ids[:, :-1]).float(), ids[:, 1:], mask, per_token=False))  # (B,) sums
        out.append(logp[0] - logp[1])
    return torch.cat(out).mean().item()


@torch.no_grad()
def reward_of(rm, enc, prompts, responses, device, batch_size=256):
    """r(x, y) for lists of prompts and responses: (N,)."""
    out = []
    for i in range(0, len(prompts), batch_size):
        seqs = [encode_example(enc, p, r)[0] for p, r in zip(prompts[i:i + batch_size], responses[i:i + batch_size])]
        ids, lengths = pad_right(seqs, enc.eot_token)
        with autocast(device):
            out.append(rm(ids.to(device), lengths=lengths.to(device)).float())
    return torch.cat(out)


@torch.no_grad()
def pm_scores(pm, enc, prompts, responses, device, per_token=True, batch_size=256):
    """A preference model's score of each response, (N,): the scalar head's r(x, y) (ranked or binary
    objective), or for a language model (the imitation objective) its log-likelihood of y, mean per
    token (or summed: per_token=False), losses.imitation_score."""
    if pm.config.scalar_head:
        return reward_of(pm, enc, prompts, responses, device, batch_size)
    out = []
    for i in range(0, len(prompts), batch_size):
        ex = [encode_example(enc, p, r) for p, r in zip(prompts[i:i + batch_size], responses[i:i + batch_size])]
        ids, mask = response_batch(ex, enc.eot_token, device)  # (B, T), (B, T-1)
        with autocast(device):
            logits = pm(ids[:, :-1])  # (B, T-1, V); logits[:, t] predicts ids[:, t + 1]
        out.append(imitation_score(logits.float(), ids[:, 1:], mask, per_token))
    return torch.cat(out)


def comparison_scores(pm, enc, comps, device, per_token=True):
    """The preference model's score of every response of every comparison, in one batched pass:
    one list of scores per comparison."""
    if not comps:
        return []
    flat = pm_scores(pm, enc, [c["prompt"] for c in comps for _ in c["responses"]],
                     [y for c in comps for y in c["responses"]], device, per_token).tolist()
    ends = list(itertools.accumulate(len(c["responses"]) for c in comps))
    return [flat[end - len(c["responses"]):end] for c, end in zip(comps, ends)]


def pair_accuracy(scores, comps, order_of):
    """(hits, pairs): pairs of distinct responses whose scores (comparison_scores) order them as
    `order_of(comparison)` does."""
    hits = total = 0
    for r, c in zip(scores, comps):
        order = [i for i in order_of(c) if i is not None]
        for a in range(len(order)):
            for b in range(a + 1, len(order)):
                hits += r[order[a]] > r[order[b]]
                total += 1
    return hits, total


def gold_order(c):
    """Responses best first by the gold labeler; a response tied in gold with another is dropped."""
    s = [world.score(c["prompt"], y)["total"] for y in c["responses"]]
    order = sorted(range(len(s)), key=lambda i: -s[i])
    return [i if all(abs(s[i] - s[j]) > 1e-9 for j in order if j != i) else None for i in order]


def best_of_n(rm, enc, prompts, samples, stopped, ns, device):
    """Best-of-n with the RM as the judge (the simplest use of a reward model): for each prompt,
    of its first n samples the one the RM scores highest (a sample cut at the length limit only
    if all are). samples: one list of >= max(ns) texts per prompt. Returns {n: [response]}.
    Its KL to the sampling policy is log n - (n-1)/n nats, analytically."""
    flat_p = [p for p, ss in zip(prompts, samples) for _ in ss]
    r = pm_scores(rm, enc, flat_p, [y for ss in samples for y in ss], device).view(len(prompts), -1)  # (N, n_max)
    r = torch.where(torch.tensor(stopped, device=r.device), r, r - 1e6)
    return {n: [ss[i] for ss, i in zip(samples, r[:, :n].argmax(1).tolist())] for n in ns}


def bon_kl(n):
    return math.log(n) - (n - 1) / n


# ----------------------------------------------------------------------------------------------
# The evaluation suite of a finished run: every model and baseline on the same test prompts

def evaluate_run(root, n_best=(4, 16), temperatures=(0.0, 0.25, 0.5, 0.75, 1.0), max_prompts=None):
    """Evaluate the checkpoints of one run folder (root/sft, root/rm, root/ppo_noptx, root/ppo) on
    the world's two test sets: "test" (held out by body) and "heldout" (combinations never trained).
    Rows: base and SFT at T=1 and greedy, SFT at its best temperature (chosen on validation prompts),
    best-of-n from SFT judged by the RM, PPO and PPO-ptx at T=1 and greedy; every row's gold report
    and win rate against SFT at the same decoding (T=1 rows and best-of-n against SFT T=1), and the
    demonstrations' own gold score. Returns a JSON-able dict."""
    with open(os.path.join(root, "sft", "metrics.json")) as f:
        sft_args = json.load(f)["args"]
    seed, control = sft_args["seed"], sft_args.get("control", False)
    w = world.make_world(seed=seed, scale=0.05 if sft_args.get("quick") else 1.0, control=control)
    device = get_device()
    load = lambda path, kind: load_checkpoint(path, kind=kind)[0].to(device).eval()
    paths = {"base": "sft/base.pt", "SFT": "sft/model.pt", "PPO": "ppo_noptx/model.pt", "PPO-ptx": "ppo/model.pt"}
    enc = load_checkpoint(os.path.join(root, "sft", "model.pt"), kind="policy")[1]
    sets = {"test": w["test_prompts"][:max_prompts], "heldout": w["heldout_prompts"][:max_prompts]}
    out = {"seed": seed, "control": control, "rows": {}, "kl": {}}
    demo = gold_report([d["prompt"] for d in w["demos"]], [d["response"] for d in w["demos"]])
    out["demos"] = {"gold_score": demo["gold_score"], **{k: v for k, v in demo.items() if k.startswith("gold_")}}
    responses = {}  # row -> {set: [response]}
    sft = load(os.path.join(root, paths["SFT"]), "policy")
    val_gold = {t: gold_report(w["val_prompts"], sample(sft, enc, w["val_prompts"], t, seed=seed + 11)[0])["gold_score"]
                for t in temperatures}
    out["sft_val_gold_by_temperature"], out["sft_best_temperature"] = val_gold, max(val_gold, key=val_gold.get)
    for name, rel in paths.items():
        if not os.path.exists(os.path.join(root, rel)):
            continue
        model = load(os.path.join(root, rel), "policy")
        for dec, t in (("T=1", 1.0), ("greedy", 0.0)):
            responses[f"{name} {dec}"] = {s: sample(model, enc, ps, t, seed=seed + 1)[0] for s, ps in sets.items()}
        if name == "SFT":
            t = out["sft_best_temperature"]
            responses["SFT best T"] = {s: sample(model, enc, ps, t, seed=seed + 1)[0] for s, ps in sets.items()}
        if name.startswith("PPO"):
            with open(os.path.join(root, os.path.dirname(rel), "metrics.json")) as f:
                out["kl"][f"{name} T=1"] = json.load(f)["kl"]
    if os.path.exists(os.path.join(root, "rm", "model.pt")):
        rm = load(os.path.join(root, "rm", "model.pt"), "reward")
        for s, ps in sets.items():
            flat = [p for p in ps for _ in range(max(n_best))]
            texts, stopped = sample(sft, enc, flat, 1.0, seed=seed + 2, batch_size=512)
            k = max(n_best)
            picks = best_of_n(rm, enc, ps, [texts[i:i + k] for i in range(0, len(texts), k)],
                              [stopped[i:i + k] for i in range(0, len(stopped), k)], n_best, device)
            for n in n_best:
                responses.setdefault(f"best-of-{n}", {})[s] = picks[n]
        out["kl"].update({f"best-of-{n}": bon_kl(n) for n in n_best})
    for row, by_set in responses.items():
        ref = "SFT greedy" if row.endswith("greedy") else "SFT T=1"
        out["rows"][row] = {s: {**gold_report(sets[s], ys), "vs_sft": win_rate(sets[s], ys, responses[ref][s])}
                            for s, ys in by_set.items()}
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


def trained_on(path, ckpt):
    """The --data folder a checkpoint was trained on: recorded in it, else in the metrics.json beside
    it (older checkpoints); None for the embedded world."""
    if ckpt.get("data") is not None or not os.path.isfile(path):
        return ckpt.get("data")
    metrics = os.path.join(os.path.dirname(path), "metrics.json")
    return json.load(open(metrics)).get("args", {}).get("data") if os.path.isfile(metrics) else None


def default_prompts(data, n, seed):
    """n random held-out prompts of the data a run was trained on: the world's test prompts, or a
    --data folder's test, val or RL prompts (the first split it has)."""
    if data is None:
        return random.Random(seed).sample(world.make_world()["test_prompts"], n)
    if not os.path.isdir(data):
        raise UserError(f"the checkpoints were trained on --data {data}, which is not there now: pass --prompt TEXT")
    for split in ("test", "val", "rl"):
        prompts = [r["prompt"] for r in jdata.load_dataset(data, "prompts", split, optional=True)]
        if prompts:
            return random.Random(seed).sample(prompts, min(n, len(prompts)))
    raise UserError(f"--data {data} has no test_prompts.jsonl, val_prompts.jsonl or rl_prompts.jsonl: pass --prompt TEXT")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoints", nargs="+", help="policy checkpoints (files or folders with model.pt)")
    ap.add_argument("--prompt", action="append", help="a prompt to answer (repeatable); default: random held-out "
                    "prompts of the data the checkpoints were trained on (the world's, or their --data folder's)")
    ap.add_argument("--n", type=int, default=5, help="number of random held-out prompts")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (0 = greedy)")
    ap.add_argument("--seed", type=int, default=0, help="prompt choice and sampling seed")
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error")

    def error(message):  # one line, exit 2, like every other user error
        raise UserError(message)
    ap.error = error
    args = ap.parse_args(argv)
    if args.n < 1 or args.temperature < 0:
        ap.error(f"--n must be positive and --temperature >= 0, got {args.n}, {args.temperature}")
    models = {path: load_checkpoint(path, kind="policy") for path in args.checkpoints}
    data = next((d for d in (trained_on(p, c) for p, (_, _, c) in models.items()) if d is not None), None)
    prompts = [jdata.render_prompt(jdata.text_turns(p)) for p in args.prompt] if args.prompt else \
        default_prompts(data, args.n, args.seed)
    gold = has_gold(prompts)  # only prompts of the embedded world have a gold labeler
    device = get_device()
    answers = {}
    for path, (model, enc, _) in models.items():
        for p in prompts:
            n = len(encode_prompt(enc, p))
            if n >= model.config.block_size - 1:
                raise UserError(f"prompt {p[:40]!r}... is {n} tokens: it leaves no room to answer in {path}'s "
                                f"context of {model.config.block_size} tokens; shorten it")
        answers[path], _ = sample(model.to(device), enc, prompts, args.temperature, seed=args.seed)
    for i, p in enumerate(prompts):
        print(f"\n=== {p}")
        for path in args.checkpoints:
            r = answers[path][i]
            print(f"  [{world.score(p, r)['total']:+.2f}] {path}: {r}" if gold else f"  {path}: {r}")


if __name__ == "__main__":
    exit_on_user_error(main)
