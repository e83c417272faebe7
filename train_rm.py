"""
Step 2 of InstructGPT (Ouyang et al. 2022, section 3.5 "Reward modeling (RM)").

For each comparison prompt, sample K = 4..9 responses from the SFT policy and have a labeler rank
them (here the world's noisy ranker, calibrated to the paper's ~73% inter-labeler agreement).
The RM is the SFT model with the unembedding replaced by a scalar head read at the last token,
trained on

    loss(theta) = -1/C(K,2) * E_{(x, y_w, y_l) ~ D} [ log sigmoid( r(x, y_w) - r(x, y_l) ) ]

with all C(K,2) pairs of a prompt as ONE batch element: one forward pass per completion, never one
per pair. Afterwards a bias makes the labelers' demonstrations score 0 on average.

    python train_rm.py                          # after train_sft.py; ~100 s on 2 CPU cores
    python train_rm.py --data DIR               # your comparisons.jsonl (see nanorlhf/data.py)
    python train_rm.py --objective binary       # Askell et al. 2021's other objectives: binary, imitation
    python train_rm.py --init out/pmp/model.pt  # start from another trunk, e.g. a PMP preference model

Three objectives learn from the same labeler's judgments of the same responses (Askell et al. 2021):
  ranked     the loss above (default);
  binary     the labeler marks each response acceptable or not (world.judge); a classifier head on the
             same trunk, cross-entropy (losses.binary_loss); its logit is the score;
  imitation  the LM fine-tuned on each prompt's top-ranked response (lm_loss); a response's score is
             its mean token log-likelihood (losses.imitation_score). Saved as a policy checkpoint.

Writes model.pt (kind "reward"; "policy" for imitation), the sampled comparisons.jsonl and
val_comparisons.jsonl (a --data folder), and metrics.json to --out. Departs from the paper:
  1. The RM has the SFT model's size (the paper used a 6B RM for every policy size).
  2. Duplicate responses to a prompt are merged before ranking (a tiny model repeats itself often;
     a pair of identical texts carries no preference), so K can fall below 4.
  3. Held-out accuracy is measured against the noisy ranker AND the gold labeler's true order.
  4. Three passes over the comparisons (the paper: one, as more overfit its large data set; here
     1,500 prompts are small and the third pass still raised held-out accuracy).
"""
import argparse
import itertools
import os
import random
import time

import numpy as np
import torch

