"""Ours against what people would use instead, side by side on this machine (issue 12).

    flock /tmp/nanorlhf-cpu.lock .venv-peers/bin/python bench/peers.py --nanogpt /work/nanoGPT
    flock /tmp/nanorlhf-cpu.lock .venv-peers/bin/python bench/peers.py --nanogpt /work/nanoGPT --scaling

Peers, all at GPT-2 architecture (4 layers, width 192, 6 heads, vocabulary 4096, random init):
  train     one step (forward, loss, backward, clip, AdamW) on 16 x 256 tokens, fp32 and bf16
            autocast, 1 thread: nanoGPT's model.py (imported from --nanogpt, never copied here)
  generate  64 prompts x 32 tokens -> 32 new tokens, T=1, KV cache, 2 threads: Hugging Face
            GPT2LMHeadModel.generate
  ppo       one iteration (rollout of 64 episodes of 32 + 32 tokens, 4 epochs x 4 minibatches,
            fp32, 2 threads; plain PPO, no ptx): trl 1.12.0 PPOTrainer (its last PPO)
The peers live only in a separate environment (.venv-peers: torch, trl, transformers, accelerate,
datasets, and this package with `pip install -e .`), never in the project's dependencies.

Method: every measurement is a fresh process, alone on the machine; ours and the peer alternate
(A B A B ...) for --rounds rounds, so drift hits both. A worker warms up, then times --reps
repetitions and reports their median; the table shows the median over rounds and the ratio
peer time / our time (> 1: we are faster). Before each process the machine must be idle: if
another process uses the CPU the script stops with a one-line message instead of reporting.
`--scaling` repeats training step and PPO iteration at 4x and 16x the parameters and at 2x and
4x the sequence length, one round of one timed repetition each (to fit in ~10 minutes).
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

V = 4096  # equal vocabulary on both sides
BASE = dict(n_layer=4, n_embd=192, n_head=6)  # the GPT-2 shape
SCALES = {  # name -> (model shape, sequence multiplier); params counted by the workers
    "base": (BASE, 1),
    "4x params": (dict(n_layer=8, n_embd=320, n_head=8), 1),
    "16x params": (dict(n_layer=12, n_embd=512, n_head=8), 1),
    "2x seq": (BASE, 2),
    "4x seq": (BASE, 4),
}
TASKS = {  # name -> (peer, threads)
    "train fp32": ("nanoGPT", 1),
    "train bf16": ("nanoGPT", 1),
    "generate": ("HF generate", 2),
    "ppo": ("trl PPOTrainer", 2),
}


# -----------------------------------------------------------------------------
# Workers: one measurement per process. Each prints one line "RESULT {json}".

def make_train_step(impl, shape, T, bf16, nanogpt):
    import torch
    x = torch.randint(0, V, (16, T + 1), generator=torch.Generator().manual_seed(0))
    x, y = x[:, :-1].contiguous(), x[:, 1:].contiguous()  # (B, T) inputs and targets
    amp = torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16)
    if impl == "ours":
        from nanorlhf.losses import lm_loss
        from nanorlhf.model import GPT, GPTConfig
        model = GPT(GPTConfig(block_size=T, vocab_size=V, **shape))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
        ones = torch.ones_like(y, dtype=torch.bool)

        def loss_fn():  # exactly train_sft.py's pretraining step
            with amp:
                logits = model(x)
            return lm_loss(logits.float(), y, ones)
    else:
        sys.path.insert(0, nanogpt)
        import model as ng  # nanoGPT's model.py
        model = ng.GPT(ng.GPTConfig(block_size=T, vocab_size=V, dropout=0.0, bias=True, **shape))
        opt = model.configure_optimizers(0.1, 1e-4, (0.9, 0.95), "cpu")

        def loss_fn():  # nanoGPT's train.py step
            with amp:
                _, loss = model(x, y)
            return loss
    model.train()

    def step():
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return step, sum(p.numel() for p in model.parameters())


def make_generate(impl, shape, T):
    import torch
    g = torch.Generator().manual_seed(0)
    prompts = torch.randint(0, V - 1, (64, T), generator=g)
    if impl == "ours":
        from nanorlhf.model import GPT, GPTConfig, generate
        model = GPT(GPTConfig(block_size=2 * T, vocab_size=V, **shape)).eval()
        rows = prompts.tolist()
        return lambda: generate(model, rows, T, eot_id=V - 1, temperature=1.0,
                                generator=torch.Generator().manual_seed(1)), model.num_params()
    from transformers import GPT2Config, GPT2LMHeadModel
    model = GPT2LMHeadModel(GPT2Config(vocab_size=V, n_positions=2 * T, bos_token_id=V - 1, eos_token_id=V - 1,
                                       **hf_shape(shape))).eval()
    mask = torch.ones_like(prompts)

    def run():
        torch.manual_seed(1)
        with torch.no_grad():
            return model.generate(input_ids=prompts, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0,
                                  temperature=1.0, max_new_tokens=T, use_cache=True, pad_token_id=V - 1)
    return run, model.num_parameters()


def hf_shape(shape):
    return dict(n_layer=shape["n_layer"], n_embd=shape["n_embd"], n_head=shape["n_head"],
                resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)


class IdTokenizer:
    """Stands in for the BPE on our side: a prompt is its token ids written as numbers, so both
    PPOs read the very same 32-token prompts at vocabulary 4096."""
    eot_token = V - 1

    def encode(self, text, allowed_special=()):
        return [int(w) for w in text.replace("<|prompt|>", " ").replace("<|response|>", " ").split()]

    def decode(self, ids):
        return " ".join(map(str, ids))


def ppo_times(impl, shape, T, iterations):
    """Seconds per PPO iteration (first one is the warm-up, dropped by the caller)."""
    import torch
    g = torch.Generator().manual_seed(0)
    prompt_ids = torch.randint(1, V - 2, (256, T), generator=g).tolist()
    if impl == "ours":
        import train_ppo
        from nanorlhf.model import GPT, GPTConfig
        torch.manual_seed(0)
        cfg = GPTConfig(block_size=2 * T, vocab_size=V, **shape)
        policy, ref = GPT(cfg), GPT(cfg)
        ref.load_state_dict(policy.state_dict())
        rm, value = GPT(GPTConfig(**{**cfg.__dict__, "scalar_head": True})), None
        value = GPT(rm.config)
        value.load_state_dict(rm.state_dict())
        for m in (ref, rm):
            m.eval().requires_grad_(False)
        args = argparse.Namespace(seed=0, rollout_size=64, minibatch_size=16, ppo_epochs=4, temperature=1.0,
                                  max_new_tokens=T, truncated_score=-2.0, gamma=1.0, lam=0.95, clip=0.2, vf_clip=0.2,
                                  vf_coef=0.5, ptx_coef=0.0, ptx_batch=4)
        params = list(policy.parameters()) + list(value.parameters())
        opt = torch.optim.AdamW(params, lr=1e-5, betas=(0.9, 0.95), weight_decay=0.0, fused=True)  # as train_ppo.py
        texts = [" ".join(map(str, p)) for p in prompt_ids]
        device, times = torch.device("cpu"), []
        for it in range(iterations):
            t0 = time.perf_counter()
            roll, _ = train_ppo.rollout(args, it, 0, device, IdTokenizer(), texts, policy, ref, rm, value, 0.1)
            train_ppo.ppo_update(args, it, roll, policy, value, opt, params, None, device)
            times.append(time.perf_counter() - t0)
        return times, policy.num_params()
    import tempfile
    from datasets import Dataset
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from transformers import (GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel, PreTrainedTokenizerFast,
                              TrainerCallback)
    from trl.experimental.ppo import PPOConfig, PPOTrainer
    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(WordLevel({str(i): i for i in range(V)}, unk_token="0")),
                                  pad_token=str(V - 1), eos_token=str(V - 1))
    hf = GPT2Config(vocab_size=V, n_positions=2 * T, bos_token_id=V - 1, eos_token_id=V - 1, pad_token_id=V - 1,
                    num_labels=1, **hf_shape(shape))
    torch.manual_seed(0)
    policy, ref = GPT2LMHeadModel(hf), GPT2LMHeadModel(hf)
    rm, value = GPT2ForSequenceClassification(hf), GPT2ForSequenceClassification(hf)
    stamps = []

    class Clock(TrainerCallback):
        def on_train_begin(self, *a, **k):
            stamps.append(time.perf_counter())

        def on_step_end(self, *a, **k):
            stamps.append(time.perf_counter())
    with tempfile.TemporaryDirectory() as out:
        cfg = PPOConfig(output_dir=out, report_to="none", bf16=False, use_cpu=True, per_device_train_batch_size=64,
                        gradient_accumulation_steps=1, num_mini_batches=4, num_ppo_epochs=4, total_episodes=64 * iterations,
                        local_rollout_forward_batch_size=64, response_length=T, temperature=1.0, learning_rate=1e-5,
                        num_sample_generations=0, save_strategy="no", logging_strategy="no", disable_tqdm=True, seed=0)
        trainer = PPOTrainer(args=cfg, processing_class=tok, model=policy, ref_model=ref, reward_model=rm,
                             value_model=value, train_dataset=Dataset.from_dict({"input_ids": prompt_ids}),
                             callbacks=[Clock()])
        trainer.train()
    return [b - a for a, b in zip(stamps, stamps[1:])], policy.num_parameters()


def timed(fn, reps, warmups):
    """Seconds of each of `reps` calls of fn, after `warmups` untimed calls."""
    for _ in range(warmups):
        fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def worker(a):
    import torch
    torch.set_num_threads(a.threads)
    shape, mult = SCALES[a.scale]
    if a.task.startswith("train"):
        fn, n = make_train_step(a.impl, shape, 256 * mult, a.task == "train bf16", a.nanogpt)
        times = timed(fn, a.reps, warmups=2 if a.reps > 1 else 1)
    elif a.task == "generate":
        fn, n = make_generate(a.impl, shape, 32 * mult)
        times = timed(fn, a.reps, warmups=1)
    else:
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # train_ppo.py
        times, n = ppo_times(a.impl, shape, 32 * mult, a.reps + 1)
        times = times[1:]
    print("RESULT " + json.dumps(dict(median_s=statistics.median(times), times=times, params=n,
                                      threads=torch.get_num_threads())), flush=True)


# -----------------------------------------------------------------------------
# Driver: interleaved rounds, idle checks, medians, table and JSON

def cpu_jiffies():
    """(total, idle) CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v), v[3] + v[4]  # idle + iowait


