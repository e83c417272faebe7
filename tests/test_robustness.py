"""Runs must not be lost to a typo, a crash or a malformed line: clear errors that name the file,
line or argument; atomic checkpoints; exact resume; the NaN guard; several processes (torchrun)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from nanorlhf.checkpoint import load_checkpoint, load_state, save_checkpoint
from nanorlhf.data import write_jsonl
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}  # scripts use the torch path on CPU


def run(script, *args, ok=True, cmd=None):
    p = subprocess.run((cmd or [sys.executable]) + [os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                       text=True, env=ENV, cwd=ROOT, timeout=600)
    if ok:
        assert p.returncode == 0, f"{script} failed:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    else:
        assert p.returncode != 0, f"{script} should have failed:\n{p.stdout[-2000:]}"
    return p.stdout + p.stderr


@pytest.fixture(scope="module")
def ckpts(quick_root):
    """A quick SFT policy and RM (the session's, conftest.quick_root), read by the tests below."""
    return quick_root


def losses(path):
    with open(path) as f:
        return json.load(f)["losses"]


# -----------------------------------------------------------------------------
# Bad input: each case and the message it must produce

def test_bad_jsonl_names_file_and_line(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "demos.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    out = run("train_sft.py", "--quick", "--data", data, "--init", "nowhere.pt", "--out", tmp_path / "o", ok=False)
    assert "demos.jsonl:2: missing field 'response'" in out
    (data / "demos.jsonl").write_text("")
    assert "demos.jsonl: no records" in run("train_sft.py", "--quick", "--data", data, "--out", tmp_path / "o", ok=False)
    write_jsonl(data / "comparisons.jsonl", [{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 0]}])
    out = run("train_rm.py", "--quick", "--data", data, "--sft", "x.pt", "--out", tmp_path / "o", ok=False)
    assert "x.pt: checkpoint not found" in out  # the checkpoint is checked first ...


def test_bad_ranking_in_user_comparisons(tmp_path, ckpts):
    data = tmp_path / "data"
    write_jsonl(data / "comparisons.jsonl", [{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 2, 2]}])
    out = run("train_rm.py", "--quick", "--data", data, "--sft", ckpts / "sft/model.pt", "--out", tmp_path / "o", ok=False)
    assert "comparisons.jsonl:1:" in out and "permutation" in out  # ... then every line of the data


@pytest.mark.parametrize("script,args,message", [
    ("train_sft.py", ["--init", "missing/base.pt"], "missing/base.pt: checkpoint not found"),
    ("train_sft.py", ["--batch-size", "0"], "--batch-size must be positive, got 0"),
    ("train_sft.py", ["--batch-size", "5000"], "--batch-size 5000 x 1 process(es) exceeds the"),
    ("train_sft.py", ["--dropout", "1.5"], "--dropout must be in [0, 1), got 1.5"),
    ("train_sft.py", ["--resume"], "no saved state at"),
    ("train_rm.py", ["--sft", "RM"], "is a reward checkpoint, but a policy checkpoint is expected here"),
    ("train_rm.py", ["--k-min", "6", "--k-max", "4"], "need 2 <= --k-min <= --k-max, got 6, 4"),
    ("train_rm.py", ["--batch-size", "500"], "--batch-size 500 exceeds the"),
    ("train_ppo.py", ["--rm", "SFT"], "is a policy checkpoint, but a reward checkpoint is expected here"),
    ("train_ppo.py", ["--beta", "-0.1"], "--beta and --ptx-coef must be >= 0, got -0.1"),
    ("train_ppo.py", ["--rollout-size", "12", "--minibatch-size", "8"], "must be a multiple of --minibatch-size 8"),
    ("train_ppo.py", ["--rollout-size", "4000", "--minibatch-size", "8"], "--rollout-size 4000 exceeds the"),
    ("train_ppo.py", ["--temperature", "0"], "--temperature must be positive"),
])
def test_bad_arguments_fail_clearly(tmp_path, ckpts, script, args, message):
    paths = {"SFT": str(ckpts / "sft/model.pt"), "RM": str(ckpts / "rm/model.pt")}
    args = [paths.get(a, a) for a in args]
    defaults = {"train_sft.py": [], "train_rm.py": ["--sft", paths["SFT"]],
                "train_ppo.py": ["--sft", paths["SFT"], "--rm", paths["RM"]]}[script]
    out = run(script, "--quick", *defaults, *args, "--out", tmp_path / "o", ok=False)
    assert message in out, out[-2000:]


