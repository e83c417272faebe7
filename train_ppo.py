"""
Step 3 of InstructGPT (Ouyang et al. 2022, section 3.5 "Reinforcement learning (RL)"): PPO-ptx.

A bandit environment: draw a prompt, the policy writes a response, the reward model scores it, the
episode ends. Maximized:

    objective(phi) = E_{(x,y) ~ D_pi_RL} [ r_theta(x, y) - beta * log( pi_RL(y|x) / pi_SFT(y|x) ) ]
                   + gamma * E_{x ~ D_pretrain} [ log pi_RL(x) ]

with the KL charged per token and the RM score added at the last token (Stiennon et al. 2020), GAE,
whitened advantages, the clipped policy ratio and value loss, a value function initialized from the
RM, and the pretraining term ("ptx", --ptx-coef gamma; 0 gives plain PPO).

    python train_ppo.py                          # after train_sft.py and train_rm.py; ~2 minutes
    python train_ppo.py --ptx-coef 0 --out out/ppo_noptx    # plain PPO, for the alignment tax
    python train_ppo.py --data DIR               # your rl_prompts.jsonl and pretrain.jsonl
    python train_ppo.py --advantage rloo --out out/rloo    # or grpo: critic-free, 4 samples per prompt

--advantage picks the baseline; all three share the rollout, the clipped ratio and the ptx term:
  gae   PPO: a value function (initialized from the RM), GAE over per-token KL-shaped rewards.
  rloo  RLOO (Ahmadian et al. 2024): --group-size k samples per prompt, the whole response one
        action; reward the sequence's r_theta(x, y) - beta * log(pi/pi_SFT), baseline the mean of
        the other k - 1 samples' rewards (losses.rloo_advantages), given to every token.
  grpo  GRPO (Shao et al. 2024): k samples per prompt; advantage (r - group mean) / group std of
        the RM score alone (losses.grpo_advantages) on every token; the KL is a term of the loss,
        + beta * the per-token k3 estimator (losses.k3_kl) of the policy being updated.
  The KL sits where each paper puts it: RLOO keeps InstructGPT's objective (its beta means PPO's);
  GRPO's std division would rescale a penalty in the reward, so the same beta is another strength
  there. Neither loads, creates or trains a value function.

Writes model.pt (the policy), curve.json and metrics.json to --out. Departs from the paper:
  1. Sizes: ~1M-parameter models, batches of 64 episodes, a few thousand episodes in all.
  2. Responses that reach the length limit without an end-of-text get a fixed score
     (--truncated-score) instead of the RM's: the RM never saw such text, so its score is noise.
  3. The final evaluation uses the world's gold labeler (Gao et al. 2022) instead of humans.
  4. beta 0.1 instead of 0.02, and 90 iterations: a small RM is over-optimized fast (with an earlier
     ~70%-accurate RM, --beta 0.02 --iterations 150 peaked in gold after ~30 iterations, then fell).
  5. gamma (--ptx-coef) 0.2 with 4 pretraining windows of 128 tokens per minibatch, instead of 27.8:
     our losses are per-token means, so the scale differs; 0.2 already undoes the alignment tax.
  6. rloo/grpo: the ratio is clipped per token as PPO's (trl's RLOO clips the sequence's ratio),
     advantages are not whitened, and GRPO averages over the minibatch's tokens, not per response.
"""
import argparse
import os
import random
import time
from contextlib import nullcontext

import numpy as np
import torch

from nanorlhf import data as jdata
from nanorlhf import world
from nanorlhf.batching import encode_prompt, heldout_stream, pad_right, pretrain_batch
from nanorlhf.checkpoint import load_checkpoint, load_state, save_checkpoint
from nanorlhf.distributed import all_mean, ddp_setup, ddp_wrap
from nanorlhf.run import (Progress, Stop, autocast, catch_signals, check_finite, check_resume, end_of_step,
                          parse_run_args, print_metrics, seed_everything, stopped, trained_on, write_json,
                          write_metrics)
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import POLICY_KEYS, POLICY_NOTES, evaluate_policy, has_gold, mean_gold
from nanorlhf.losses import (adaptive_kl_update, gae, grpo_advantages, k3_kl, kl_shaped_rewards, masked_mean, masked_whiten,
                             model_lm_loss, model_logprobs, ppo_policy_loss, ppo_value_loss, rloo_advantages)
