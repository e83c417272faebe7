"""
Step 1 of InstructGPT (Ouyang et al. 2022, section 3.5 "SFT"), preceded by a step 0 that makes the
pretrained model the paper starts from.

  step 0  pretrain a GPT on the embedded world's "internet text" (the GPT-3 stand-in), unless
          --init gives a base checkpoint (ours, or a local Hugging Face GPT-2 folder);
  step 1  fine-tune it on labeler demonstrations with the loss on response tokens only, cosine
          learning-rate decay and dropout; evaluate on validation prompts after each epoch and
          keep the checkpoint with the best gold score (the paper selects by RM score, not loss).

    python train_sft.py                      # default world, ~5 minutes on 2 CPU cores
    python train_sft.py --data DIR --init out/sft/base.pt   # your own demos.jsonl (see nanorlhf/data.py)

Writes base.pt, model.pt (the SFT policy) and metrics.json to --out. Departs from the paper:
  1. The "pretrained model" is ~1M parameters trained for ~3 minutes on synthetic text.
  2. Checkpoint selection uses the world's gold labeler on validation prompts, not an RM.
  3. 12 epochs instead of 16 and dropout 0.1 instead of 0.2: the tiny model underfits at 0.2.
"""
import argparse
import os
import time

import numpy as np
import torch

from nanorlhf import data as jdata
from nanorlhf import world
from nanorlhf.batching import encode_example, heldout_stream, pretrain_batch, pretrain_loss, response_nll
from nanorlhf.checkpoint import load_checkpoint, load_state, save_checkpoint
from nanorlhf.distributed import all_mean, all_sum, ddp_setup, ddp_wrap
from nanorlhf.run import (Progress, Stop, autocast, catch_signals, check_finite, check_resume, end_of_step, lr_at,
                          parse_run_args, seed_everything, stopped, trained_on, write_metrics)
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.evaluate import evaluate_model, gold_report, has_gold, win_rate
from nanorlhf.losses import model_lm_loss
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer


def get_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="out/sft", help="output folder for base.pt, model.pt, metrics.json")
    ap.add_argument("--data", help="folder with pretrain.jsonl / demos.jsonl / *_prompts.jsonl (default: the embedded world)")
    ap.add_argument("--init", help="base checkpoint to fine-tune (ours or a Hugging Face GPT-2 folder); skips pretraining")
    ap.add_argument("--tokenizer", help="'nanorlhf' (embedded BPE, the default), 'gpt2' (needs tiktoken's cache), a .tiktoken "
                    "ranks file (python -m nanorlhf.tokenizer --data) or a Hugging Face folder; with --init DIR, DIR's own")
    ap.add_argument("--pretrain-steps", type=int, default=1000, help="step 0: optimizer steps of pretraining")
    ap.add_argument("--pretrain-lr", type=float, default=2e-3, help="step 0: peak learning rate")
    ap.add_argument("--block-size", type=int, default=128, help="step 0: tokens per pretraining window")
    ap.add_argument("--epochs", type=int, default=12, help="step 1: SFT epochs over the demonstrations")
    ap.add_argument("--lr", type=float, default=5e-4, help="step 1: peak learning rate (cosine decay)")
    ap.add_argument("--dropout", type=float, default=0.1, help="step 1: residual dropout (paper: 0.2)")
    ap.add_argument("--batch-size", type=int, default=32, help="sequences per optimizer step")
    ap.add_argument("--n-layer", type=int, default=4, help="model depth (new models only)")
    ap.add_argument("--n-embd", type=int, default=128, help="model width (new models only)")
    ap.add_argument("--n-head", type=int, default=4, help="attention heads (new models only)")
    ap.add_argument("--n-eval", type=int, default=1100, help="held-out test prompts for the final evaluation")
    ap.add_argument("--n-val", type=int, default=200, help="validation prompts for checkpoint selection")
    ap.add_argument("--seed", type=int, default=0, help="random seed")
    ap.add_argument("--control", action="store_true", help="the control world: the demonstrations' mode is the ideal (no generation-verification gap)")
    args = parse_run_args(ap, argv, "steps", 200, positive=("epochs", "batch_size", "block_size", "n_eval", "n_val"),
                          quick=dict(pretrain_steps=30, epochs=2, n_layer=2, n_embd=64, n_head=2, n_eval=40, n_val=20,
                                     block_size=64))
    if args.pretrain_steps < 0:
        ap.error(f"--pretrain-steps must be >= 0, got {args.pretrain_steps}")
    if not 0 <= args.dropout < 1:
        ap.error(f"--dropout must be in [0, 1), got {args.dropout}")
    return args