def test_mismatched_vocabulary_is_refused(tmp_path, ckpts):
    enc = get_tokenizer()
    other = GPT(GPTConfig(vocab_size=enc.n_vocab - 64, n_layer=1, n_head=2, n_embd=32, scalar_head=True))
    save_checkpoint(str(tmp_path / "rm.pt"), other, enc, "reward")  # (a larger one is padded: cut on load)
    out = run("train_ppo.py", "--quick", "--sft", ckpts / "sft/model.pt", "--rm", tmp_path / "rm.pt",
              "--out", tmp_path / "o", ok=False)
    assert f"rm.pt: vocabulary {enc.n_vocab - 64} is smaller than tokenizer 'nanorlhf''s {enc.n_vocab}" in out


def test_too_long_demonstrations_are_skipped_with_a_warning(tmp_path, ckpts):
    data = tmp_path / "data"
    write_jsonl(data / "demos.jsonl", [{"prompt": "Say hi.", "response": "Hi!"}] * 40 +
                [{"prompt": "Say hi.", "response": "hi " * 400}])
    out = run("train_sft.py", "--quick", "--data", data, "--init", ckpts / "sft/base.pt", "--out", tmp_path / "o")
    assert "warning: skipping 1 demonstrations longer than block_size" in out


# -----------------------------------------------------------------------------
# Checkpoints: atomic writes, exact resume, Ctrl-C, NaN guard

def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    """A process killed while it writes a checkpoint leaves the previous one whole. The writer's
    torch.save is slowed by a hook that announces when 1 MB of the new file is written and then
    waits, so the kill lands mid-write for certain; the partial file is there and unreadable."""
    path = tmp_path / "model.pt"
    enc = get_tokenizer()
    small = GPT(GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(str(path), small, enc, "policy")
    writer = f"""
import time
import torch
from nanorlhf.checkpoint import save_checkpoint
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

class Hook:  # the file object torch.save writes to: after 1 MB, say so and stall
    def __init__(self, f):
        self.f, self.n = f, 0
    def write(self, b):
        n = self.f.write(b)
        self.n += n
        if self.n > 2**20:
            self.f.flush()  # on disk, as a kill would find it
            print("mid-write", self.n, flush=True)
            time.sleep(600)
        return n
    def flush(self):
        self.f.flush()

save = torch.save
torch.save = lambda obj, f: save(obj, Hook(f))
big = GPT(GPTConfig(vocab_size={enc.n_vocab}, n_layer=2, n_head=4, n_embd=256))  # ~7 MB
save_checkpoint({str(path)!r}, big, get_tokenizer(), "policy")
"""
    p = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    line = p.stdout.readline()
    assert line.startswith("mid-write"), line
    p.kill()
    p.wait()
    partial = tmp_path / f"model.pt.tmp{p.pid}"  # save_state's temporary file, cut short
    assert partial.exists() and 2**20 <= partial.stat().st_size < 4 * 2**20
    with pytest.raises(Exception):
        torch.load(partial, weights_only=True)
    model, _, _ = load_checkpoint(str(path), kind="policy")  # the previous checkpoint, whole
    assert model.config.n_embd == 16
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), small.state_dict().values()))


