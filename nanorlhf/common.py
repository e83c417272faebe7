"""Helpers the three scripts share, written once: device and precision, checkpoints, batching,
progress lines, metrics."""
import json
import math
import os
import random
import time
from contextlib import nullcontext
from dataclasses import asdict

import numpy as np
import torch
import torch.distributed as dist

from nanorlhf.losses import lm_loss
from nanorlhf.model import GPT, GPTConfig, from_pretrained_gpt2
from nanorlhf.tokenizer import PROMPT, RESPONSE, encode, fingerprint, get_tokenizer


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def get_device():
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# -----------------------------------------------------------------------------
# Several processes: PyTorch's DistributedDataParallel under torchrun (gloo on CPU, nccl on CUDA)

def ddp_setup():
    """(rank, world_size, device). Under torchrun (RANK set) joins the process group; alone, (0, 1, device)."""
    if "RANK" not in os.environ:
        return 0, 1, get_device()
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(int(os.environ["LOCAL_RANK"]))
    return dist.get_rank(), dist.get_world_size(), torch.device(f"cuda:{os.environ['LOCAL_RANK']}" if cuda else "cpu")


def ddp_wrap(model, world_size):
    return torch.nn.parallel.DistributedDataParallel(model) if world_size > 1 else model


def all_mean(x, world_size):
    """Mean of a float over ranks (metrics and logs agree on every rank)."""
    if world_size == 1:
        return float(x)
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t)
    return t.item() / world_size


def all_sum(x, world_size):
    if world_size == 1:
        return float(x)
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t)
    return t.item()


def all_min(x, world_size):
    if world_size == 1:
        return x
    t = torch.tensor(float(x), dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return t.item()


def gather_objects(obj, world_size):
    """[obj of rank 0, obj of rank 1, ...] on every rank."""
    if world_size == 1:
        return [obj]
    out = [None] * world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world_size):
    if world_size > 1:
        dist.barrier()


def autocast(device):
    """bf16 autocast on GPUs. On CPU fp32 by default: at this model's width (128) bf16 matmuls and
    SDPA's bf16 backward measured slower than fp32 on the 2-core machine (bench/bench_generate.py);
    NANORLHF_BF16=1 turns it on anyway."""
    if device.type == "cuda" or os.environ.get("NANORLHF_BF16") == "1":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


# -----------------------------------------------------------------------------
# Checkpoints: a dict of tensors and plain values, so loading needs no unpickling of objects.

def save_checkpoint(path, model, enc, kind, **extra):
    """Weights, config, and the tokenizer's name and fingerprint; written atomically (save_state)."""
    save_state(path, {"config": asdict(model.config), "model": model.state_dict(), "tokenizer": enc.name,
                      "tokenizer_fingerprint": fingerprint(enc), "kind": kind, **extra})