def busy_cores(before, after):
    """Cores' worth of CPU used by everything between two cpu_jiffies() readings."""
    (t0, i0), (t1, i1) = before, after
    return (os.cpu_count() or 1) * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_until_idle(a):
    """Returns once others use at most --max-busy cores over a second; exits after --wait seconds."""
    deadline = time.time() + a.wait
    while True:
        before = cpu_jiffies()
        time.sleep(1.0)
        busy = busy_cores(before, cpu_jiffies())
        if busy <= a.max_busy:
            return
        if time.time() > deadline:
            sys.exit(f"bench/peers.py: another process is using {busy:.2f} cores (limit --max-busy {a.max_busy}, "
                     f"waited {a.wait:.0f} s); not reporting. Run it alone, under flock /tmp/nanorlhf-cpu.lock.")


def measure(a, task, impl, scale, reps):
    """One worker process on an idle machine. The machine's CPU time during the run, minus the
    worker's own, is what others used: above --max-busy the run is thrown away and repeated."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", task, impl, "--scale", scale, "--reps", str(reps),
           "--threads", str(TASKS[task][1]), "--nanogpt", a.nanogpt]
    for _ in range(3):
        wait_until_idle(a)
        before, ru0, t0 = cpu_jiffies(), resource.getrusage(resource.RUSAGE_CHILDREN), time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        ru1, wall = resource.getrusage(resource.RUSAGE_CHILDREN), time.time() - t0
        own = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / wall  # cores used by the worker
        others = busy_cores(before, cpu_jiffies()) - own
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
        if p.returncode or not lines:
            sys.exit(f"bench/peers.py: worker {task}/{impl}/{scale} failed:\n{p.stderr[-3000:]}")
        if others <= a.max_busy:
            return json.loads(lines[-1][7:])
        print(f"  other processes used {others:.2f} cores during {task}/{impl}: repeating it", file=sys.stderr)
    sys.exit(f"bench/peers.py: other processes kept using the CPU during {task}/{impl}; not reporting.")


def run_table(a, tasks, scales, rounds, reps):
    results = []
    for scale in scales:
        for task in tasks:
            runs = {"ours": [], "peer": []}
            for r in range(rounds):
                for impl in ("ours", "peer"):  # A B A B ...
                    runs[impl].append(measure(a, task, impl, scale, reps))
                    print(f"  [{scale} | {task} | round {r + 1}] {impl}: {runs[impl][-1]['median_s']:.3f} s",
                          file=sys.stderr, flush=True)
            ours = statistics.median(x["median_s"] for x in runs["ours"])
            peer = statistics.median(x["median_s"] for x in runs["peer"])
            results.append(dict(scale=scale, task=task, peer=TASKS[task][0], threads=TASKS[task][1], ours_s=ours,
                                peer_s=peer, ratio=peer / ours, ours_params=runs["ours"][0]["params"],
                                peer_params=runs["peer"][0]["params"], rounds=runs))
    return results


def print_table(results, scaling):
    head = "| scale | params (ours / peer) | " if scaling else "| "
    print(f"\n{head}task | peer | threads | ours (median s) | peer (median s) | peer / ours |")
    print("|---" * (head.count("|") + 5) + "|")
    for r in results:
        pre = f"| {r['scale']} | {r['ours_params'] / 1e6:.2f}M / {r['peer_params'] / 1e6:.2f}M | " if scaling else "| "
        print(f"{pre}{r['task']} | {r['peer']} | {r['threads']} | {r['ours_s']:.3f} | {r['peer_s']:.3f} | "
              f"{r['ratio']:.2f}x |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nanogpt", required=True, help="folder of a karpathy/nanoGPT checkout (its model.py is imported)")
    ap.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of: {', '.join(TASKS)}")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds (ours, peer) per task")
    ap.add_argument("--reps", type=int, default=5, help="timed repetitions per process (PPO: iterations)")
    ap.add_argument("--scaling", action="store_true", help="train fp32 and PPO at 4x/16x params and 2x/4x sequence")
    ap.add_argument("--max-busy", type=float, default=0.3, help="cores' worth of CPU others may use before we refuse")
    ap.add_argument("--wait", type=float, default=300, help="seconds to wait for an idle machine before refusing")
    ap.add_argument("--json", default="out/peers.json", help="where to write all measurements")
    ap.add_argument("--worker", nargs=2, metavar=("TASK", "IMPL"), help=argparse.SUPPRESS)
    ap.add_argument("--scale", default="base", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        a.task, a.impl = a.worker
        return worker(a)
    if not os.path.isfile(os.path.join(a.nanogpt, "model.py")):
        ap.error(f"--nanogpt {a.nanogpt}: no model.py there (point it at a karpathy/nanoGPT checkout)")
    tasks = a.tasks.split(",")
    if any(t not in TASKS for t in tasks):
        ap.error(f"--tasks {a.tasks}: choose from {', '.join(TASKS)}")
    if a.scaling:
        tasks = [t for t in tasks if t in ("train fp32", "ppo")]
        results = run_table(a, tasks, [s for s in SCALES if s != "base"], min(a.rounds, 1), min(a.reps, 1))
    else:
        results = run_table(a, tasks, ["base"], a.rounds, a.reps)
    print_table(results, a.scaling)
    os.makedirs(os.path.dirname(a.json) or ".", exist_ok=True)
    with open(a.json, "w") as f:
        json.dump(dict(argv=sys.argv, results=results), f, indent=1)
    print(f"\nwrote {a.json}")


if __name__ == "__main__":
    main()