def test_resume_gives_the_same_losses(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run("train_sft.py", "--quick", "--out", full)
    out = run("train_sft.py", "--quick", "--out", part, "--stop-at-step", 33)  # 30 pretraining + 3 SFT steps
    assert "saved a resumable state at step 33" in out and not (part / "model.pt").exists()
    run("train_sft.py", "--quick", "--out", part, "--resume")
    assert losses(full / "metrics.json") == losses(part / "metrics.json")
    assert "--resume: these options differ" in run("train_sft.py", "--quick", "--out", part, "--resume", "--lr", "1",
                                                   ok=False)


def test_ctrl_c_saves_a_resumable_state(tmp_path):
    args = ["--quick", "--pretrain-steps", "400", "--epochs", "1", "--out", str(tmp_path / "run")]
    p = subprocess.Popen([sys.executable, os.path.join(ROOT, "train_sft.py"), *args], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env=ENV, cwd=ROOT)
    for line in p.stdout:
        if "documents" in line:  # pretraining has started
            break
    time.sleep(1.0)
    p.send_signal(signal.SIGINT)
    out = p.stdout.read()
    assert p.wait(timeout=120) == 128 + signal.SIGINT, out  # 130, as shells report it: a chain stops here
    assert "saved a resumable state" in out
    step = load_state(str(tmp_path / "run/state.pt"))["global_step"]
    assert 0 < step < 400
    run("train_sft.py", *args, "--resume")
    assert len(losses(tmp_path / "run/metrics.json")["pretrain"]) == 400


def test_nan_guard_stops_and_keeps_the_last_good_state(tmp_path):
    out = run("train_sft.py", "--quick", "--lr", "1e30", "--save-every", "10", "--out", tmp_path, ok=False)
    assert "non-finite" in out and "at step" in out and "last saved checkpoint is untouched" in out
    state = load_state(str(tmp_path / "state.pt"))
    assert state["stage"] == "pretrain" and state["step"] == 30  # pretraining's last state, not a bad one
    assert all(torch.isfinite(v).all() for v in state["model"].values())
    assert not (tmp_path / "model.pt").exists()


# -----------------------------------------------------------------------------
# Several processes: torchrun with gloo on CPU

def torchrun():
    """Two processes; --standalone rendezvous on a free port, so no two runs ever share one."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]


def test_torchrun_sft_matches_one_process_with_twice_the_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run("train_sft.py", "--quick", "--dropout", "0", "--batch-size", "16", "--out", one)
    run("train_sft.py", "--quick", "--dropout", "0", "--batch-size", "8", "--out", two, cmd=torchrun())
    a, b = losses(one / "metrics.json"), losses(two / "metrics.json")
    for stage in ("pretrain", "sft"):
        assert len(a[stage]) == len(b[stage]) > 0
        torch.testing.assert_close(torch.tensor(a[stage]), torch.tensor(b[stage]), atol=1e-4, rtol=1e-4)


def state_dict(path):
    return torch.load(path, weights_only=True)["model"]


# The RM on the comparisons the ckpts fixture sampled (--data: the same data for any number of processes),
# 2 epochs of 5 steps of 8 prompts.
def rm_args(ckpts, out, batch_size=8):
    return ["--quick", "--data", ckpts / "rm", "--sft", ckpts / "sft/model.pt", "--epochs", 2, "--batch-size", batch_size,
            "--out", out]


@pytest.fixture(scope="module")
def rm_one(ckpts):
    out = ckpts / "rm_one"
    run("train_rm.py", *rm_args(ckpts, out))
    return out


def test_torchrun_rm_matches_one_process_with_twice_the_batch(tmp_path, ckpts, rm_one):
    run("train_rm.py", *rm_args(ckpts, tmp_path / "two", batch_size=4), cmd=torchrun())
    a, b = json.load(open(rm_one / "metrics.json")), json.load(open(tmp_path / "two/metrics.json"))
    assert len(a["losses"]) == len(b["losses"]) == 10 and a["n_pairs"] == b["n_pairs"] > 0
    torch.testing.assert_close(torch.tensor(b["losses"]), torch.tensor(a["losses"]), atol=1e-4, rtol=1e-4)
    one, two = state_dict(rm_one / "model.pt"), state_dict(tmp_path / "two/model.pt")
    for k in one.keys() - {"score_head.bias"}:  # the ranking loss ignores a shift of r: that gradient is rounding
        torch.testing.assert_close(two[k], one[k], atol=1e-4, rtol=1e-3, msg=lambda m: f"{k}: {m}")  # noise, which Adam scales up


def test_rm_resume_is_bit_exact(tmp_path, ckpts, rm_one):
    """Stopped in the second epoch and resumed: the same losses and the same weights, bit for bit."""
    out = run("train_rm.py", *rm_args(ckpts, tmp_path), "--stop-at-step", 7)
    assert "saved a resumable state at step 7" in out and not (tmp_path / "model.pt").exists()
    run("train_rm.py", *rm_args(ckpts, tmp_path), "--resume")
    assert json.load(open(tmp_path / "metrics.json"))["losses"] == json.load(open(rm_one / "metrics.json"))["losses"]
    full, resumed = state_dict(rm_one / "model.pt"), state_dict(tmp_path / "model.pt")
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


# PPO, 3 iterations, with an adaptive beta: a KL target so small that any positive KL is above it. At a
# learning rate of 1e-3 the policy leaves the reference fast, so later iterations see a positive KL.
def ppo_args(ckpts, out):
    return ["--quick", "--sft", ckpts / "sft/model.pt", "--rm", ckpts / "rm/model.pt", "--kl-target", "1e-9",
            "--lr", "1e-3", "--n-eval", 4, "--out", out]


@pytest.fixture(scope="module")
def ppo_full(ckpts):
    out = ckpts / "ppo_full"
    run("train_ppo.py", *ppo_args(ckpts, out))
    return out


def test_ppo_first_minibatch_ratio_is_exactly_one_at_every_iteration(ppo_full):
    """At iteration 0 the policy equals the reference; the check means something only after it."""
    curve = json.load(open(ppo_full / "curve.json"))
    assert [c["first_ratio_dev"] for c in curve] == [0.0, 0.0, 0.0]
    assert json.load(open(ppo_full / "metrics.json"))["first_minibatch_max_abs_log_ratio"] == 0.0
    assert curve[0]["kl"] == 0.0 and curve[-1]["kl"] > 0  # the policy did leave the reference


def test_kl_target_moves_beta_toward_the_target(ppo_full):
    """beta falls after an iteration whose KL is under --kl-target (iteration 0: KL exactly 0), rises
    after one above it, by Ziegler et al.'s controller with 16 episodes per step and a horizon of 10,000."""
    from nanorlhf.losses import adaptive_kl_update
    curve = json.load(open(ppo_full / "curve.json"))
    assert curve[0]["beta"] == 0.1  # --beta, the initial value
    moves = []
    for prev, nxt in zip(curve, curve[1:]):
        assert nxt["beta"] == pytest.approx(adaptive_kl_update(prev["beta"], prev["kl"], 1e-9, 16, 10000), rel=1e-12)
        moves.append((nxt["beta"] > prev["beta"], prev["kl"] > 1e-9))
    assert all(up == above for up, above in moves)
    assert moves[0] == (False, False) and (True, True) in moves  # both ways


def test_ppo_resume_is_bit_exact(tmp_path, ckpts, ppo_full):
    """Stopped after 2 of 3 iterations and resumed: the same curve (beta included) and the same policy."""
    out = run("train_ppo.py", *ppo_args(ckpts, tmp_path), "--stop-at-step", 2)
    assert "saved a resumable state at step 2" in out and not (tmp_path / "model.pt").exists()
    run("train_ppo.py", *ppo_args(ckpts, tmp_path), "--resume")
    assert json.load(open(tmp_path / "curve.json")) == json.load(open(ppo_full / "curve.json"))
    full, resumed = state_dict(ppo_full / "model.pt"), state_dict(tmp_path / "model.pt")
    assert full.keys() == resumed.keys() and all(torch.equal(full[k], resumed[k]) for k in full)


def test_torchrun_ppo(tmp_path, ckpts):
    """The script under two processes: episodes counted over both ranks, the first-minibatch ratio
    exactly 1 at every iteration on every rank (the curve's value is their mean)."""
    run("train_ppo.py", "--quick", "--sft", ckpts / "sft/model.pt", "--rm", ckpts / "rm/model.pt", "--n-eval", 4,
        "--out", tmp_path, cmd=torchrun())
    curve = json.load(open(tmp_path / "curve.json"))
    assert [c["episodes"] for c in curve] == [32, 64, 96] and all(c["first_ratio_dev"] == 0.0 for c in curve)


# ppo_update itself under two processes: a fixed rollout of 3 minibatches x 4 episodes, each rank holding
# half of every minibatch; all responses have the same length, so each rank's token mean is half of the
# global one, and every rank draws the same pretraining windows (their seed has no rank in it).
PPO_UPDATE = """
import sys
from types import SimpleNamespace
sys.path.insert(0, {root!r})
import numpy as np
import torch
import train_ppo
from nanorlhf.checkpoint import to_scalar_head
from nanorlhf.distributed import ddp_setup, ddp_teardown, ddp_wrap
from nanorlhf.model import GPT, GPTConfig

rank, world, device = ddp_setup()
torch.manual_seed(0)
cfg = GPTConfig(block_size=160, vocab_size=50, n_layer=1, n_head=2, n_embd=16)
policy, value = GPT(cfg), to_scalar_head(GPT(cfg))
g = torch.Generator().manual_seed(1)
ids, adv, ret = torch.randint(1, 50, (12, 8), generator=g), torch.randn(12, 5, generator=g), torch.randn(12, 5, generator=g)
roll, h = [], 4 // world
for j in range(3):
    rows = slice(4 * j + rank * h, 4 * j + (rank + 1) * h)
    r = dict(ids=ids[rows], start=torch.full((h,), 3), Tr=5, mask=torch.ones(h, 5, dtype=torch.bool), adv=adv[rows],
             ret=ret[rows])
    with torch.no_grad():
        r["logp"] = train_ppo.policy_forward(policy, r["ids"], r["start"], 5, 0.8, device)
        r["values"] = train_ppo.value_forward(value, r["ids"], r["start"], 5, device)
    r["ref_logp"] = r["logp"]  # the reference is the starting policy (only logged: the KL is not in this loss)
    roll.append(r)
args = SimpleNamespace(ppo_epochs=2, ptx_coef=0.2, ptx_batch=2, temperature=0.8, clip=0.2, vf_clip=0.2, vf_coef=0.5, seed=0,
                       advantage="gae")
params = list(policy.parameters()) + list(value.parameters())
opt = torch.optim.SGD(params, lr=0.5)  # not Adam: Adam's step is blind to the gradient's scale (a sum for a mean)
_, dev = train_ppo.ppo_update(args, 1, roll, ddp_wrap(policy, world), ddp_wrap(value, world), opt, params,
                              np.arange(500) % 47, device, 0.1)
assert dev == 0.0
if rank == 0:
    torch.save(dict(policy=policy.state_dict(), value=value.state_dict()), sys.argv[1])
ddp_teardown()  # as the scripts do (errors.exit_on_user_error): a live gloo group at exit can SIGABRT
"""


def test_torchrun_ppo_update_matches_one_process_with_twice_the_minibatch(tmp_path):
    script = tmp_path / "ppo_update.py"
    script.write_text(PPO_UPDATE.format(root=ROOT))
    for name, cmd in (("one", [sys.executable]), ("two", torchrun())):
        p = subprocess.run(cmd + [str(script), str(tmp_path / f"{name}.pt")], capture_output=True, text=True, env=ENV,
                           cwd=ROOT, timeout=300)
        assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-3000:]
    one, two = (torch.load(tmp_path / f"{n}.pt", weights_only=True) for n in ("one", "two"))
    torch.manual_seed(0)
    start = GPT(GPTConfig(block_size=160, vocab_size=50, n_layer=1, n_head=2, n_embd=16)).state_dict()
    assert any(not torch.equal(one["policy"][k], start[k]) for k in start)  # the update moved the policy
    for model in ("policy", "value"):
        for k in one[model]:
            torch.testing.assert_close(two[model][k], one[model][k], atol=1e-5, rtol=1e-4, msg=lambda m: f"{model}.{k}: {m}")