def load_data(args):
    """Pretraining text, demonstrations, validation and test prompts: the embedded world, or the
    user's JSONL files. `gold` says whether the world's labeler can judge the prompts."""
    if args.data is None:
        w = world.make_world(seed=args.seed, scale=0.05 if args.quick else 1.0, control=args.control)
        return dict(pretrain=w["pretrain"], demos=w["demos"], val=w["val_prompts"][:args.n_val],
                    test=w["test_prompts"][:args.n_eval], gold=True)
    demos = jdata.load_dataset(args.data, "demos")
    pretrain = [r["text"] for r in jdata.load_dataset(args.data, "pretrain", hint="or give --init BASE to skip "
                                                          "pretraining")] if args.init is None else []
    prompts = lambda split: [r["prompt"] for r in jdata.load_dataset(args.data, "prompts", split, optional=True)]
    val, test = prompts("val")[:args.n_val], prompts("test")[:args.n_eval]
    return dict(pretrain=pretrain, demos=demos, val=val, test=test,
                gold=has_gold(val + test))


# options that must not change between an interrupted run and its --resume
RESUME_KEYS = ("seed", "control", "batch_size", "pretrain_steps", "pretrain_lr", "block_size", "epochs", "lr", "dropout", "init")


# -----------------------------------------------------------------------------
# Step 0: pretraining, next-token prediction on random windows of the corpus

