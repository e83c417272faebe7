"""
DPO (Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward
Model"): the optimum of the KL-penalized RLHF objective fitted straight from the labelers'
comparisons, with no reward model and no sampling. From the SFT policy, with SFT frozen as pi_ref:

    h    = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
    loss = -E_{(x, y_w, y_l) ~ D} [ log sigmoid(beta * h) ]       --ipo: (h - 1/(2 beta))^2 (Azar et al. 2023)

on the comparisons.jsonl the reward model trains on (train_rm.py writes it), so DPO and RLHF spend
the same labeler budget: each K-way ranking is expanded to its C(K,2) pairs, all of them one batch
element with one forward pass per response, as the RM's loss (losses.dpo_loss).

    python train_dpo.py                          # after train_sft.py and train_rm.py
    python train_dpo.py --ipo --beta 0.5 --out out/ipo
    python train_dpo.py --data DIR               # your comparisons.jsonl, any format of nanorlhf/data.py

Writes model.pt (the policy) and metrics.json to --out, evaluated as train_ppo.py's policy
(evaluate.evaluate_policy: gold and win rates against SFT, KL to SFT on its own samples, the
alignment tax). Departs from the paper:
  1. Pairs come from K-way rankings, weighted per prompt as the RM's loss (the mean over a prompt's
     C(K,2) pairs, then over prompts), not as i.i.d. pairs (the paper's pairs; its Plackett-Luce
     form for rankings is not used).
  2. The comparisons were sampled from SFT, so pi_ref = SFT is the policy that wrote them, as the
     paper asks; with --data of another policy's pairs the paper would first fine-tune on the chosen
     responses, which is not done here.
  3. AdamW, warmup then cosine decay, batches of 16 ranked prompts (~60 pairs), lr 2e-5 for ~1M-parameter
     models (the paper: RMSprop at 1e-6, constant after 150 warmup steps, 64 pairs).
  4. IPO on summed sequence log-ratios, as Azar et al. derive it (trl's ipo averages per token).
  5. The implicit reward beta * log pi/pi_ref is scored as an RM on val_comparisons.jsonl (against
     the labeler and the gold order), and the final policy by the gold labeler, not GPT-4 or humans.
"""
import argparse
import os
import time

import numpy as np
import torch

from nanorlhf import data as jdata
from nanorlhf import world
from nanorlhf.batching import encode_example, heldout_stream, response_batch
from nanorlhf.checkpoint import load_checkpoint, load_state, save_checkpoint
from nanorlhf.distributed import all_mean, all_min, all_sum, ddp_setup, ddp_wrap
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import comparison_scores, evaluate_policy, gold_order, has_gold, pair_accuracy
from nanorlhf.losses import dpo_loss, imitation_score
from nanorlhf.run import (Progress, Stop, autocast, catch_signals, check_finite, check_resume, end_of_step, lr_at,
                          parse_run_args, seed_everything, stopped, trained_on, write_metrics)


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", default="out/sft/model.pt", help="SFT policy: the start and the frozen reference pi_ref")
    ap.add_argument("--comparisons", default="out/rm/comparisons.jsonl", help="the RM's ranked comparisons (its "
                    "val_comparisons.jsonl beside it is held out); test prompts and pretraining text from the world")
    ap.add_argument("--data", help="instead: a folder with comparisons.jsonl (+ optional val_comparisons.jsonl, "
                    "test_prompts.jsonl, pretrain.jsonl)")
    ap.add_argument("--out", default="out/dpo", help="output folder")
    ap.add_argument("--beta", type=float, default=0.1, help="KL strength: the implicit reward is beta * log pi/pi_ref")
    ap.add_argument("--ipo", action="store_true", help="IPO's squared loss toward the margin 1/(2 beta)")
    ap.add_argument("--epochs", type=int, default=1, help="passes over the comparisons")
    ap.add_argument("--batch-size", type=int, default=16, help="ranked prompts (each with all its pairs) per step")
    ap.add_argument("--lr", type=float, default=2e-5, help="peak learning rate (cosine decay)")
    ap.add_argument("--n-eval", type=int, default=1100, help="held-out test prompts for the final evaluation")
    ap.add_argument("--seed", type=int, default=0, help="the world's seed (test prompts) and the data order")
    ap.add_argument("--control", action="store_true", help="the control world (for its test prompts)")
    args = parse_run_args(ap, argv, "steps", 100, positive=("epochs", "batch_size", "n_eval"),
                          quick=dict(batch_size=4, n_eval=30))
    if args.beta <= 0:
        ap.error(f"--beta must be positive, got {args.beta}")
    return args


