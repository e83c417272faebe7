"""
SFT -> RM -> PPO on a GPT-2-small-shaped Hugging Face folder, on CPU, fused log-probs on and off.

    python bench/gpt2_small.py                  # 12 x 768, V = 50,257, block 1,024: ~10 minutes on 2 cores
    python bench/gpt2_small.py --small          # 2 x 64, the same 50,257 vocabulary: the committed test's size

Writes, under --out (default a temporary folder):
  gpt2/   a Hugging Face GPT-2 folder: config.json, model.safetensors (random weights, HF names and the
          Conv1D layout), and a byte-level BPE as vocab.json + merges.txt. No download: the BPE is
          trained on local text (this repository's own README and sources) and then filled up to V with
          merges no text needs (pairs of earlier tokens), so that the vocabulary is GPT-2's size;
          <|endoftext|> is the last id, as in GPT-2. --pad-to 50304 pads the embedding as nanoGPT does
          (the loader cuts it back).
  data/   chat demonstrations (demos.jsonl, "messages"), Anthropic HH comparisons (comparisons.jsonl,
          "chosen"/"rejected"), RL prompts and pretraining text for the ptx term.
then runs `train_sft.py --init gpt2 --data data`, `train_rm.py`, `train_ppo.py` for a few steps each,
once per mode (NANORLHF_FUSED_LOGPROBS=1 and =0), and prints seconds per step and the peak resident
memory of each stage (the child's own ru_maxrss, from os.wait4). Seconds per step are the whole stage's
wall time divided by its steps, so model loading and the final evaluation are in them.
"""
import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from nanorlhf.data import write_jsonl  # noqa: E402
from nanorlhf.tokenizer import EOT, bytes_to_unicode, train_bpe  # noqa: E402


def local_text(limit=400_000):
    """Text that is already here: the README, docs and Python sources of this repository."""
    chunks = []
    for folder, _, files in sorted(os.walk(ROOT)):
        if any(part.startswith(".") or part in ("out", "__pycache__") for part in folder[len(ROOT):].split(os.sep)):
            continue
        for f in sorted(files):
            if f.endswith((".py", ".md")):
                with open(os.path.join(folder, f), encoding="utf-8", errors="replace") as fh:
                    chunks.append(fh.read())
    text = "\n".join(chunks)[:limit]
    return [line for line in text.splitlines() if line.strip()]


def build_bpe(V, trained=2000):
    """Byte-level BPE of V entries in merge order: 256 bytes, up to `trained` merges learned on local text,
    filler merges (an earlier token joined with another) up to V - 1, then <|endoftext|> = V - 1.
    Returns (vocab {unicode spelling: id}, merges [(left, right)] in id order)."""
    u = bytes_to_unicode()
    spell = lambda b: "".join(u[x] for x in b)  # noqa: E731
    ranks = train_bpe(local_text(), min(V - 1, trained))
    toks = sorted(ranks, key=ranks.get)  # bytes, in id order
    merges = []
    for t in toks[256:]:  # the pair whose merge made t: BPE on t's bytes with the ranks learned before it
        parts, r = [bytes([b]) for b in t], ranks[t]
        while len(parts) > 2:
            cands = [(ranks.get(parts[i] + parts[i + 1], r), i) for i in range(len(parts) - 1)]
            best, i = min(cands)
            if best >= r:
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        merges.append((parts[0], b"".join(parts[1:])))
    rng = random.Random(0)
    seen = set(toks)
    while len(toks) < V - 1:  # filler: valid merges no text of the bench needs
        a, b = toks[rng.randrange(256, len(toks)) if len(toks) > 256 else rng.randrange(256)], toks[rng.randrange(len(toks))]
        if a + b not in seen and len(a + b) <= 16:
            seen.add(a + b)
            toks.append(a + b)
            merges.append((a, b))
    vocab = {spell(t): i for i, t in enumerate(toks)}
    vocab[EOT] = len(toks)
    return vocab, [(spell(a), spell(b)) for a, b in merges]


def write_safetensors(path, tensors):
    """The safetensors layout: 8-byte little-endian header length, JSON header, raw fp32 data."""
    header, offset, blobs = {}, 0, []
    for name, t in tensors.items():
        b = t.contiguous().float().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        offset += len(b)
        blobs.append(b)
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h)
        for b in blobs:
            f.write(b)