from nanorlhf import data as jdata
from nanorlhf import agreement, world
from nanorlhf.batching import encode_example, pad_right, response_nll
from nanorlhf.checkpoint import load_checkpoint, load_state, save_checkpoint, to_scalar_head
from nanorlhf.distributed import all_mean, all_sum, ddp_setup, ddp_wrap, gather_objects
from nanorlhf.run import (Progress, Stop, autocast, catch_signals, check_finite, check_resume, end_of_step, lr_at,
                          parse_run_args, print_metrics, seed_everything, stopped, trained_on,
                          write_metrics)
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import comparison_scores, gold_order, has_gold, pair_accuracy, reward_of, sample
from nanorlhf.losses import binary_loss, rm_ranking_loss


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", default="out/sft/model.pt", help="SFT policy: samples the responses; the trunk "
                    "unless --init")
    ap.add_argument("--out", default="out/rm", help="output folder for model.pt and metrics.json")
    ap.add_argument("--data", help="folder with comparisons.jsonl (+ optional demos.jsonl); default: sample and rank")
    ap.add_argument("--objective", choices=OBJECTIVES, default="ranked", help="what the preference model learns (above)")
    ap.add_argument("--init", help="checkpoint to start the preference model from (a policy, or a reward model such "
                    "as a PMP one); default --sft")
    ap.add_argument("--n-prompts", type=int, help=f"comparisons to sample and rank (default {N_PROMPTS}: the RM "
                    "prompts, in fresh rounds); with --data, use only the first N (default all)")
    ap.add_argument("--sample-only", action="store_true", help="write the sampled, ranked comparisons "
                    "(comparisons.jsonl, val_comparisons.jsonl) to --out and stop: a --data folder")
    ap.add_argument("--n-val", type=int, default=300, help="held-out prompts for accuracy")
    ap.add_argument("--k-min", type=int, default=4, help="fewest responses sampled per prompt")
    ap.add_argument("--k-max", type=int, default=9, help="most responses sampled per prompt")
    ap.add_argument("--epochs", type=int, default=3, help="passes over the comparisons (paper: 1; more helps this small data set)")
    ap.add_argument("--batch-size", type=int, default=16, help="prompts (each with all its K responses) per step")
    ap.add_argument("--lr", type=float, default=3e-4, help="peak learning rate (cosine decay)")
    ap.add_argument("--labeler-taste", type=float, default=0.0, help="the labelers also like a response opening "
                    "\"Sure!\" by this much gold score (held-out labelers: nanorlhf.experiments.labelers); 0: none")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--control", action="store_true", help="the control world: the demonstrations' mode is the ideal (no generation-verification gap)")
    args = parse_run_args(ap, argv, "steps", 100, positive=("n_val", "epochs", "batch_size"),
                          quick=dict(n_prompts=40, n_val=20, epochs=1))
    if args.n_prompts is not None and args.n_prompts < 1:
        ap.error(f"--n-prompts must be positive, got {args.n_prompts}")
    if args.n_prompts is None and not args.data:
        args.n_prompts = N_PROMPTS  # recorded in metrics.json: the budget is part of the run
    if not 2 <= args.k_min <= args.k_max:
        ap.error(f"need 2 <= --k-min <= --k-max, got {args.k_min}, {args.k_max}")
    return args


OBJECTIVES = ("ranked", "binary", "imitation")
N_PROMPTS = 13500  # sampled comparisons by default: 9 rounds over the world's 1,500 RM prompts (README: RM scaling)


def sample_comparisons(policy, enc, prompts, args, rng):
    """Sample K in [k_min, k_max] responses per prompt at temperature 1, merge duplicates, rank
    them with the noisy labeler, who also says which are acceptable. Returns [{prompt, responses,
    ranking, acceptable}] (ranking best first; acceptable per response)."""
    ks = [rng.randint(args.k_min, args.k_max) for _ in prompts]
    flat = [p for p, k in zip(prompts, ks) for _ in range(k)]
    texts, _ = sample(policy, enc, flat, temperature=1.0, seed=rng.randint(0, 2**31), batch_size=256)
    out, i = [], 0
    for p, k in zip(prompts, ks):
        responses = list(dict.fromkeys(texts[i:i + k]))  # distinct, in order
        i += k
        if len(responses) >= 2:
            out.append({"prompt": p, "responses": responses, "ranking": world.rank(p, responses, rng, taste=args.labeler_taste),
                        "acceptable": world.judge(p, responses, rng)})
    return out


def batch_rewards(rm, enc, batch, device):
    """All completions of all prompts in ONE forward pass. Returns rewards (B, Kmax) in ranking
    order (best first) and k (B,). Padding entries are 0 and ignored by the loss."""
    seqs = [encode_example(enc, c["prompt"], c["responses"][j])[0] for c in batch for j in c["ranking"]]
    ids, lengths = pad_right(seqs, enc.eot_token)
    with autocast(device):
        r = rm(ids.to(device), lengths=lengths.to(device)).float()  # (sum K,)
    k = torch.tensor([len(c["ranking"]) for c in batch], device=device)
    rewards = torch.zeros(len(batch), int(k.max()), device=device)
    rewards[torch.arange(len(batch), device=device).repeat_interleave(k),
            torch.cat([torch.arange(int(n), device=device) for n in k])] = r
    return rewards, k