def load_data(args):
    """(train comparisons, held-out comparisons, test prompts, pretraining documents)."""
    if args.data:
        opt = lambda kind, split=None: jdata.load_dataset(args.data, kind, split, optional=True)
        return (jdata.load_dataset(args.data, "comparisons"), opt("comparisons", "val"),
                [r["prompt"] for r in opt("prompts", "test")][:args.n_eval], [r["text"] for r in opt("pretrain")])
    if not os.path.isfile(args.comparisons):
        raise UserError(f"--comparisons {args.comparisons}: no such file (train_rm.py writes it: run it first, or "
                        "give --comparisons FILE or --data DIR)")
    val_path = os.path.join(os.path.dirname(args.comparisons), "val_comparisons.jsonl")
    val = jdata.read_jsonl(val_path, "comparisons") if os.path.isfile(val_path) else []
    w = world.make_world(seed=args.seed, scale=0.05 if args.quick else 1.0, control=args.control)
    return jdata.read_jsonl(args.comparisons, "comparisons"), val, w["test_prompts"][:args.n_eval], w["pretrain"]


def batch_logratios(policy, ref, enc, batch, device):
    """log pi(y|x) - log pi_ref(y|x), summed over each response's tokens and end-of-text: (B, Kmax) in
    ranking order (best first), zero-padded; k (B,); the tokens scored. One forward pass per model."""
    ex = [encode_example(enc, c["prompt"], c["responses"][j]) for c in batch for j in c["ranking"]]
    ids, mask = response_batch(ex, enc.eot_token, device)  # (sum K, T), (sum K, T-1) response targets
    with autocast(device):
        logp = imitation_score(policy(ids[:, :-1]).float(), ids[:, 1:], mask, per_token=False)  # (sum K,)
        with torch.no_grad():
            ref_logp = imitation_score(ref(ids[:, :-1]).float(), ids[:, 1:], mask, per_token=False)
    k = torch.tensor([len(c["ranking"]) for c in batch], device=device)
    rows = (logp - ref_logp).split(k.tolist())  # one (K_b,) per prompt
    return torch.nn.utils.rnn.pad_sequence(list(rows), batch_first=True), k, int(mask.sum())  # (B, Kmax)


RESUME_KEYS = ("sft", "comparisons", "data", "beta", "ipo", "epochs", "batch_size", "lr", "seed", "control")


