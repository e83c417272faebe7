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
def ckpts(tmp_path_factory):
    """A quick SFT policy and RM, shared by the tests below."""
    d = tmp_path_factory.mktemp("ckpt")
    run("train_sft.py", "--quick", "--out", d / "sft")
    run("train_rm.py", "--quick", "--sft", d / "sft/model.pt", "--out", d / "rm")
    return d


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
    other = GPT(GPTConfig(vocab_size=enc.n_vocab + 64, n_layer=1, n_head=2, n_embd=32, scalar_head=True))
    save_checkpoint(str(tmp_path / "rm.pt"), other, enc, "reward")
    out = run("train_ppo.py", "--quick", "--sft", ckpts / "sft/model.pt", "--rm", tmp_path / "rm.pt",
              "--out", tmp_path / "o", ok=False)
    assert f"vocabulary {enc.n_vocab + 64}) does not match --sft" in out


def test_too_long_demonstrations_are_skipped_with_a_warning(tmp_path, ckpts):
    data = tmp_path / "data"
    write_jsonl(data / "demos.jsonl", [{"prompt": "Say hi.", "response": "Hi!"}] * 40 +
                [{"prompt": "Say hi.", "response": "hi " * 400}])
    out = run("train_sft.py", "--quick", "--data", data, "--init", ckpts / "sft/base.pt", "--out", tmp_path / "o")
    assert "warning: skipping 1 demonstrations longer than block_size" in out


# -----------------------------------------------------------------------------
# Checkpoints: atomic writes, exact resume, Ctrl-C, NaN guard

def test_kill_during_save_leaves_previous_checkpoint(tmp_path):
    path = tmp_path / "model.pt"
    enc = get_tokenizer()
    small = GPT(GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(str(path), small, enc, "policy")
    writer = f"""
import torch
from nanorlhf.checkpoint import save_checkpoint
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer
big = GPT(GPTConfig(vocab_size=50000, n_layer=2, n_head=4, n_embd=512))  # ~100 MB per save
enc = get_tokenizer()
print("saving", flush=True)
while True:
    save_checkpoint({str(path)!r}, big, enc, "policy")
"""
    p = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    assert p.stdout.readline().strip() == "saving"
    time.sleep(0.3)  # mid-write of the first big save
    p.kill()
    p.wait()
    model, _, _ = load_checkpoint(str(path), kind="policy")  # still a whole checkpoint
    assert model.config.n_embd in (16, 512)


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
    assert p.wait(timeout=120) == 0, out
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

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533"]


def test_torchrun_sft_matches_one_process_with_twice_the_batch(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run("train_sft.py", "--quick", "--dropout", "0", "--batch-size", "16", "--out", one)
    run("train_sft.py", "--quick", "--dropout", "0", "--batch-size", "8", "--out", two, cmd=TORCHRUN)
    a, b = losses(one / "metrics.json"), losses(two / "metrics.json")
    for stage in ("pretrain", "sft"):
        assert len(a[stage]) == len(b[stage]) > 0
        torch.testing.assert_close(torch.tensor(a[stage]), torch.tensor(b[stage]), atol=1e-4, rtol=1e-4)


def test_torchrun_rm_and_ppo(tmp_path, ckpts):
    run("train_rm.py", "--quick", "--sft", ckpts / "sft/model.pt", "--batch-size", "4", "--out", tmp_path / "rm",
        cmd=TORCHRUN)
    run("train_ppo.py", "--quick", "--sft", ckpts / "sft/model.pt", "--rm", tmp_path / "rm/model.pt",
        "--out", tmp_path / "ppo", cmd=TORCHRUN)
    assert json.load(open(tmp_path / "ppo/metrics.json"))["first_minibatch_max_abs_log_ratio"] == 0.0
