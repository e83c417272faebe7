"""What every training script does around its algorithm: seeding, precision, the learning-rate
schedule, the NaN guard, shared options, resumable runs (periodic states, Ctrl-C, --resume),
progress lines and metrics."""
import json
import math
import os
import random
import signal
import time
from contextlib import nullcontext

import numpy as np
import torch

from nanorlhf.checkpoint import save_state
from nanorlhf.distributed import barrier
from nanorlhf.errors import UserError


def seed_everything(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def autocast(device):
    """bf16 autocast on GPUs. On CPU fp32 by default: at this model's width (128) bf16 matmuls and
    SDPA's bf16 backward measured slower than fp32 on the 2-core machine (bench/bench_generate.py);
    NANORLHF_BF16=1 turns it on anyway."""
    if device.type == "cuda" or os.environ.get("NANORLHF_BF16") == "1":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def lr_at(step, total, lr, warmup):
    """Linear warmup, then cosine decay to 10% of the peak (the paper decays SFT with a cosine)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))


def check_finite(loss, stage, step, grad_norm=None):
    """The NaN/inf guard, called between backward and the optimizer step: stop before a bad update,
    so the last checkpoint stays the last good one."""
    for name, x in (("loss", loss), ("gradient norm", grad_norm)):
        if x is not None and not torch.isfinite(x):
            raise UserError(f"[{stage}] non-finite {name} ({x.item()}) at step {step + 1}: stopped before "
                            "the update; the last saved checkpoint is untouched. Try a lower learning rate.")


# -----------------------------------------------------------------------------
# Resumable runs: a state file every --save-every steps, and on Ctrl-C or SIGTERM (the first one
# finishes the current step, saves, and exits with 128 + the signal's number, 130 for Ctrl-C, as
# shells do, so `train_sft.py && train_rm.py` stops; a second one kills). Batches are functions of
# (seed, step), so a resumed run sees exactly the data an uninterrupted one would.

STOP = {"requested": False, "signal": None}


def on_sigint(signum, frame):
    if STOP["requested"]:
        raise KeyboardInterrupt
    STOP["requested"], STOP["signal"] = True, signum
    print("\n[interrupt] finishing this step, then saving a resumable state (Ctrl-C again to kill)", flush=True)


def catch_signals():
    """Ctrl-C (SIGINT) and SIGTERM (a scheduler's stop) end the run at the next step boundary."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_sigint)


class Stop(Exception):
    """Raised between steps to save a state and exit cleanly (Ctrl-C or --stop-at-step)."""


def stopped(e, log=print):
    """The end of a run stopped between steps (the state is saved): say so; after a signal, exit
    with 128 + its number (130 for Ctrl-C), so a shell chain does not go on to the next stage."""
    log(f"[stop] {e}")
    if STOP["signal"] is not None:
        raise SystemExit(128 + STOP["signal"])


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
    ap.add_argument("--debug", action="store_true", help="show the traceback of a user error (or NANORLHF_DEBUG=1)")

    def error(message):  # one line like every other user error (argparse would print its usage first)
        raise UserError(message)
    ap.error = error
    args = ap.parse_args(argv)
    if args.quick:  # its own folders, so a smoke test never overwrites a real run (out/sft -> out/quick/sft)
        ap.set_defaults(**{a.dest: "out/quick/" + a.default[4:] for a in ap._actions
                           if isinstance(a.default, str) and a.default.startswith("out/")}, **quick)
        args = ap.parse_args(argv)
        print(f"[quick] a smoke test at toy size, writing to {args.out}: its numbers mean nothing", flush=True)
    for name in positive + ("save_every",):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be positive, got {getattr(args, name)}")
    return args


def check_resume(state, args, keys):
    changed = [f"--{k.replace('_', '-')} saved {state['args'][k]!r}, now {getattr(args, k)!r}"
               for k in keys if state["args"][k] != getattr(args, k)]
    if changed:
        raise UserError(f"--resume: these options differ from the saved run: {'; '.join(changed)} (give the saved "
                        "values, or start afresh in another --out)")


# -----------------------------------------------------------------------------
# Progress and metrics

class Progress:
    """Prints a line at most every `every` seconds: step, the caller's stats, `unit`s/s (what step(tokens=)
    counts), elapsed, ETA. `quiet` silences it (ranks other than 0)."""

    def __init__(self, total, name, every=5.0, quiet=False, unit="tok"):
        self.total, self.name, self.every, self.quiet, self.unit = total, name, every, quiet, unit
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
        self.log(f"step {i + 1}/{self.total} {s} | {self.tokens / el:,.0f} {self.unit}/s | {el:.0f}s elapsed, ETA {eta:.0f}s")


def trained_on(args):
    """The --data folder, absolute (checkpoints and metrics record it: evaluate and report follow
    the data a run was trained on), or None for the embedded world."""
    return os.path.abspath(args.data) if args.data else None


def print_metrics(metrics, keys, against=None, width=24):
    """One line per key present: its value, and for a figure that can surprise, what it is measured
    against (`against`: key -> note)."""
    for k in keys:
        if k in metrics:
            note = f"  ({against[k]})" if against and k in against else ""
            print(f"  {k:{width}s} {metrics[k]:.3f}{note}")


def finite(x):
    """x without what does not exist: a non-finite float (a mean over no prompts, a CI of one value)
    is dropped from a dict and None in a list, so the file is strict JSON (no NaN, which strict
    parsers and our own data reader refuse)."""
    bad = lambda v: isinstance(v, float) and not math.isfinite(v)
    if isinstance(x, dict):
        return {k: finite(v) for k, v in x.items() if not bad(v)}
    if isinstance(x, (list, tuple)):
        return [None if bad(v) else finite(v) for v in x]
    return x


def write_json(path, obj, **kw):
    """Strict JSON (finite), written atomically."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(finite(obj), f, allow_nan=False, **kw)
    os.replace(path + ".tmp", path)
    return path


def write_metrics(out_dir, metrics):
    return write_json(os.path.join(out_dir, "metrics.json"), metrics, indent=2, sort_keys=True)