def batch_loss(pm, enc, batch, objective, device):
    """(loss, accuracy, sequences) of one batch of comparisons under the objective."""
    if objective == "imitation":  # the SFT loss on each prompt's top-ranked response, the labeler's choice
        nll, n = response_nll(pm, [encode_example(enc, c["prompt"], c["responses"][c["ranking"][0]]) for c in batch],
                              enc.eot_token, device)
        return nll / n, torch.exp(-nll / n), len(batch)  # "accuracy": the per-token likelihood
    rewards, k = batch_rewards(pm, enc, batch, device)  # (B, Kmax) in ranking order, (B,)
    if objective == "ranked":
        return (*rm_ranking_loss(rewards, k), int(k.sum()))
    labels = torch.zeros_like(rewards)  # (B, Kmax) the labeler's yes/no, in ranking order
    for b, c in enumerate(batch):
        labels[b, :len(c["ranking"])] = torch.tensor([float(c["acceptable"][j]) for j in c["ranking"]])
    return (*binary_loss(rewards, labels, torch.arange(rewards.shape[1], device=device)[None] < k[:, None]), int(k.sum()))


AGAINST = {  # what each printed accuracy is measured against: they are not on one scale
    "gold_accuracy": "vs the gold order, noise-free: can exceed bayes_ceiling",
    "bayes_ceiling": "the gold score vs one noisy labeler: the ceiling of val_accuracy, not of gold_accuracy"}
RESUME_KEYS = ("sft", "init", "objective", "data", "n_prompts", "n_val", "k_min", "k_max", "epochs", "batch_size", "lr",
               "seed", "control", "labeler_taste")


