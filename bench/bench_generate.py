"""KV-cache vs cache-free generation, and training throughput (fp32, bf16 autocast) and the fp32 step's
profile by operator, of the default model on this machine.

    python bench/bench_generate.py            # prints a table; medians of --reps runs side by side
"""
import argparse
import statistics
import time

import torch

from nanorlhf.distributed import get_device
from nanorlhf.model import GPT, GPTConfig, generate
from nanorlhf.tokenizer import get_tokenizer


def median_time(fn, reps):
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=64, help="prompts per generate call")
    ap.add_argument("--prompt-len", type=int, default=32, help="prompt tokens")
    ap.add_argument("--new-tokens", type=int, default=64, help="tokens generated per prompt")
    ap.add_argument("--reps", type=int, default=5, help="repetitions; the median is reported")
    ap.add_argument("--top", type=int, default=10, help="operators listed in the training step's profile")
    args = ap.parse_args()
    device = get_device()
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=get_tokenizer().n_vocab)  # the default model of train_sft.py
    model = GPT(cfg).to(device).eval()
    prompts = [torch.randint(0, cfg.vocab_size, (args.prompt_len - i % 8,)).tolist() for i in range(args.batch)]
    eot = cfg.vocab_size - 1  # (an untrained model rarely samples it: rows run to full length)
    rows = []
    for use_cache in (True, False):
        fn = lambda: generate(model, prompts, args.new_tokens, eot_id=eot, generator=torch.Generator(device).manual_seed(0),
                              use_cache=use_cache)
        fn()  # warm-up
        rows.append((use_cache, median_time(fn, args.reps)))
    print(f"device {device}, {model.num_params():,} parameters, {torch.get_num_threads()} threads")
    print(f"\n| generation ({args.batch} prompts x {args.new_tokens} new tokens) | median s | tokens/s |")
    print("|---|---|---|")
    for use_cache, t in rows:
        print(f"| {'KV cache' if use_cache else 'no cache'} | {t:.3f} | {args.batch * args.new_tokens / t:,.0f} |")
    print(f"\nKV-cache speed-up: {rows[1][1] / rows[0][1]:.1f}x")

    # Training throughput: forward + backward + AdamW step, batch 32 x 128, fp32 and bf16 autocast.
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, cfg.vocab_size, (32, 129), device=device)
    print("\n| training step (32 x 128 tokens) | median s/step | tokens/s |\n|---|---|---|")
    steps = {}
    for dtype in (torch.float32, torch.bfloat16):
        def step():
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                logits = model(x[:, :-1])
            loss = torch.nn.functional.cross_entropy(logits.float().view(-1, cfg.vocab_size), x[:, 1:].reshape(-1))
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
        step()
        t = median_time(step, args.reps * 2)
        print(f"| {'fp32' if dtype == torch.float32 else 'bf16 autocast'} | {t:.3f} | {32 * 128 / t:,.0f} |")
        steps[dtype] = step
    # Where a fp32 step's time goes: the operators with the most self CPU time over --reps steps.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(args.reps):
            steps[torch.float32]()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    print("\n| fp32 step: operator | calls/step | self CPU ms/step | share |\n|---|---|---|---|")
    for e in ops[:args.top]:
        print(f"| {e.key} | {e.count / args.reps:.0f} | {e.self_cpu_time_total / 1e3 / args.reps:.1f} | "
              f"{e.self_cpu_time_total / total:.1%} |")


if __name__ == "__main__":
    main()
