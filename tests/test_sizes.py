"""The model-size study (nanorlhf.experiments.sizes): the few-shot prefix is chosen without test
prompts and fits the context, the answers and the table on crafted numbers, and the study end to
end at toy sizes."""
import json
import os
import subprocess
import sys

import pytest
import torch

from nanorlhf import world
from nanorlhf.batching import encode_prompt
from nanorlhf.checkpoint import load_checkpoint, save_checkpoint
from nanorlhf.experiments import sizes
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import encode, get_tokenizer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}


class NoTest(dict):
    """A world whose test sets may not be read."""
    def __getitem__(self, key):
        assert key in ("sft_prompts", "rm_prompts", "rl_prompts", "val_prompts"), f"read {key}"
        return dict.__getitem__(self, key)


def test_prefix_is_chosen_on_validation_only_and_fits(monkeypatch):
    w = world.make_world(seed=0, scale=0.2)
    enc = get_tokenizer("nanorlhf")
    budget = 128 - sizes.ROOM - max(len(encode_prompt(enc, p)) for s in ("sft", "rm", "rl", "val")
                                    for p in w[f"{s}_prompts"])
    seen, cands = [], sizes.candidate_prefixes(w["sft_prompts"], enc, budget, 3)
    assert len(set(cands)) == 3

    def fake_sample(model, enc, prompts, temperature, seed=0):
        seen.extend(prompts)  # the ideal answer only after the third candidate: it must be chosen
        good = prompts[0].startswith(cands[2][len(world.PROMPT):])
        return [world.parse_prompt(p.split(world.PROMPT)[-1])[0].ideal(world.parse_prompt(p.split(world.PROMPT)[-1])[1])
                if good else "no" for p in prompts], None
    monkeypatch.setattr(sizes, "sample", fake_sample)
    pre = sizes.choose_prefix(None, enc, NoTest(w), 128, 3)
    assert pre["chosen"] == 2 and pre["prefix"] == cands[2] and pre["val_gold"][2] == pytest.approx(1.0) and 1.0 > max(pre["val_gold"][:2])
    val = w["val_prompts"][:200]
    assert [p.split(world.PROMPT)[-1] for p in seen] == val * 3
    shots = [x.split(world.RESPONSE)[0] for x in pre["prefix"].split(world.PROMPT)[1:]]
    assert pre["n_exchanges"] == len(shots) == 5 and len({world.parse_prompt(p)[0].name for p in shots}) == 5
    assert set(shots) <= set(w["sft_prompts"]) and not set(shots) & set(w["test_prompts"] + w["heldout_prompts"] + val)
    assert pre["prefix"] == "".join(sizes.exchange(p) for p in shots)  # ideal responses in the world's format
    assert pre["n_tokens"] == len(encode(enc, pre["prefix"])) <= pre["budget"]
    for p in w["test_prompts"] + w["heldout_prompts"]:  # every test prompt fits behind it with ROOM to answer
        ids = encode_prompt(enc, sizes.prompted(pre["prefix"], p))
        assert ids == encode(enc, pre["prefix"]) + encode_prompt(enc, p) and len(ids) + sizes.ROOM <= 128
    assert sizes.prompted("", "Sort 3 1") == "Sort 3 1"


def test_candidates_respect_a_tight_budget():
    enc = get_tokenizer("nanorlhf")
    w = world.make_world(seed=0, scale=0.2)
    for budget in (20, 40, 60):
        for c in sizes.candidate_prefixes(w["sft_prompts"], enc, budget, 5, seed=1):
            assert 0 < len(encode(enc, c)) <= budget


METHODS = list(sizes.METHODS)