from nanorlhf.model import generate
from nanorlhf.tokenizer import fingerprint


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sft", default="out/sft/model.pt", help="SFT policy: the start and the KL reference")
    ap.add_argument("--rm", default="out/rm/model.pt", help="reward model; also initializes the value function")
    ap.add_argument("--out", default="out/ppo", help="output folder")
    ap.add_argument("--data", help="folder with rl_prompts.jsonl, pretrain.jsonl (default: the embedded world)")
    ap.add_argument("--iterations", type=int, default=90, help="rollout + update rounds")
    ap.add_argument("--rollout-size", type=int, default=64, help="episodes per iteration (paper: 512)")
    ap.add_argument("--minibatch-size", type=int, default=16, help="episodes per gradient step (paper: 64)")
    ap.add_argument("--ppo-epochs", type=int, default=4, help="passes over each rollout")
    ap.add_argument("--lr", type=float, default=1e-5, help="learning rate of policy and value function")
    ap.add_argument("--beta", type=float, default=0.1, help="KL coefficient (paper: 0.02, see departure 4); initial value if adaptive")
    ap.add_argument("--kl-target", type=float, help="nats/sequence: adapt beta toward this KL (Ziegler et al.)")
    ap.add_argument("--ptx-coef", type=float, default=0.2, help="gamma of the pretraining term; 0 = plain PPO")
    ap.add_argument("--ptx-batch", type=int, default=4, help="pretraining windows per gradient step")
    ap.add_argument("--clip", type=float, default=0.2, help="PPO ratio clip (paper: 0.2)")
    ap.add_argument("--vf-clip", type=float, default=0.2, help="value clip, in reward units")
    ap.add_argument("--vf-coef", type=float, default=0.5, help="weight of the value loss")
    ap.add_argument("--advantage", choices=("gae", "rloo", "grpo"), default="gae", help="PPO's value function + GAE, "
                    "or a critic-free group baseline (above)")
    ap.add_argument("--group-size", type=int, help="responses per prompt, k (default 1 for gae, 4 for rloo/grpo); "
                    "the distinct prompts per iteration are --rollout-size / k")
    ap.add_argument("--gamma", type=float, default=1.0, help="GAE discount")
    ap.add_argument("--lam", type=float, default=0.95, help="GAE lambda")
    ap.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (paper: 1)")
    ap.add_argument("--max-new-tokens", type=int, default=32, help="response length limit")
    ap.add_argument("--truncated-score", type=float, default=-2.0, help="score of a response cut at the length limit")
    ap.add_argument("--n-eval", type=int, default=1100, help="held-out test prompts for the final evaluation")
    ap.add_argument("--snapshot-every", type=int, default=0, help="keep the policy every N iterations in "
                    "--out/snapshots/ (for measuring over training; 0: never)")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--control", action="store_true", help="the control world: the demonstrations' mode is the ideal (no generation-verification gap)")
    args = parse_run_args(ap, argv, "iterations", 20, positive=("iterations", "rollout_size", "minibatch_size", "ppo_epochs"),
                          quick=dict(iterations=3, rollout_size=16, minibatch_size=8, n_eval=30))
    if args.beta < 0 or args.ptx_coef < 0:
        ap.error(f"--beta and --ptx-coef must be >= 0, got {args.beta}, {args.ptx_coef}")
    if args.kl_target is not None and args.kl_target <= 0:
        ap.error(f"--kl-target must be positive, got {args.kl_target}")
    if args.rollout_size % args.minibatch_size:
        ap.error(f"--rollout-size {args.rollout_size} must be a multiple of --minibatch-size {args.minibatch_size}")
    args.group_size = args.group_size or (1 if args.advantage == "gae" else 4)
    if args.group_size < 1 or args.advantage != "gae" and args.group_size < 2:
        ap.error(f"--group-size must be >= 2 for --advantage {args.advantage} (a baseline needs other samples), "
                 f"got {args.group_size}")
    if args.rollout_size % args.group_size:
        ap.error(f"--rollout-size {args.rollout_size} must be a multiple of --group-size {args.group_size}")
    if args.temperature <= 0:
        ap.error("--temperature must be positive for PPO (log-probs of a greedy policy are undefined)")
    return args


