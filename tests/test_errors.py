"""A user's mistake ends a script with exit status 2 and ONE line on stderr,
`train_sft.py: error: <file:line or option>: <what is wrong and what to do>`, and no traceback
unless asked (--debug, NANORLHF_DEBUG=1). A bug keeps its traceback. One case per error class,
each run as a user runs it, on tiny checkpoints made here (no training needed)."""
import os
import subprocess
import sys

import pytest
import torch

from nanorlhf.checkpoint import save_checkpoint, save_state
from nanorlhf.data import write_jsonl
from nanorlhf.errors import UserError, exit_on_user_error
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "NANORLHF_DEBUG")}


def run(script, *args, env=None):
    return subprocess.run([sys.executable, os.path.join(ROOT, script), *map(str, args)], capture_output=True,
                          text=True, env={**ENV, **(env or {})}, cwd=ROOT, timeout=300)


def user_error(script, *args):
    """Run a script that must stop on a user error; return its one stderr line."""
    p = run(script, *args)
    assert p.returncode == 2, f"exit status {p.returncode}:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    assert "Traceback" not in p.stderr, p.stderr[-3000:]
    lines = p.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{script}: error: "), p.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Tiny policy and reward checkpoints (block_size 32), a policy with another tokenizer's
    fingerprint, a reward model with a smaller vocabulary, and a file that is no checkpoint."""
    d = tmp_path_factory.mktemp("tiny")
    enc = get_tokenizer()
    cfg = dict(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_embd=16, block_size=32)
    save_checkpoint(str(d / "sft.pt"), GPT(GPTConfig(**cfg)), enc, "policy")
    save_checkpoint(str(d / "rm.pt"), GPT(GPTConfig(**cfg, scalar_head=True)), enc, "reward")
    save_checkpoint(str(d / "rm_small.pt"), GPT(GPTConfig(**{**cfg, "vocab_size": enc.n_vocab - 64}, scalar_head=True)),
                    enc, "reward")
    ckpt = torch.load(d / "sft.pt", weights_only=True)
    torch.save({**ckpt, "tokenizer_fingerprint": "0" * 16}, d / "old_tokenizer.pt")
    (d / "garbage.pt").write_bytes(b"not a checkpoint")
    return d


def demos(d, rows):
    write_jsonl(d / "demos.jsonl", rows)
    return d


SAY_HI = [{"prompt": f"Say hi to {i}.", "response": "Hi!"} for i in range(40)]

# -----------------------------------------------------------------------------
# Data


def test_bad_data_line(tmp_path, tiny):
    (tmp_path / "demos.jsonl").write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a"}\n')
    line = user_error("train_sft.py", "--data", tmp_path, "--init", tiny / "sft.pt")
    assert line == (f"train_sft.py: error: {tmp_path}/demos.jsonl:2: missing field 'response' "
                    '(format {"prompt", "response"}, detected from line 1)')


def test_line_in_no_known_format(tmp_path, tiny):
    (tmp_path / "comparisons.jsonl").write_text('{"question": "q", "answer": "a"}\n')
    line = user_error("train_rm.py", "--data", tmp_path, "--sft", tiny / "sft.pt")
    assert line.startswith(f"train_rm.py: error: {tmp_path}/comparisons.jsonl:1: fits no comparisons format "
                           "(fields: 'question', 'answer'); accepted: ")


def test_invalid_utf8(tmp_path, tiny):
    (tmp_path / "demos.jsonl").write_bytes(b'{"prompt": "caf\xe9", "response": "b"}\n')
    line = user_error("train_sft.py", "--data", tmp_path, "--init", tiny / "sft.pt")
    assert line == f"train_sft.py: error: {tmp_path}/demos.jsonl:1: not UTF-8 text (byte 0xe9 at column 16); " \
                   "save the file as UTF-8"


def test_data_is_not_a_folder(tmp_path):
    (tmp_path / "demos.jsonl").write_text("")
    line = user_error("train_sft.py", "--data", tmp_path / "demos.jsonl")
    assert line == f"train_sft.py: error: --data {tmp_path}/demos.jsonl: is a file, not a folder (give the folder " \
                   "that holds demos.jsonl, comparisons.jsonl, ...)"


def test_missing_data_file_says_what_to_do(tmp_path):
    line = user_error("train_sft.py", "--data", demos(tmp_path, SAY_HI))
    assert line == f"train_sft.py: error: {tmp_path}/pretrain.jsonl: no such file (--data {tmp_path} needs " \
                   "pretrain.jsonl; or give --init BASE to skip pretraining)"


def test_pretraining_text_shorter_than_a_window(tmp_path):
    write_jsonl(tmp_path / "pretrain.jsonl", [{"text": "Hello."}])
    line = user_error("train_sft.py", "--quick", "--data", demos(tmp_path, SAY_HI), "--batch-size", "4")
    assert line.startswith("train_sft.py: error: pretraining text has ") and line.endswith(
        "tokens, fewer than one window of 65: add text to pretrain.jsonl")


# -----------------------------------------------------------------------------
# Checkpoints

@pytest.mark.parametrize("script,option,name,message", [
    ("train_sft.py", "--init", "missing.pt", "checkpoint not found; make it with train_sft.py (or train_ppo.py / "
                                             "train_dpo.py for a tuned policy), or give the path of a model.pt or of a "
                                             "Hugging Face GPT-2 folder"),
    ("train_sft.py", "--init", "garbage.pt", "not a loadable nanorlhf checkpoint (UnpicklingError: "),
    ("train_sft.py", "--init", "rm.pt", "is a reward checkpoint, but a policy checkpoint is expected here"),
    ("train_rm.py", "--sft", "rm.pt", "is a reward checkpoint, but a policy checkpoint is expected here"),
    ("train_ppo.py", "--rm", "sft.pt", "is a policy checkpoint, but a reward checkpoint is expected here"),
    ("train_sft.py", "--init", "old_tokenizer.pt", "was trained with another version of the 'nanorlhf' tokenizer "
                                                   "(its ranks changed since); retrain from the base model"),
])
def test_checkpoint_errors(tmp_path, tiny, script, option, name, message):
    data = demos(tmp_path, SAY_HI)
    others = {"train_sft.py": ["--data", data], "train_rm.py": [], "train_ppo.py": ["--sft", tiny / "sft.pt"]}[script]
    line = user_error(script, *others, option, tiny / name)
    assert line.startswith(f"{script}: error: {tiny / name}: {message}"), line


def test_dpo_without_its_checkpoint_or_its_comparisons(tmp_path, tiny):
    line = user_error("train_dpo.py", "--sft", tmp_path / "missing.pt")
    assert line.startswith(f"train_dpo.py: error: {tmp_path / 'missing.pt'}: checkpoint not found")
    line = user_error("train_dpo.py", "--sft", tiny / "sft.pt", "--comparisons", tmp_path / "comparisons.jsonl")
    assert line == f"train_dpo.py: error: --comparisons {tmp_path / 'comparisons.jsonl'}: no such file (train_rm.py " \
                   "writes it: run it first, or give --comparisons FILE or --data DIR)"
    line = user_error("train_dpo.py", "--sft", tiny / "sft.pt", "--data", tmp_path)
    assert line == f"train_dpo.py: error: {tmp_path}/comparisons.jsonl: no such file (--data {tmp_path} needs " \
                   "comparisons.jsonl)"


@pytest.mark.parametrize("args,message", [
    (["--advantage", "rloo", "--group-size", "1"], "--group-size must be >= 2 for --advantage rloo (a baseline needs "
                                                   "other samples), got 1"),
    (["--advantage", "grpo", "--group-size", "3"], "--rollout-size 64 must be a multiple of --group-size 3"),
])
def test_critic_free_group_size(tiny, args, message):
    assert user_error("train_ppo.py", "--sft", tiny / "sft.pt", "--rm", tiny / "rm.pt", *args) == \
        f"train_ppo.py: error: {message}"


def test_reward_model_of_another_vocabulary(tiny):
    # (a larger embedding is a padded one, cut to the tokenizer on load: test_gpt2_folder covers it)
    line = user_error("train_ppo.py", "--sft", tiny / "sft.pt", "--rm", tiny / "rm_small.pt")
    assert line == f"train_ppo.py: error: {tiny / 'rm_small.pt'}: vocabulary {get_tokenizer().n_vocab - 64} is smaller than " \
                   f"tokenizer 'nanorlhf''s {get_tokenizer().n_vocab}"


# -----------------------------------------------------------------------------
# Options that do not go together, and examples longer than the context where that is fatal

def test_resume_without_a_state(tmp_path):
    line = user_error("train_sft.py", "--resume", "--out", tmp_path)
    assert line == f"train_sft.py: error: --resume: no saved state at {tmp_path}/state.pt (nothing to resume; " \
                   "drop --resume)"


def test_resume_with_other_options(tmp_path):
    import train_sft
    args = vars(train_sft.get_args(["--out", str(tmp_path)]))
    save_state(str(tmp_path / "state.pt"), {"args": {k: args[k] for k in train_sft.RESUME_KEYS}})
    line = user_error("train_sft.py", "--resume", "--out", tmp_path, "--lr", "1", "--seed", "3")
    assert line == "train_sft.py: error: --resume: these options differ from the saved run: --seed saved 0, now 3; " \
                   "--lr saved 0.0005, now 1.0 (give the saved values, or start afresh in another --out)"


def test_batch_larger_than_the_data(tmp_path, tiny):
    line = user_error("train_sft.py", "--data", demos(tmp_path, SAY_HI), "--init", tiny / "sft.pt", "--batch-size", 64)
    assert line == "train_sft.py: error: --batch-size 64 x 1 process(es) exceeds the 38 training demonstrations: " \
                   "lower --batch-size"


def test_every_demonstration_longer_than_the_context(tmp_path, tiny):
    data = demos(tmp_path, [{"prompt": f"Say hi to {i}.", "response": "hi " * 40} for i in range(40)])
    line = user_error("train_sft.py", "--data", data, "--init", tiny / "sft.pt", "--batch-size", 4)
    assert line == "train_sft.py: error: --batch-size 4 x 1 process(es) exceeds the 0 usable training " \
                   "demonstrations (40 longer than block_size 32 skipped)"


def test_every_rl_prompt_longer_than_the_context(tmp_path, tiny):
    write_jsonl(tmp_path / "rl_prompts.jsonl", [{"prompt": "Please " * 40 + str(i)} for i in range(20)])
    line = user_error("train_ppo.py", "--quick", "--data", tmp_path, "--sft", tiny / "sft.pt", "--rm", tiny / "rm.pt",
                      "--ptx-coef", 0)
    assert line == "train_ppo.py: error: --rollout-size 16 exceeds the 0 usable RL prompts: lower --rollout-size"


def test_argparse_errors_stay_one_line():
    line = user_error("train_rm.py", "--k-min", 6, "--k-max", 4)
    assert line == "train_rm.py: error: need 2 <= --k-min <= --k-max, got 6, 4"


# -----------------------------------------------------------------------------
# Tracebacks: on request, and always for bugs

@pytest.mark.parametrize("debug", [["--debug"], "NANORLHF_DEBUG"])
def test_debug_shows_the_traceback(tmp_path, debug):
    args, env = (debug, None) if debug == ["--debug"] else ([], {"NANORLHF_DEBUG": "1"})
    p = run("train_sft.py", "--resume", "--out", tmp_path, *args, env=env)
    assert p.returncode == 1 and "Traceback" in p.stderr and "UserError: --resume: no saved state" in p.stderr


def test_main_raises_user_errors_and_bugs_keep_their_traceback(tmp_path):
    import train_sft
    with pytest.raises(UserError, match="no saved state"):
        train_sft.main(["--resume", "--out", str(tmp_path)])
    with pytest.raises(ZeroDivisionError):  # not a user error: passes through, traceback and all
        exit_on_user_error(lambda argv: 1 / 0, [])
    with pytest.raises(SystemExit) as e:
        exit_on_user_error(lambda argv: train_sft.main(["--resume", "--out", str(tmp_path)]), [])
    assert e.value.code == 2


@pytest.mark.parametrize("fails", [False, True])
def test_the_process_group_is_left_before_exit(tmp_path, fails):
    """Under torchrun a script leaves its process group on the way out, after a user error too:
    gloo threads alive at interpreter shutdown abort the process (SIGABRT) once in a while."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)

    def main(argv):
        if fails:
            raise UserError("bad option")
        return "done"

    try:
        if fails:
            with pytest.raises(SystemExit, match="2"):
                exit_on_user_error(main, [])
        else:
            assert exit_on_user_error(main, []) == "done"
        assert not dist.is_initialized()
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