def main(argv=None):
    args = get_args(argv)
    t0 = time.time()
    rank, world_size, device = ddp_setup()
    seed_everything(args.seed)
    rng = random.Random(args.seed * 1000 + rank)  # each rank samples and ranks its own shard
    rm, enc, _ = load_checkpoint(args.init or args.sft)  # the preference model's trunk
    if args.objective == "imitation" and rm.config.scalar_head:
        raise UserError(f"--init {args.init}: --objective imitation fine-tunes a language model; give a policy "
                        "checkpoint, not a reward model")
    state = load_state(os.path.join(args.out, "state.pt")) if args.resume else None
    if state is not None:
        check_resume(state, args, RESUME_KEYS)
    say = print if rank == 0 else (lambda *a, **k: None)

    # --- comparison data: sampled from the SFT policy and ranked by the noisy labeler, or the user's
    if state is not None:  # the sampled comparisons were saved with the state
        comps, val, demos, gold = (state["data"][k] for k in ("comps", "val", "demos", "gold"))
        comps, val = comps[rank], val[rank]
    elif args.data:
        comps = jdata.load_dataset(args.data, "comparisons")
        val = jdata.load_dataset(args.data, "comparisons", split="val", optional=True)  # else held out below
        demos = jdata.load_dataset(args.data, "demos", optional=True)
        fits = lambda p, y: len(encode_example(enc, p, y)[0]) <= rm.config.block_size  # or the forward fails
        n = len(comps) + len(val)
        comps, val = ([c for c in cs if all(fits(c["prompt"], y) for y in c["responses"])] for cs in (comps, val))
        demos = [d for d in demos if fits(d["prompt"], d["response"])]
        if len(comps) + len(val) < n:
            say(f"[rm] warning: skipping {n - len(comps) - len(val)} comparisons with a prompt + response longer "
                f"than block_size {rm.config.block_size}")
        random.Random(args.seed).shuffle(comps)
        if not val:
            n_val = min(args.n_val, len(comps) // 10)
            val, comps = comps[:n_val], comps[n_val:]
        comps = comps[:args.n_prompts]  # the first N: nested subsets for a learning curve
        val, comps = val[rank::world_size], comps[rank::world_size]
        gold = has_gold([c["prompt"] for c in val])
        if args.objective == "binary" and not all("acceptable" in c for c in comps):
            raise UserError(f"{args.data}/comparisons.jsonl: --objective binary needs each comparison's "
                            "'acceptable' field (the labeler's yes/no per response; see nanorlhf/data.py)")
    else:
        policy, penc, _ = load_checkpoint(args.sft, kind="policy")
        if penc.name != enc.name:
            raise UserError(f"--init {args.init} and --sft {args.sft} use different tokenizers ({enc.name}, {penc.name})")
        policy.to(device).eval()
        w = world.make_world(seed=args.seed, scale=0.05 if args.quick else 1.0, control=args.control)
        say(f"[rm] sampling {args.k_min}..{args.k_max} responses for {args.n_prompts} + {args.n_val} prompts", flush=True)
        # more comparisons than RM prompts: each further round samples and ranks the prompts afresh
        rounds = -(-args.n_prompts // len(w["rm_prompts"]))
        comps = sample_comparisons(policy, enc, (w["rm_prompts"] * rounds)[:args.n_prompts][rank::world_size], args, rng)
        val = sample_comparisons(policy, enc, w["val_prompts"][:args.n_val][rank::world_size], args, rng)
        demos, gold = w["demos"], True
        del policy
    n_comps = int(all_sum(len(comps), world_size))
    all_comps, all_val = gather_objects(comps, world_size), gather_objects(val, world_size)
    if rank == 0 and state is None and not args.data:  # the labeled data, reusable with --data
        jdata.write_jsonl(os.path.join(args.out, "comparisons.jsonl"), [c for cs in all_comps for c in cs])
        jdata.write_jsonl(os.path.join(args.out, "val_comparisons.jsonl"), [c for cs in all_val for c in cs])
    if args.sample_only:
        if rank == 0:
            write_metrics(args.out, {"args": vars(args), "n_comparisons": n_comps, "wall_seconds": time.time() - t0})
        say(f"[rm] wrote {n_comps} comparisons to {args.out}/comparisons.jsonl (+ val_comparisons.jsonl): "
            f"train on them with --data {args.out}")
        return
    # Every rank trains on all comparisons, in one process's order (the shards interleaved back), and takes its
    # slice of each global batch: N processes x batch b compute what 1 process x batch N*b does (as SFT).
    comps = [c for group in itertools.zip_longest(*all_comps) for c in group if c is not None]
    B = args.batch_size * world_size
    steps_per_epoch = len(comps) // B
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {args.batch_size} exceeds the {len(comps) // world_size} comparisons of a "
                        "process: lower --batch-size")
    metrics = {"args": vars(args), "n_comparisons": n_comps, "mean_k": all_mean(np.mean([len(c["ranking"]) for c in comps]), world_size),
               "n_pairs": sum(len(c["ranking"]) * (len(c["ranking"]) - 1) // 2 for c in comps)}
    say(f"[rm] {n_comps} ranked prompts ({metrics['n_pairs']} pairs, mean K {metrics['mean_k']:.2f}), "
        f"{int(all_sum(len(val), world_size))} held out" + ("" if args.data or state else
                                                           f"; sampled in {time.time() - t0:.0f}s"), flush=True)

    # --- the preference model: the trunk with a scalar head at the last token (ranked, binary), or the LM
    if args.objective != "imitation" and not rm.config.scalar_head:
        rm = to_scalar_head(rm)
    rm = rm.to(device).train()
    opt = torch.optim.AdamW(rm.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step = 0
    if state is not None:
        rm.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step, metrics["losses"] = state["step"], state["losses"]  # the curve so far, for the plots
    ddp_rm = ddp_wrap(rm, world_size)
    total = args.epochs * steps_per_epoch
    prog = Progress(total, "rm", quiet=rank > 0, unit="seq")  # sequences scored, not tokens
    data_state = dict(comps=all_comps, val=all_val, demos=demos, gold=gold)
    run = dict(args=args, rank=rank, world=world_size, resume_keys=RESUME_KEYS, global_step=step)
    catch_signals()
    try:
        for epoch in range(step // steps_per_epoch, args.epochs):
            order = np.random.default_rng([args.seed, 0, epoch]).permutation(len(comps))  # the same on every rank
            for j in range(step - epoch * steps_per_epoch, steps_per_epoch):
                # prompts, never pairs, are shuffled: all C(K,2) pairs of a prompt stay together (section 3.5)
                batch = [comps[i] for i in order[j * B + rank * args.batch_size:j * B + (rank + 1) * args.batch_size]]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, args.lr, warmup=10)
                loss, acc, n_seq = batch_loss(ddp_rm, enc, batch, args.objective, device)
                loss.backward()
                check_finite(loss, "rm", step, torch.nn.utils.clip_grad_norm_(rm.parameters(), 1.0))
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                metrics.setdefault("losses", []).append(all_mean(loss.item(), world_size))  # per step, for the plots
                prog.step(step - 1, tokens=n_seq * world_size, epoch=epoch + 1,
                          loss=metrics["losses"][-1], acc=all_mean(acc.item(), world_size))
                end_of_step(run, lambda: dict(step=step, model=rm.state_dict(), opt=opt.state_dict(), data=data_state,
                                              losses=metrics["losses"]))
    except Stop as e:
        return stopped(e, say)
    rm.eval()
    scores = comparison_scores(rm, enc, val, device)  # held out, once; the shift below changes no order
    if args.objective == "binary":  # the classifier's own task: the labeler's held-out yes/no (before the shift)
        metrics["acceptable_rate"] = all_mean(np.mean([a for c in comps for a in c["acceptable"]]), world_size)
        hits = [(s > 0) == a for c, ss in zip(val, scores) if "acceptable" in c for s, a in zip(ss, c["acceptable"])]
        metrics["binary_val_accuracy"] = all_sum(sum(hits), world_size) / max(1, all_sum(len(hits), world_size))

    # --- normalization: the demonstrations score 0 on average before RL
    if demos and rm.config.scalar_head:
        demo_r = lambda: reward_of(rm, enc, [d["prompt"] for d in demos], [d["response"] for d in demos], device).mean()
        bias = demo_r()
        with torch.no_grad():
            rm.score_head.bias -= bias
        metrics["demo_bias_removed"], metrics["demo_mean_reward"] = bias.item(), demo_r().item()

    # --- held-out accuracy, next to the ceiling set by the labelers' own agreement
    def accuracy(order_of, scores=scores):  # (accuracy, pairs) over all processes
        hits, n = (all_sum(x, world_size) for x in pair_accuracy(scores, val, order_of))
        return hits / max(1, n), int(n)
    metrics["val_accuracy"], metrics["n_val_pairs"] = accuracy(lambda c: c["ranking"])
    metrics["passes_over_data"] = args.epochs
    if gold:
        metrics["gold_accuracy"], metrics["n_gold_pairs"] = accuracy(gold_order)
        if args.objective == "imitation":  # the other normalization (losses.imitation_score)
            metrics["gold_accuracy_sum_logprob"] = accuracy(gold_order, comparison_scores(rm, enc, val, device, False))[0]
        # On the same held-out samples: how often two independent labelers agree (measured, and its
        # exact expectation; the paper's yardstick) and the Bayes ceiling, the gold score's own
        # expected accuracy against one labeler, E[max(p, 1-p)]: no RM can beat it.
        metrics.update(agreement.ceilings([c for cs in all_val for c in cs], args.seed))
    metrics["wall_seconds"] = time.time() - t0
    if rank > 0:
        return
    save_checkpoint(os.path.join(args.out, "model.pt"), rm, enc, "reward" if rm.config.scalar_head else "policy",
                    data=trained_on(args), objective=args.objective)
    path = write_metrics(args.out, metrics)
    print_metrics(metrics, ("val_accuracy", "gold_accuracy", "gold_accuracy_sum_logprob", "binary_val_accuracy",
                            "labeler_agreement", "expected_labeler_agreement", "bayes_ceiling", "demo_mean_reward",
                            "wall_seconds"), {**AGAINST, "val_accuracy": "vs the held-out rankings of " +
                                              (args.data if args.data else "one noisy labeler")}, width=28)
    print(f"wrote {args.out}/model.pt, {path}")


if __name__ == "__main__":
    exit_on_user_error(main)