def write_gpt2_folder(folder, V=50257, C=768, n_layer=12, n_head=12, n_positions=1024, pad_to=None):
    """A Hugging Face GPT-2 folder of this shape with random weights (GPT-2's init scale)."""
    os.makedirs(folder, exist_ok=True)
    vocab, merges = build_bpe(V)
    assert len(vocab) == V
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(f"{a} {b}" for a, b in merges) + "\n")
    rows = pad_to or V
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump({"model_type": "gpt2", "vocab_size": rows, "n_positions": n_positions, "n_ctx": n_positions,
                   "n_embd": C, "n_layer": n_layer, "n_head": n_head, "architectures": ["GPT2LMHeadModel"],
                   "bos_token_id": V - 1, "eos_token_id": V - 1}, f)
    g = torch.Generator().manual_seed(0)
    rnd = lambda *s, std=0.02: torch.randn(*s, generator=g) * std  # noqa: E731
    sd = {"wte.weight": rnd(rows, C), "wpe.weight": rnd(n_positions, C, std=0.01),
          "ln_f.weight": torch.ones(C), "ln_f.bias": torch.zeros(C)}
    for i in range(n_layer):
        p = f"h.{i}."
        sd.update({p + "ln_1.weight": torch.ones(C), p + "ln_1.bias": torch.zeros(C),
                   p + "ln_2.weight": torch.ones(C), p + "ln_2.bias": torch.zeros(C),
                   p + "attn.c_attn.weight": rnd(C, 3 * C), p + "attn.c_attn.bias": torch.zeros(3 * C),
                   p + "attn.c_proj.weight": rnd(C, C, std=0.02 / (2 * n_layer) ** 0.5), p + "attn.c_proj.bias": torch.zeros(C),
                   p + "mlp.c_fc.weight": rnd(C, 4 * C), p + "mlp.c_fc.bias": torch.zeros(4 * C),
                   p + "mlp.c_proj.weight": rnd(4 * C, C, std=0.02 / (2 * n_layer) ** 0.5), p + "mlp.c_proj.bias": torch.zeros(C)})
    write_safetensors(os.path.join(folder, "model.safetensors"), sd)


QUESTIONS = ["How do I boil an egg?", "What is a prime number?", "Name three rivers in Europe.",
             "Why is the sky blue?", "How do plants make food?", "What does a compiler do?",
             "Give me a tip for sleeping better.", "How far is the Moon?"]
ANSWERS = ["Put it in boiling water for about nine minutes, then cool it in cold water.",
           "A whole number above one whose only divisors are one and itself, like 7 or 13.",
           "The Danube, the Rhine and the Loire.", "Air scatters blue light more than red light.",
           "By photosynthesis: light, water and carbon dioxide become sugar and oxygen.",
           "It translates source code into machine code a computer can run.",
           "Keep a regular bedtime and avoid screens for an hour before it.", "About 384,000 kilometres on average."]


def write_data(folder, n_demos, n_comparisons, n_prompts):
    """Chat demonstrations, Anthropic HH comparisons, RL prompts and pretraining text (data.py's formats)."""
    q = lambda i: f"{QUESTIONS[i % len(QUESTIONS)]} (question {i})"  # noqa: E731
    a = lambda i: ANSWERS[i % len(ANSWERS)]  # noqa: E731
    write_jsonl(os.path.join(folder, "demos.jsonl"), [
        {"messages": [{"role": "system", "content": "You are a helpful assistant."},
                      {"role": "user", "content": q(i)}, {"role": "assistant", "content": a(i)}]}
        for i in range(n_demos)])
    write_jsonl(os.path.join(folder, "comparisons.jsonl"), [
        {"chosen": f"\n\nHuman: {q(i)}\n\nAssistant: {a(i)}",
         "rejected": f"\n\nHuman: {q(i)}\n\nAssistant: {a(i + 3)}"} for i in range(n_comparisons)])
    write_jsonl(os.path.join(folder, "rl_prompts.jsonl"), [{"prompt": q(1000 + i)} for i in range(n_prompts)])
    write_jsonl(os.path.join(folder, "pretrain.jsonl"), [{"text": line} for line in local_text(100_000)[:2000]])