def crafted():
    """Three sizes whose names sort otherwise than their parameters; win = size code + method index
    / 100 (+ 0.001 on heldout), gold = -win."""
    info = {"b": dict(n_params=300, tokens=10, window=128, loss=0), "a": dict(n_params=1000, tokens=10, window=128, loss=0),
            "c": dict(n_params=4000, tokens=10, window=128, loss=0)}
    code = {"b": 0.1, "a": 0.2, "c": 0.3}
    rows = [{"size": z, "n_params": info[z]["n_params"], "method": m, "decoding": d, "set": s,
             "win": code[z] + i / 100 + (s == "heldout") / 1000 + (d == "greedy") / 2, "win_ci95": [0, 1],
             "gold": -(code[z] + i / 100), "gold_ci95": [-1, 0], **{f"gold_{f}": 0.25 for f in sizes.FAMILIES},
             **{f"success_{f}": j / 10 + (d == "greedy") / 100 + code[z] / 100 for j, f in enumerate(sizes.FAMILIES)}}
            for z in info for i, m in enumerate(METHODS) for d in sizes.DECODINGS for s in sizes.SETS]
    tax = {z: {"GPT": 2.0 + code[z], "GPT prompted": 2.0 + code[z], "SFT": 3.0, "PPO": 3.5, "PPO-ptx": 2.5,
               "GPT distilled": 2.4} for z in info}
    return rows, info, tax


def test_answers_on_crafted_numbers():
    rows, info, tax = crafted()
    a = sizes.answers(rows, tax, "heldout")
    assert a["sizes"] == ["b", "a", "c"]
    # smallest (b) PPO-ptx (index 4) minus largest (c) GPT (0) and GPT prompted (1)
    assert a["small_ppo_ptx_vs_large"]["GPT"]["win"] == pytest.approx(0.1 + 0.04 - 0.3)
    assert a["small_ppo_ptx_vs_large"]["GPT prompted"]["win"] == pytest.approx(0.1 + 0.04 - 0.31)
    assert a["small_ppo_ptx_vs_large"]["GPT"]["gold"] == pytest.approx(-(0.14 - 0.3))
    assert a["prompting_gain"]["a"]["win"] == pytest.approx(0.01) and a["prompting_gain"]["c"]["gold"] == pytest.approx(-0.01)
    assert a["ppo_ptx_gain"]["b"]["win"] == pytest.approx(0.02) and a["ppo_ptx_gain"]["a"]["gold"] == pytest.approx(-0.02)
    assert a["alignment_tax"]["c"] == pytest.approx({"SFT": 3.0 - 2.3, "PPO": 3.5 - 2.3, "PPO-ptx": 2.5 - 2.3,
                                                     "GPT distilled": 2.4 - 2.3})
    assert a["distillation_gain"]["b"]["win"] == pytest.approx(0.05) and a["distillation_gain"]["c"]["gold"] == pytest.approx(-0.05)
    assert sizes.answers(rows, tax, "test", "greedy")["ppo_ptx_gain"]["b"]["win"] == pytest.approx(0.02)


def test_table_on_crafted_numbers():
    rows, info, tax = crafted()
    lines = sizes.table(rows, info, tax, "a").splitlines()
    assert lines[2] == "| b | 300 | 10 | 128 |"
    assert "| method | decoding | b | a | c |" in lines
    assert "| PPO-ptx | greedy | 0.641 [0.000, 1.000] / -0.140 [-1.000, 0.000] | 0.741 [0.000, 1.000] / -0.240 " \
        "[-1.000, 0.000] | 0.841 [0.000, 1.000] / -0.340 [-1.000, 0.000] |" in lines
    assert "| PPO-ptx | 2.500 | 2.500 | 2.500 |" in lines and "| GPT | 2.100 | 2.200 | 2.300 |" in lines
    assert "| c SFT | 0.25 | 0.25 | 0.25 | 0.25 | 0.25 |" in lines
    assert "| a PPO | 0.002 / 0.012 | 0.102 / 0.112 | 0.202 / 0.212 | 0.302 / 0.312 | 0.402 / 0.412 |" in lines
    assert lines.count("| c GPT | 0.003 / 0.013 | 0.103 / 0.113 | 0.203 / 0.213 | 0.303 / 0.313 | 0.403 / 0.413 |") == 2  # test, heldout
    text = sizes.answer_text(sizes.answers(rows, tax), {m: {"win_rate": 0.6, "win_rate_ci95": [0.5, 0.7]}
                                                        for m in ("GPT", "GPT prompted")})
    assert "1. b PPO-ptx minus c GPT: win -0.160, gold +0.160; head to head b PPO-ptx wins 0.600 [0.500, 0.700]" in text