# -----------------------------------------------------------------------------
# Per-token quantities of the response: everything is read at the positions that PREDICT a
# response token, gathered into (B, Tr) arrays aligned so that column 0 is the first response token.

def response_index(start, Tr):
    """start (B,) = prompt lengths -> (B, Tr) positions in the inputs ids[:, :-1] predicting response tokens."""
    return (start - 1)[:, None] + torch.arange(Tr, device=start.device)[None]


def policy_forward(model, ids, start, Tr, temperature, device, entropy=False):
    """Log-probs (B, Tr) of the response tokens, computed at the SAMPLING temperature (with any other
    temperature the PPO ratio is not pi/pi_old); entropy=True: (log-probs, detached entropy (B, Tr)),
    from the same pass. The head runs at these positions only; fused, no (B, Tr, V) logits at all."""
    idx = response_index(start, Tr).clamp(max=ids.size(1) - 2)
    targets = ids[:, 1:].gather(1, idx)  # (B, Tr)
    with autocast(device):
        return model_logprobs(model, ids[:, :-1], targets, temperature, head_at=idx, entropy=entropy)


def value_forward(value_model, ids, start, Tr, device):
    idx = response_index(start, Tr).clamp(max=ids.size(1) - 2)
    with autocast(device):
        return value_model(ids[:, :-1], head_at=idx).float()  # (B, Tr)


# -----------------------------------------------------------------------------

# -----------------------------------------------------------------------------
# Rollout: the bandit episodes of one iteration, scored, with old log-probs, values and advantages