def pretrain(run, model, enc, docs, state):
    args, device, rank, world = run["args"], run["device"], run["rank"], run["world"]
    stream, held = heldout_stream(enc, docs)
    T = args.block_size
    ddp_model = ddp_wrap(model, world)
    opt = torch.optim.AdamW(model.parameters(), lr=args.pretrain_lr, betas=(0.9, 0.95), weight_decay=0.1)
    start = 0
    if state is not None and state["stage"] == "pretrain":
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        start = state["step"]
    prog = Progress(args.pretrain_steps, "pretrain", quiet=rank > 0)
    prog.log(f"{len(docs):,} documents, {len(stream):,} tokens (+{len(held):,} held out), "
             f"{args.pretrain_steps} steps of {args.batch_size * world} x {T}" + (f", from step {start}" if start else ""))
    model.train()
    for step in range(start, args.pretrain_steps):
        # The global batch is a function of the step; each rank takes its slice of it.
        xy = pretrain_batch(stream, args.batch_size * world, T, np.random.default_rng([args.seed, step]))
        xy = xy[rank * args.batch_size:(rank + 1) * args.batch_size].to(device)  # (B, T+1)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.pretrain_steps, args.pretrain_lr, warmup=50)
        with autocast(device):  # no (B, T, V) logits when fused
            loss = model_lm_loss(ddp_model, xy[:, :-1], xy[:, 1:], torch.ones_like(xy[:, 1:], dtype=torch.bool))
        loss.backward()
        check_finite(loss, "pretrain", step, torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
        opt.step()
        opt.zero_grad(set_to_none=True)
        run["losses"]["pretrain"].append(all_mean(loss.item(), world))
        prog.step(step, tokens=xy[:, 1:].numel() * world, loss=run["losses"]["pretrain"][-1])
        end_of_step(run, lambda: dict(stage="pretrain", step=step + 1, model=model.state_dict(), opt=opt.state_dict(),
                                      losses=run["losses"], metrics=run["metrics"]))
    return pretrain_loss(model, held, device)


# -----------------------------------------------------------------------------
# Step 1: supervised fine-tuning on demonstrations, loss on the response tokens only

def sft_batches(examples, batch_size, epoch, seed):
    """Global batches of one epoch (the last partial one dropped, so every rank gets a full slice)."""
    order = np.random.default_rng([seed, 1000 + epoch]).permutation(len(examples))
    return [[examples[i] for i in order[j:j + batch_size]] for j in range(0, len(order) - batch_size + 1, batch_size)]


@torch.no_grad()
def val_loss(model, examples, pad, device, batch_size):
    model.eval()
    nll = [response_nll(model, examples[i:i + batch_size], pad, device) for i in range(0, len(examples), batch_size)]
    model.train()
    return sum(s.item() for s, _ in nll) / sum(n for _, n in nll)


def sft(run, model, enc, data, state):
    args, device, rank, world = run["args"], run["device"], run["rank"], run["world"]
    examples = [encode_example(enc, d["prompt"], d["response"]) for d in data["demos"]]
    too_long = sum(len(ids) > model.config.block_size for ids, _ in examples)
    if too_long:
        print(f"[sft] warning: skipping {too_long} demonstrations longer than block_size {model.config.block_size}")
        examples = [e for e in examples if len(e[0]) <= model.config.block_size]
    n_held = max(1, len(examples) // 20)  # the last 5% of demonstrations give the validation loss
    train, held = examples[:-n_held], examples[-n_held:]
    B = args.batch_size * world
    steps_per_epoch = len(train) // B
    if steps_per_epoch == 0:
        raise UserError(f"--batch-size {args.batch_size} x {world} process(es) exceeds the {len(train)} usable "
                        f"training demonstrations ({too_long} longer than block_size {model.config.block_size} skipped)")
    total = args.epochs * steps_per_epoch
    ddp_model = ddp_wrap(model, world)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.1)
    step, history, best = 0, [], None
    if state is not None and state["stage"] == "sft":
        opt.load_state_dict(state["opt"])
        torch.set_rng_state(state["rng"])
        step, history, best = state["step"], state["history"], state["best"]
    prog = Progress(total, "sft", quiet=rank > 0)
    prog.log(f"{len(train)} demonstrations ({n_held} held out), {args.epochs} epochs x {steps_per_epoch} steps of {B}")
    model.train()
    for epoch in range(step // steps_per_epoch, args.epochs):
        for j, batch in enumerate(sft_batches(train, B, epoch, args.seed)):
            if epoch * steps_per_epoch + j < step:
                continue  # resumed: already done
            for g in opt.param_groups:
                g["lr"] = lr_at(step, total, args.lr, warmup=20)
            nll, n = response_nll(ddp_model, batch[rank * args.batch_size:(rank + 1) * args.batch_size], enc.eot_token, device)
            n_all = all_sum(n, world)
            # Mean over the GLOBAL batch's tokens: DDP averages gradients over ranks, hence * world,
            # so N processes x batch b computes exactly what 1 process x batch N*b does.
            loss = nll * world / n_all
            loss.backward()
            check_finite(loss, "sft", step, torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0))
            opt.step()
            opt.zero_grad(set_to_none=True)
            run["losses"]["sft"].append(all_sum(nll.item(), world) / n_all)
            prog.step(step, tokens=n_all, epoch=epoch + 1, loss=run["losses"]["sft"][-1])
            step += 1
            if j + 1 == steps_per_epoch:  # end of epoch: validate, select by gold score (paper: RM score)
                rec = {"epoch": epoch + 1, "val_loss": val_loss(model, held, enc.eot_token, device, 64)}
                if data["gold"] and data["val"]:
                    ev = evaluate_model(model, enc, data["val"], seed=args.seed, greedy=False)
                    rec["val_gold"] = ev["report"]["gold_score"]
                history.append(rec)
                prog.log(f"epoch {epoch + 1}: " + " ".join(f"{k} {v:.4f}" for k, v in rec.items() if k != "epoch"))
                key = rec.get("val_gold", -rec["val_loss"])
                if best is None or key > best["key"]:
                    best = {"key": key, "epoch": epoch + 1, "model": {k: v.clone() for k, v in model.state_dict().items()}}
            end_of_step(run, lambda: dict(stage="sft", step=step, model=model.state_dict(), opt=opt.state_dict(),
                                          losses=run["losses"], metrics=run["metrics"], history=history, best=best))
    model.load_state_dict(best["model"])
    prog.log(f"selected epoch {best['epoch']} (by {'gold score' if data['gold'] else 'validation loss'})")
    return history, best["epoch"]


# -----------------------------------------------------------------------------

def main(argv=None):
    args = get_args(argv)
    t0 = time.time()
    rank, world, device = ddp_setup()
    seed_everything(args.seed + rank)  # dropout differs per rank; data slices are chosen explicitly
    data = load_data(args)
    n_train = len(data["demos"]) - max(1, len(data["demos"]) // 20)  # checked now, not after pretraining
    if n_train < args.batch_size * world:
        raise UserError(f"--batch-size {args.batch_size} x {world} process(es) exceeds the {n_train} training "
                        "demonstrations: lower --batch-size")
    os.makedirs(args.out, exist_ok=True)
    state = load_state(os.path.join(args.out, "state.pt")) if args.resume else None
    if state is not None:
        check_resume(state, args, RESUME_KEYS)
    run = dict(args=args, device=device, rank=rank, world=world, resume_keys=RESUME_KEYS,
               global_step=state["global_step"] if state else 0,
               losses=state["losses"] if state else {"pretrain": [], "sft": []},
               metrics=state["metrics"] if state else {"args": vars(args)})
    metrics = run["metrics"]
    catch_signals()
    try:
        if args.init:  # step 0 done elsewhere: ours or a local GPT-2
            model, enc, _ = load_checkpoint(args.init, kind="policy", tokenizer=args.tokenizer)
        elif state is not None and state["stage"] == "sft":  # pretraining finished before the interruption
            model, enc, _ = load_checkpoint(os.path.join(args.out, "base.pt"), kind="policy")
        else:
            enc = get_tokenizer(args.tokenizer or "nanorlhf")
            cfg = GPTConfig(vocab_size=enc.n_vocab, n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd)
            model = GPT(cfg).to(device)
            if state is not None:
                model.load_state_dict(state["model"])
            if rank == 0:
                print(f"[pretrain] new model: {model.num_params():,} parameters, vocabulary {enc.n_vocab}", flush=True)
            metrics["base_pretrain_loss"] = pretrain(run, model, enc, data["pretrain"], state)
            if rank == 0:
                save_checkpoint(os.path.join(args.out, "base.pt"), model, enc, "policy",
                                data=trained_on(args))
            state = None  # pretraining's state is used up
        model.to(device)
        metrics["n_params"] = model.num_params()
        base_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        if state is not None and state["stage"] == "sft":
            model.load_state_dict(state["model"])
        for m in model.modules():  # the paper's residual dropout, for SFT only
            if isinstance(m, torch.nn.Dropout):
                m.p = args.dropout
        metrics["history"], metrics["selected_epoch"] = sft(run, model, enc, data, state)
    except Stop as e:
        return stopped(e, print)
    metrics["losses"] = run["losses"]
    if rank > 0:
        return  # rank 0 evaluates and writes
    save_checkpoint(os.path.join(args.out, "model.pt"), model, enc, "policy", data=trained_on(args))  # dropout 0

    if data["gold"]:  # base vs SFT on held-out test prompts, judged by the gold labeler
        print(f"[eval] base and SFT on {len(data['test'])} test prompts", flush=True)
        sft_eval = evaluate_model(model.eval(), enc, data["test"], seed=args.seed + 1)
        model.load_state_dict(base_state)
        base_eval = evaluate_model(model.eval(), enc, data["test"], seed=args.seed + 1)
        for name, ev in (("base", base_eval), ("sft", sft_eval)):
            metrics.update({f"{name}_{k}": v for k, v in ev["report"].items()})
            metrics.update({f"{name}_greedy_{k}": v for k, v in ev["greedy_report"].items()})
            metrics[f"{name}_truncated_rate"] = ev["truncated_rate"]
        wr = win_rate(data["test"], sft_eval["responses"], base_eval["responses"])
        metrics.update(sft_win_rate_vs_base=wr["win_rate"], sft_win_rate_vs_base_ci95=wr["win_rate_ci95"],
                       tie_rate_vs_base=wr["tie_rate"],
                       sft_greedy_win_rate_vs_base=win_rate(data["test"], sft_eval["greedy_responses"],
                                                            base_eval["greedy_responses"])["win_rate"])
        metrics["demo_gold_score"] = gold_report([d["prompt"] for d in data["demos"]],
                                                 [d["response"] for d in data["demos"]])["gold_score"]
        metrics["n_eval_prompts"] = len(data["test"])
    metrics["wall_seconds"] = time.time() - t0
    path = write_metrics(args.out, metrics)
    keys = ["base_gold_score", "sft_gold_score", "demo_gold_score", "sft_win_rate_vs_base", "tie_rate_vs_base",
            "base_toxic_rate", "sft_toxic_rate", "base_hallucination_rate", "sft_hallucination_rate",
            "base_constraint_rate", "sft_constraint_rate", "base_refusal_rate_known", "sft_refusal_rate_known",
            "wall_seconds"]
    print("\n".join(f"  {k:26s} {metrics[k]:.3f}" for k in keys if k in metrics))
    print(f"wrote {args.out}/base.pt, model.pt, {path}")


if __name__ == "__main__":
    exit_on_user_error(main)