def save_state(path, state):
    """A resumable training state (model, optimizer, RNG, step...): tensors and plain values only."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_state(path):
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--resume: no saved state at {path} (nothing to resume; drop --resume)")
    return torch.load(path, map_location="cpu", weights_only=True)


def check_finite(loss, stage, step, grad_norm=None):
    """The NaN/inf guard, called between backward and the optimizer step: stop before a bad update,
    so the last checkpoint stays the last good one."""
    for name, x in (("loss", loss), ("gradient norm", grad_norm)):
        if x is not None and not torch.isfinite(x):
            raise FloatingPointError(f"[{stage}] non-finite {name} ({x.item()}) at step {step + 1}: stopped before "
                                     "the update; the last saved checkpoint is untouched. Try a lower learning rate.")


def load_checkpoint(path, kind=None):
    """Load our checkpoint (policy or reward) or, for a directory with config.json, a Hugging Face
    GPT-2. `kind` checks that a policy was not given where a reward model is expected, or the other
    way round. Returns (model, tokenizer, checkpoint dict); the tokenizer is checked against the
    one the model was trained with."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        model, ckpt = from_pretrained_gpt2(path), {"kind": "policy", "tokenizer": "gpt2"}
    else:
        if os.path.isdir(path):
            path = os.path.join(path, "model.pt")
        if not os.path.isfile(path):
            raise FileNotFoundError(f"checkpoint not found: {path}")
        try:  # weights_only: tensors and plain containers only, never arbitrary code
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise ValueError(f"{path}: not a loadable nanorlhf checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
        if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
            raise ValueError(f"{path}: not a nanorlhf checkpoint (no config/model entries)")
        model = GPT(GPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
    if kind is not None and ckpt.get("kind") != kind:
        raise ValueError(f"{path}: is a {ckpt.get('kind')} checkpoint, but a {kind} checkpoint is expected here")
    enc = get_tokenizer(ckpt["tokenizer"])
    if ckpt.get("tokenizer_fingerprint", fingerprint(enc)) != fingerprint(enc):
        raise ValueError(f"{path}: was trained with another version of the {ckpt['tokenizer']!r} tokenizer "
                         "(its ranks changed since); retrain from the base model or restore the old ranks file")
    if model.config.vocab_size < enc.n_vocab:
        raise ValueError(f"{path}: vocabulary {model.config.vocab_size} is smaller than tokenizer "
                         f"{ckpt['tokenizer']!r}'s {enc.n_vocab}")
    return model, enc, ckpt


def to_scalar_head(policy):
    """InstructGPT's RM: the SFT model with the unembedding removed and a scalar output."""
    cfg = GPTConfig(**{**asdict(policy.config), "scalar_head": True})
    rm = GPT(cfg)
    missing, _ = rm.load_state_dict(policy.state_dict(), strict=False)
    assert set(missing) == {"score_head.weight", "score_head.bias"}, missing
    return rm


# -----------------------------------------------------------------------------
# Examples and batches

def encode_prompt(enc, prompt):
    return encode(enc, PROMPT + prompt + RESPONSE)


def encode_example(enc, prompt, response):
    """(ids, n_prompt): <|prompt|> x <|response|> y <|endoftext|>; loss goes on ids[n_prompt:]."""
    p = encode_prompt(enc, prompt)
    return p + encode(enc, response) + [enc.eot_token], len(p)


def pad_right(seqs, pad, T=None):
    """List of id lists -> (ids (B, T), lengths (B,)), right-padded."""
    T = T or max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s[:T], dtype=torch.long)
    return ids, torch.tensor([min(len(s), T) for s in seqs])


def heldout_stream(enc, docs, every=20):
    """Pretraining text as two token streams (documents joined by end-of-text): every 20th
    document is held out, to measure the "alignment tax" on text neither pretraining nor ptx saw."""
    streams = ([], [])
    for i, doc in enumerate(docs):
        streams[i % every == 0].extend(encode(enc, doc) + [enc.eot_token])
    return tuple(np.array(s, dtype=np.int64) for s in streams)


def pretrain_batch(stream, batch_size, T, rng):
    """(B, T+1) random windows of a token stream: inputs [:, :-1], targets [:, 1:]."""
    if len(stream) <= T + 1:
        raise ValueError(f"pretraining text has {len(stream)} tokens, fewer than one window of {T + 1}")
    starts = rng.integers(0, len(stream) - T - 1, batch_size)
    return torch.from_numpy(np.stack([stream[s:s + T + 1] for s in starts]))


@torch.no_grad()
def pretrain_loss(model, stream, device, n_windows=64, T=128):
    """Mean next-token loss on fixed windows of held-out pretraining text."""
    was_training = model.training
    model.eval()
    xy = pretrain_batch(stream, n_windows, min(T, len(stream) - 2), np.random.default_rng(1234)).to(device)
    losses = []
    for i in range(0, n_windows, 16):
        with autocast(device):
            logits = model(xy[i:i + 16, :-1])
        losses.append(lm_loss(logits.float(), xy[i:i + 16, 1:], torch.ones_like(xy[i:i + 16, 1:], dtype=torch.bool)).item())
    model.train(was_training)
    return float(np.mean(losses))


def lr_at(step, total, lr, warmup):
    """Linear warmup, then cosine decay to 10% of the peak (the paper decays SFT with a cosine)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


# -----------------------------------------------------------------------------
# Resumable runs: a state file every --save-every steps, and on Ctrl-C (the first one finishes the
# current step, saves, and exits; a second one kills). Batches are functions of (seed, step), so a
# resumed run sees exactly the data an uninterrupted one would.

STOP = {"requested": False}


def on_sigint(signum, frame):
    if STOP["requested"]:
        raise KeyboardInterrupt
    STOP["requested"] = True
    print("\n[interrupt] finishing this step, then saving a resumable state (Ctrl-C again to kill)", flush=True)


class Stop(Exception):
    """Raised between steps to save a state and exit cleanly (Ctrl-C or --stop-at-step)."""


def end_of_step(run, make_state):
    """Bookkeeping after every optimizer step: save `make_state()` (plus step count, RNG and the
    options that must not change) every --save-every steps; stop when asked to."""
    run["global_step"] += 1
    args = run["args"]
    stop = STOP["requested"] or run["global_step"] == args.stop_at_step
    if stop or run["global_step"] % args.save_every == 0:
        if run["rank"] == 0:
            save_state(os.path.join(args.out, "state.pt"), dict(
                make_state(), global_step=run["global_step"], rng=torch.get_rng_state(),
                args={k: getattr(args, k) for k in run["resume_keys"]}))
        barrier(run["world"])
    if stop:
        raise Stop(f"saved a resumable state at step {run['global_step']} to {args.out}/state.pt; "
                   "continue with the same command plus --resume")


def parse_run_args(ap, argv, unit, save_every, quick, positive):
    """The options every script shares (resume, periodic states, --quick), then parse. --quick only
    sets tiny defaults, so options given on the command line still win. `positive` names the
    options that must be > 0."""
    ap.add_argument("--resume", action="store_true", help="continue from --out/state.pt (saved every --save-every "
                    f"{unit} and on Ctrl-C)")
    ap.add_argument("--save-every", type=int, default=save_every, help=f"{unit} between resumable states")
    ap.add_argument("--stop-at-step", type=int, help=f"save a resumable state and stop after this many {unit}")
    ap.add_argument("--quick", action="store_true", help="tiny model / data: a smoke test in seconds")
    args = ap.parse_args(argv)
    if args.quick:
        ap.set_defaults(**quick)
        args = ap.parse_args(argv)
    for name in positive + ("save_every",):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def check_resume(state, args, keys):
    changed = {k: (state["args"][k], getattr(args, k)) for k in keys if state["args"][k] != getattr(args, k)}
    if changed:
        raise ValueError(f"--resume: these options differ from the saved run (saved, now): {changed}")


# -----------------------------------------------------------------------------
# Progress and metrics

class Progress:
    """Prints a line at most every `every` seconds: step, the caller's stats, tokens/s, elapsed, ETA.
    `quiet` silences it (ranks other than 0)."""

    def __init__(self, total, name, every=5.0, quiet=False):
        self.total, self.name, self.every, self.quiet = total, name, every, quiet
        self.t0 = self.last = time.time()
        self.tokens, self.first = 0, None

    def log(self, msg):
        if not self.quiet:
            print(f"[{self.name}] {msg}", flush=True)

    def step(self, i, tokens=0, **stats):
        self.first = i if self.first is None else self.first  # a resumed run starts past 0
        self.tokens += tokens
        now = time.time()
        if now - self.last < self.every and i + 1 < self.total:
            return
        self.last, el = now, now - self.t0
        eta = el / (i + 1 - self.first) * (self.total - i - 1)
        s = " ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in stats.items())
        self.log(f"step {i + 1}/{self.total} {s} | {self.tokens / el:,.0f} tok/s | {el:.0f}s elapsed, ETA {eta:.0f}s")


def write_metrics(out_dir, metrics):
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, "metrics.json")
    with open(path + ".tmp", "w") as f:
        json.dump(metrics, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)
    return path