def main(argv=None):
    args = get_args(argv)
    t0 = time.time()
    rank, world_size, device = ddp_setup()
    seed_everything(args.seed)
    policy, enc, _ = load_checkpoint(args.sft, kind="policy")
    ref, _, _ = load_checkpoint(args.sft, kind="policy")
    comps, val, test, docs = load_data(args)
    fits = lambda c: all(len(encode_example(enc, c["prompt"], y)[0]) <= policy.config.block_size for y in c["responses"])
    n = len(comps)
    comps, val = [c for c in comps if fits(c)], [c for c in val if fits(c)]
    if len(comps) < n and rank == 0:
        print(f"[dpo] warning: skipping {n - len(comps)} comparisons longer than block_size {policy.config.block_size}")
    comps, val = comps[rank::world_size], val[rank::world_size]  # each process its shard
    steps_per_epoch = int(all_min(len(comps) // args.batch_size, world_size))
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {args.batch_size} exceeds the {len(comps)} usable comparisons of a process: "
                        "lower --batch-size")
    policy.to(device).train(), ref.to(device).eval()  # dropout is 0 in SFT checkpoints
    ref.requires_grad_(False)
    opt = torch.optim.AdamW(policy.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0)
    step, losses = 0, []
    if args.resume:
        state = load_state(os.path.join(args.out, "state.pt"))
        check_resume(state, args, RESUME_KEYS)
        policy.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step, losses = state["step"], state["losses"]
    ddp_policy = ddp_wrap(policy, world_size)
    n_pairs = int(all_sum(sum(len(c["ranking"]) * (len(c["ranking"]) - 1) // 2 for c in comps), world_size))
    total = args.epochs * steps_per_epoch
    prog = Progress(total, "dpo", quiet=rank > 0)
    prog.log(f"{int(all_sum(len(comps), world_size))} ranked prompts ({n_pairs} pairs), {args.epochs} epochs x "
             f"{steps_per_epoch} steps, beta {args.beta}, {'IPO' if args.ipo else 'DPO'}" + (f", from step {step}" if step else ""))
    run = dict(args=args, rank=rank, world=world_size, resume_keys=RESUME_KEYS, global_step=step)
    catch_signals()
    try:
        for epoch in range(step // steps_per_epoch, args.epochs):
            order = np.random.default_rng([args.seed, rank, epoch]).permutation(len(comps))  # prompts, never pairs
            for j in range(step - epoch * steps_per_epoch, steps_per_epoch):
                batch = [comps[i] for i in order[j * args.batch_size:(j + 1) * args.batch_size]]
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, args.lr, warmup=10)
                logratios, k, ntok = batch_logratios(ddp_policy, ref, enc, batch, device)  # (B, Kmax), (B,)
                loss, acc = dpo_loss(logratios, k, args.beta, ipo=args.ipo)
                loss.backward()
                check_finite(loss, "dpo", step, torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0))
                opt.step()
                opt.zero_grad(set_to_none=True)
                step += 1
                losses.append(all_mean(loss.item(), world_size))
                prog.step(step - 1, tokens=ntok * world_size, epoch=epoch + 1, loss=losses[-1],
                          acc=all_mean(acc.item(), world_size))
                end_of_step(run, lambda: dict(step=step, model=policy.state_dict(), opt=opt.state_dict(), losses=losses))
    except Stop as e:
        return stopped(e, prog.log)
    train_seconds = time.time() - t0
    policy.eval()
    metrics = {"args": vars(args), "n_comparisons": int(all_sum(len(comps), world_size)), "n_pairs": n_pairs,
               "losses": losses, "train_seconds": train_seconds,
               "seconds_per_pair": train_seconds / max(1, args.epochs * n_pairs)}
    if val:  # the implicit reward beta * log pi/pi_ref as a reward model, on the RM's held-out comparisons
        lp, ref_lp = (comparison_scores(m, enc, val, device, per_token=False) for m in (policy, ref))
        scores = [[args.beta * (a - b) for a, b in zip(x, y)] for x, y in zip(lp, ref_lp)]
        for key, order_of in (("val_accuracy", lambda c: c["ranking"]), ("gold_accuracy", gold_order)):
            if key == "val_accuracy" or has_gold([c["prompt"] for c in val]):
                hits, pairs = (all_sum(x, world_size) for x in pair_accuracy(scores, val, order_of))
                metrics[key] = hits / max(1, pairs)
    if rank > 0:
        return  # rank 0 evaluates and writes
    save_checkpoint(os.path.join(args.out, "model.pt"), policy, enc, "policy", data=trained_on(args))
    held_stream = heldout_stream(enc, docs)[1] if docs else None
    metrics.update(evaluate_policy(policy, ref, enc, test, args.seed + 1, device, held_stream, "DPO"))
    metrics["wall_seconds"] = time.time() - t0
    path = write_metrics(args.out, metrics)
    for k in ("val_accuracy", "gold_accuracy", "win_rate_vs_sft", "tie_rate_vs_sft", "greedy_win_rate_vs_sft",
              "gold_score", "sft_gold_score", "greedy_gold_score", "sft_greedy_gold_score", "sampled_kl",
              "pretrain_loss", "sft_pretrain_loss", "seconds_per_pair", "wall_seconds"):
        if k in metrics:
            print(f"  {k:24s} {metrics[k]:.3f}")
    print(f"wrote {args.out}/model.pt, {path}")


if __name__ == "__main__":
    exit_on_user_error(main)