def rollout(args, it, rank, device, enc, prompts, policy, ref, rm, value_model, beta):
    k = args.group_size  # episode i answers prompt i // k: the groups are contiguous in rollout order
    batch_prompts = [p for p in random.Random(args.seed * 7919 + it * 101 + rank).sample(prompts, args.rollout_size // k)
                     for _ in range(k)]
    prompt_ids = [encode_prompt(enc, p) for p in batch_prompts]
    policy.eval()
    with autocast(device):
        tokens, gen = generate(policy, prompt_ids, args.max_new_tokens, enc.eot_token, args.temperature,
                               generator=torch.Generator(device).manual_seed(args.seed * 100003 + it * 17 + rank))
    policy.train()
    responses = [row[m].tolist() for row, m in zip(tokens, gen)]
    stopped = torch.tensor([bool(r) and r[-1] == enc.eot_token for r in responses], device=device)
    texts = [enc.decode(r[:-1] if s else r) for r, s in zip(responses, stopped.tolist())]
    # Shuffle once; old log-probs are computed minibatch by minibatch in exactly the layout of the
    # first epoch, so the ratio is exactly 1 on its first minibatch (no padding/batching drift).
    perm = torch.randperm(args.rollout_size, generator=torch.Generator().manual_seed(it)).tolist()
    roll = []  # one dict of tensors per minibatch
    for mb in [perm[i:i + args.minibatch_size] for i in range(0, args.rollout_size, args.minibatch_size)]:
        ids, lengths = pad_right([prompt_ids[i] + responses[i] for i in mb], enc.eot_token)
        ids, lengths = ids.to(device), lengths.to(device)
        start = torch.tensor([len(prompt_ids[i]) for i in mb], device=device)
        Tr = int((lengths - start).max())
        mask = torch.arange(Tr, device=device)[None] < (lengths - start)[:, None]  # (b, Tr) response tokens
        with torch.no_grad():  # constants of the update (a block: mutmut 3 skips decorated functions)
            logp = policy_forward(policy, ids, start, Tr, args.temperature, device)
            ref_logp = policy_forward(ref, ids, start, Tr, args.temperature, device)
            values = value_forward(value_model, ids, start, Tr, device) if value_model is not None else None
            with autocast(device):
                score = rm(ids, lengths=lengths).float()  # (b,) r_theta(x, y) at the last token
        score = torch.where(stopped[mb], score, torch.full_like(score, args.truncated_score))
        rewards, kl = kl_shaped_rewards(score, logp, ref_logp, mask, beta)  # (b, Tr)
        adv = ret = None
        if value_model is not None:
            adv, ret = gae(rewards, values, mask, args.gamma, args.lam)
        roll.append(dict(ids=ids, start=start, Tr=Tr, mask=mask, logp=logp, ref_logp=ref_logp, values=values, adv=adv,
                         ret=ret, score=score, kl=kl.sum(1), episodes=torch.tensor(mb, device=device)))
    if args.advantage == "gae":  # whiten advantages over the whole rollout, not per minibatch
        all_mask = torch.cat([r["mask"].flatten() for r in roll])
        all_adv = masked_whiten(torch.cat([r["adv"].flatten() for r in roll]), all_mask)
        i = 0
        for r in roll:
            r["adv"] = all_adv[i:i + r["adv"].numel()].view_as(r["adv"])
            i += r["adv"].numel()
    else:  # one sequence reward per episode, in rollout order; each group of k is its own baseline
        seq_r = torch.zeros(args.rollout_size, device=device)
        for r in roll:  # RLOO charges the KL in the reward; GRPO in the loss (ppo_update)
            seq_r[r["episodes"]] = r["score"] - beta * r["kl"] if args.advantage == "rloo" else r["score"]
        group_adv = (rloo_advantages if args.advantage == "rloo" else grpo_advantages)(seq_r.view(-1, k)).flatten()
        for r in roll:  # every token of a response gets its sequence's advantage
            r["adv"] = torch.where(r["mask"], group_adv[r["episodes"]][:, None], 0.0)
    info = dict(prompts=batch_prompts, texts=texts, stopped=stopped, ntok=sum(len(x) for x in responses),
                rm_score=torch.cat([r["score"] for r in roll]).mean().item(),
                kl=torch.cat([r["kl"] for r in roll]).mean().item())  # nats per sequence
    return roll, info


# -----------------------------------------------------------------------------
# PPO: epochs x minibatches of clipped policy and value updates, plus the pretraining term

def ppo_update(args, it, roll, ddp_policy, ddp_value, opt, params, train_stream, device, beta):
    stats, first_ratio_dev = [], None
    for epoch in range(args.ppo_epochs):
        order = range(len(roll)) if epoch == 0 else \
            torch.randperm(len(roll), generator=torch.Generator().manual_seed(it * 1000 + epoch)).tolist()
        for j in order:
            r = roll[j]
            opt.zero_grad(set_to_none=True)
            # With ptx, the policy's gradient is synced across ranks once, by the ptx backward.
            with ddp_policy.no_sync() if args.ptx_coef > 0 and hasattr(ddp_policy, "no_sync") else nullcontext():
                logp, ent = policy_forward(ddp_policy, r["ids"], r["start"], r["Tr"], args.temperature, device,
                                           entropy=True)
                pg_loss, pg_stats = ppo_policy_loss(logp, r["logp"], r["adv"], r["mask"], args.clip)
                kl_loss = masked_mean(k3_kl(logp, r["ref_logp"], r["mask"]), r["mask"])  # GRPO's KL term
                loss = pg_loss + beta * kl_loss if args.advantage == "grpo" else pg_loss
                loss.backward()
            if first_ratio_dev is None:  # the check other RLHF libraries fail: must be exactly 0
                first_ratio_dev = torch.where(r["mask"], logp - r["logp"], 0.0).abs().max().item()
            ptx = torch.zeros(())
            if args.ptx_coef > 0:  # + gamma * E_pretrain[log pi(x)]  (PPO-ptx)
                T = min(128, getattr(ddp_policy, "module", ddp_policy).config.block_size - 1)  # a window the policy can read
                xy = pretrain_batch(train_stream, args.ptx_batch, T, np.random.default_rng([args.seed, it, epoch, j]))
                with autocast(device):  # no (B, T, V) logits when fused
                    ptx = model_lm_loss(ddp_policy, xy[:, :-1].to(device), xy[:, 1:].to(device),
                                        torch.ones_like(xy[:, 1:], dtype=torch.bool, device=device))
                (args.ptx_coef * ptx).backward()
            vf_loss = torch.zeros(())
            if ddp_value is not None:
                values = value_forward(ddp_value, r["ids"], r["start"], r["Tr"], device)
                vf_loss, _ = ppo_value_loss(values, r["values"], r["ret"], r["mask"], args.vf_clip)
                (args.vf_coef * vf_loss).backward()
            # one guard before the update, on every term and the gradient (nothing is applied yet)
            check_finite(loss + vf_loss + ptx, "ppo", it, torch.nn.utils.clip_grad_norm_(params, 1.0))
            opt.step()
            ent = masked_mean(ent, r["mask"]).item()  # the policy's entropy before this step
            stats.append([pg_loss.item(), vf_loss.item(), ptx.item(), ent, pg_stats["clipfrac"].item(),
                          pg_stats["approx_kl"].item(), kl_loss.item()])
    return dict(zip(["pg_loss", "vf_loss", "ptx_loss", "entropy", "clipfrac", "approx_kl", "k3_kl"],
                    np.mean(stats, axis=0))), \
        first_ratio_dev


# -----------------------------------------------------------------------------

RESUME_KEYS = ("sft", "rm", "data", "iterations", "rollout_size", "minibatch_size", "ppo_epochs", "lr", "beta",
               "kl_target", "ptx_coef", "temperature", "seed", "control", "advantage", "group_size")


def main(argv=None):
    args = get_args(argv)
    t0 = time.time()
    rank, world_size, device = ddp_setup()
    seed_everything(args.seed)
    policy, enc, _ = load_checkpoint(args.sft, kind="policy")
    ref, _, _ = load_checkpoint(args.sft, kind="policy")
    rm, rm_enc, _ = load_checkpoint(args.rm, kind="reward")
    # the value function starts as the RM; the critic-free estimators have none
    value_model = load_checkpoint(args.rm, kind="reward")[0] if args.advantage == "gae" else None
    if fingerprint(rm_enc) != fingerprint(enc) or rm.config.vocab_size != policy.config.vocab_size:
        raise UserError(f"--rm {args.rm} (tokenizer {rm_enc.name}, vocabulary {rm.config.vocab_size}) does not "
                         f"match --sft {args.sft} (tokenizer {enc.name}, vocabulary {policy.config.vocab_size})")
    for m in (policy, ref, rm, value_model):
        if m is not None:
            m.to(device)
    policy.train(), ref.eval(), rm.eval()  # dropout is 0 in SFT checkpoints
    for m in (ref, rm):
        m.requires_grad_(False)

    if args.data:
        prompts = [r["prompt"] for r in jdata.load_dataset(args.data, "prompts", "rl")]
        docs = [r["text"] for r in jdata.load_dataset(args.data, "pretrain", optional=args.ptx_coef == 0,
                                                      hint="or --ptx-coef 0 for plain PPO")]
        test = [r["prompt"] for r in jdata.load_dataset(args.data, "prompts", "test", optional=True)][:args.n_eval]
    else:
        w = world.make_world(seed=args.seed, scale=0.05 if args.quick else 1.0, control=args.control)
        prompts, docs, test = w["rl_prompts"], w["pretrain"], w["test_prompts"][:args.n_eval]
    gold = has_gold(test)
    too_long = [p for p in prompts if len(encode_prompt(enc, p)) >= policy.config.block_size - 1]
    if too_long:  # no room to answer: refuse them loudly rather than crash mid-run
        print(f"[ppo] warning: skipping {len(too_long)} prompts that leave no room in block_size "
              f"{policy.config.block_size}, e.g. {too_long[0][:60]!r}")
        prompts = [p for p in prompts if p not in set(too_long)]
    if args.rollout_size // args.group_size > len(prompts):
        per_group = f" / --group-size {args.group_size}" if args.group_size > 1 else ""
        raise UserError(f"--rollout-size {args.rollout_size}{per_group} exceeds the "
                        f"{len(prompts)} usable RL prompts: lower --rollout-size")
    train_stream, held_stream = heldout_stream(enc, docs) if docs else (None, None)
    params = list(policy.parameters()) + (list(value_model.parameters()) if value_model is not None else [])
    # fused: one kernel over all tensors; the per-tensor loop cost 7% of a PPO iteration (bench/peers.py)
    opt = torch.optim.AdamW(params, lr=args.lr, betas=(0.9, 0.95), weight_decay=0.0, fused=True)
    beta, curve, first_ratio_dev, start = args.beta, [], None, 0
    if args.resume:
        state = load_state(os.path.join(args.out, "state.pt"))
        check_resume(state, args, RESUME_KEYS)
        policy.load_state_dict(state["policy"])
        if value_model is not None:
            value_model.load_state_dict(state["value"])
        opt.load_state_dict(state["opt"])
        beta, curve, first_ratio_dev, start = state["beta"], state["curve"], state["first_ratio_dev"], state["step"]
    ddp_policy = ddp_wrap(policy, world_size)
    ddp_value = ddp_wrap(value_model, world_size) if value_model is not None else None
    run = dict(args=args, rank=rank, world=world_size, resume_keys=RESUME_KEYS, global_step=start)
    prog = Progress(args.iterations, "ppo", every=10.0, quiet=rank > 0)
    prog.log(f"{len(prompts)} RL prompts, {args.iterations} iterations x {args.rollout_size}"
             f"{f' x {world_size} processes' if world_size > 1 else ''} episodes, "
             f"beta {beta}, ptx {args.ptx_coef}, advantage {args.advantage} (k {args.group_size})"
             + (f", from iteration {start}" if start else ""))
    catch_signals()
    try:
        for it in range(start, args.iterations):
            roll, info = rollout(args, it, rank, device, enc, prompts, policy, ref, rm, value_model, beta)
            stats, ratio_dev = ppo_update(args, it, roll, ddp_policy, ddp_value, opt, params, train_stream, device, beta)
            # the first minibatch's ratio must be exactly 1 at EVERY iteration: at the first, policy and
            # reference are equal, so only there would stale or misaligned old log-probs go unseen
            first_ratio_dev = ratio_dev if first_ratio_dev is None else max(first_ratio_dev, ratio_dev)
            point = dict(iteration=it + 1, episodes=(it + 1) * args.rollout_size * world_size, beta=beta,
                         kl=info["kl"], rm_score=info["rm_score"],
                         **({"gold_score": mean_gold(info["prompts"], info["texts"])} if gold else {}),
                         truncated=1 - info["stopped"].float().mean().item(), first_ratio_dev=ratio_dev, **stats)
            point = {k: all_mean(v, world_size) if isinstance(v, float) else v for k, v in point.items()}
            curve.append(point)
            if args.kl_target is not None:
                beta = adaptive_kl_update(beta, point["kl"], args.kl_target, args.rollout_size * world_size, horizon=10000)
            if args.snapshot_every and (it + 1) % args.snapshot_every == 0 and rank == 0:
                save_checkpoint(os.path.join(args.out, "snapshots", f"it{it + 1:04d}.pt"), policy, enc, "policy",
                                data=trained_on(args))
            prog.step(it, tokens=info["ntok"] * world_size, rm=point["rm_score"],
                      **({"gold": point["gold_score"]} if gold else {}), kl=point["kl"], ent=point["entropy"],
                      ptx=point["ptx_loss"], clip=point["clipfrac"], beta=beta)
            end_of_step(run, lambda: dict(step=it + 1, policy=policy.state_dict(),
                                          value=None if value_model is None else value_model.state_dict(),
                                          opt=opt.state_dict(), beta=beta, curve=curve, first_ratio_dev=first_ratio_dev))
    except Stop as e:
        return stopped(e, prog.log)
    if rank > 0:
        return  # rank 0 evaluates and writes
    policy.eval()
    save_checkpoint(os.path.join(args.out, "model.pt"), policy, enc, "policy", data=trained_on(args))
    write_json(os.path.join(args.out, "curve.json"), curve, indent=1)

    # ---------------------------------------------------------------- evaluation
    tail = curve[-max(1, len(curve) // 10):]  # the last 10% of iterations
    metrics = {"args": vars(args), "rm_score": float(np.mean([c["rm_score"] for c in tail])),
               "kl": float(np.mean([c["kl"] for c in tail])), "first_minibatch_max_abs_log_ratio": first_ratio_dev,
               "train_seconds": time.time() - t0}
    metrics.update(evaluate_policy(policy, ref, enc, test, args.seed + 1, device, held_stream, "PPO"))
    metrics["wall_seconds"] = time.time() - t0
    path = write_metrics(args.out, metrics)
    print_metrics(metrics, POLICY_KEYS, POLICY_NOTES)
    print(f"wrote {args.out}/model.pt, curve.json, {path}")


if __name__ == "__main__":
    exit_on_user_error(main)