def run_stage(cmd, env):
    """Run one script; (seconds, peak RSS MiB of that child alone, stdout)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({p.returncode}):\n{out[-4000:]}")
    return time.perf_counter() - t0, usage.ru_maxrss / 1024, out  # Linux: ru_maxrss in KiB


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", help="working folder (default: a temporary one)")
    ap.add_argument("--small", action="store_true", help="2 layers, width 64, 2 heads, block 256: the test's size")
    ap.add_argument("--n-layer", type=int, default=12)
    ap.add_argument("--n-embd", type=int, default=768)
    ap.add_argument("--n-head", type=int, default=12)
    ap.add_argument("--vocab", type=int, default=50257)
    ap.add_argument("--block", type=int, default=1024)
    ap.add_argument("--pad-to", type=int, help="embedding rows in the folder, e.g. 50304 (cut on load)")
    ap.add_argument("--sft-steps", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=8, help="SFT sequences / RM comparisons per step")
    ap.add_argument("--rm-steps", type=int, default=4)
    ap.add_argument("--ppo-iterations", type=int, default=2)
    ap.add_argument("--rollout-size", type=int, default=8)
    ap.add_argument("--modes", default="1,0", help="NANORLHF_FUSED_LOGPROBS values to run, in order")
    args = ap.parse_args(argv)
    if args.small:
        args.n_layer, args.n_embd, args.n_head, args.block = 2, 64, 2, 256
    out = args.out or tempfile.mkdtemp(prefix="gpt2_small_")
    folder, data = os.path.join(out, "gpt2"), os.path.join(out, "data")
    t0 = time.perf_counter()
    write_gpt2_folder(folder, args.vocab, args.n_embd, args.n_layer, args.n_head, args.block, args.pad_to)
    write_data(data, args.sft_steps * args.batch_size, args.rm_steps * args.batch_size, 4 * args.rollout_size)
    print(f"folder and data in {out} ({time.perf_counter() - t0:.0f} s): {args.n_layer} x {args.n_embd}, "
          f"{args.n_head} heads, V = {args.vocab}" + (f" padded to {args.pad_to}" if args.pad_to else ""), flush=True)
    py = [sys.executable]
    rows = []
    for mode in args.modes.split(","):
        env = {**os.environ, "NANORLHF_FUSED_LOGPROBS": mode, "PYTHONPATH": ROOT}
        env.pop("TRITON_INTERPRET", None)  # the scripts' own CPU path
        o = os.path.join(out, f"run{mode}")
        stages = [
            ("sft", args.sft_steps, py + ["train_sft.py", "--init", folder, "--data", data, "--out", f"{o}/sft",
                                          "--epochs", "1", "--batch-size", str(args.batch_size), "--n-val", "1",
                                          "--n-eval", "1", "--dropout", "0"]),
            ("rm", args.rm_steps, py + ["train_rm.py", "--sft", f"{o}/sft/model.pt", "--data", data, "--out", f"{o}/rm",
                                        "--epochs", "1", "--batch-size", str(args.batch_size), "--n-val", "1"]),
            ("ppo", args.ppo_iterations, py + ["train_ppo.py", "--sft", f"{o}/sft/model.pt", "--rm", f"{o}/rm/model.pt",
                                               "--data", data, "--out", f"{o}/ppo", "--iterations", str(args.ppo_iterations),
                                               "--rollout-size", str(args.rollout_size), "--minibatch-size",
                                               str(args.rollout_size // 2), "--ppo-epochs", "1", "--ptx-batch", "2",
                                               "--max-new-tokens", "16", "--n-eval", "1"]),
        ]
        for name, steps, cmd in stages:
            sec, rss, log = run_stage(cmd, env)
            done = re.findall(r"step (\d+)/(\d+)", log)
            n = int(done[-1][0]) if done else steps
            rows.append((name, "fused" if mode == "1" else "plain", n, sec / max(n, 1), rss))
            print(f"  {name} fused={mode}: {n} steps in {sec:.1f} s, peak RSS {rss:.0f} MiB", flush=True)
    print(f"\n| stage | log-probs | steps | s / step | peak RSS MiB |  ({args.n_layer} x {args.n_embd}, V = {args.vocab})")
    print("|---|---|---:|---:|---:|")
    for name, mode, n, sps, rss in sorted(rows, key=lambda r: (["sft", "rm", "ppo"].index(r[0]), r[1])):
        print(f"| {name} | {mode} | {n} | {sps:.2f} | {rss:.0f} |")
    return rows


if __name__ == "__main__":
    main()