def study(*args):
    return subprocess.run([sys.executable, "-m", "nanorlhf.experiments.sizes", *args], capture_output=True, text=True,
                          env=ENV, cwd=ROOT, timeout=600)


def test_study_end_to_end_quick_and_resumes(tmp_path):
    p = study("--quick", "--sizes", "toy", "quick", "--prefixes", "2", "--root", str(tmp_path))
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    res = json.loads((tmp_path / "sizes.json").read_text())
    assert len(res["rows"]) == 2 * 6 * 2 * 2 and res["reference"] == "quick SFT"
    assert res["sizes"]["toy"]["n_params"] < res["sizes"]["quick"]["n_params"]
    assert res["sizes"]["toy"]["tokens"] == 30 * 32 * 128  # --quick's pretraining steps x batch x window
    ref = [r for r in res["rows"] if r["size"] == "quick" and r["method"] == "SFT"]
    assert len(ref) == 4 and all(r["win"] == 0.5 and r["tie"] == 1.0 for r in ref)
    assert (tmp_path / "toy" / "prefix.json").exists() and (tmp_path / "world0" / "ppo" / "model.pt").exists()
    # one RM for every size, the reference's (the paper's 6B RM): the toy size trains none and uses it
    assert not (tmp_path / "toy" / "rm").exists()
    for stage in ("ppo", "ppo_noptx"):
        assert json.loads((tmp_path / "toy" / stage / "metrics.json").read_text())["args"]["rm"] == \
            str(tmp_path / "world0" / "rm" / "model.pt")
    assert "Answers (heldout set, T=1" in (tmp_path / "sizes.md").read_text()
    p = study("--quick", "--sizes", "toy", "quick", "--prefixes", "2", "--root", str(tmp_path))
    assert p.returncode == 0 and "[study]" not in p.stdout  # every stage and the responses are cached
    assert json.loads((tmp_path / "sizes.json").read_text())["rows"] == res["rows"]
    p = study("--quick", "--sizes", "toy", "--root", str(tmp_path))
    assert p.returncode == 2 and "including the reference quick" in p.stderr


def test_distillation_moves_the_unprompted_model_toward_the_prompted_one(tmp_path, reference_kernels):
    """distill() lowers the KL between the model without the prefix and the base model with it, on
    validation samples; it leaves the base model's file alone and is skipped once done."""
    torch.manual_seed(0)
    enc, w = get_tokenizer("nanorlhf"), world.make_world(seed=0, scale=0.05)
    w = dict(w, sft_prompts=w["sft_prompts"][:96], val_prompts=w["val_prompts"][:48])
    cfg = GPTConfig(vocab_size=enc.n_vocab, block_size=128, n_layer=1, n_head=2, n_embd=32, dropout=0.0)
    save_checkpoint(str(tmp_path / "sft" / "base.pt"), GPT(cfg), enc, "policy")
    base = (tmp_path / "sft" / "base.pt").read_bytes()
    prefix = sizes.candidate_prefixes(w["sft_prompts"], enc, 40, 1)[0]
    sizes.distill(str(tmp_path), w, prefix, 60, None, batch_size=16, lr=3e-3)
    m = json.loads((tmp_path / "distill" / "metrics.json").read_text())
    assert m["prefix_tokens"] == len(encode(enc, prefix)) and m["n_prompts"] == len(w["sft_prompts"])
    assert 0 < m["val_kl_after"] < 0.5 * m["val_kl_before"], m
    assert (tmp_path / "sft" / "base.pt").read_bytes() == base
    assert load_checkpoint(str(tmp_path / "distill" / "model.pt"), kind="policy")[0].config == cfg
    stamp = (tmp_path / "distill" / "metrics.json").stat().st_mtime_ns
    sizes.distill(str(tmp_path), w, prefix, 60, None)
    assert (tmp_path / "distill" / "metrics.json").stat().st_mtime_ns == stamp
