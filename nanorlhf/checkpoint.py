"""Checkpoints and resumable states: a dict of tensors and plain values, so loading needs no
unpickling of objects; written atomically, so a killed save leaves the previous file whole."""
import os
from dataclasses import asdict

import torch

from nanorlhf.errors import UserError
from nanorlhf.model import GPT, GPTConfig, from_pretrained_gpt2
from nanorlhf.tokenizer import PROMPT, RESPONSE, TokenizerError, fingerprint, get_tokenizer


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
        raise UserError(f"--resume: no saved state at {path} (nothing to resume; drop --resume)")
    return torch.load(path, map_location="cpu", weights_only=True)


MADE_BY = {"reward": "train_rm.py", "policy": "train_sft.py (or train_ppo.py / train_dpo.py for a tuned policy)",
           None: "train_sft.py (a policy) or train_rm.py (a reward model)"}  # kind -> the script that writes one


def load_checkpoint(path, kind=None, tokenizer=None):
    """Load our checkpoint (policy or reward) or, for a directory with config.json, a Hugging Face
    GPT-2 with the folder's own tokenizer (or `tokenizer`, or tiktoken's 'gpt2' if it has none), its
    embedding cut or grown to that tokenizer (from_pretrained_gpt2; our own checkpoints are cut too,
    so no id the tokenizer cannot decode is ever sampled). `kind` checks that a policy was not given where a reward
    model is expected, or the other way round. Returns (model, tokenizer, checkpoint dict); the
    tokenizer is checked against the one the model was trained with."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "config.json")):
        own = any(os.path.isfile(os.path.join(path, f)) for f in ("vocab.json", "tokenizer.json"))
        enc = get_tokenizer(tokenizer or (path if own else "gpt2"))
        model = from_pretrained_gpt2(path, vocab_size=enc.n_vocab, fresh_ids=added_ids(enc))
        ckpt = {"kind": "policy", "tokenizer": enc.name}
    else:
        if os.path.isdir(path):
            path = os.path.join(path, "model.pt")
        if not os.path.isfile(path):
            raise UserError(f"{path}: checkpoint not found; make it with {MADE_BY.get(kind, MADE_BY[None])}, or give "
                            "the path of a model.pt or of a Hugging Face GPT-2 folder")
        try:  # weights_only: tensors and plain containers only, never arbitrary code
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:
            raise UserError(f"{path}: not a loadable nanorlhf checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
        if not isinstance(ckpt, dict) or "config" not in ckpt or "model" not in ckpt:
            raise UserError(f"{path}: not a nanorlhf checkpoint (no config/model entries)")
        model = GPT(GPTConfig(**ckpt["config"]))
        model.load_state_dict(ckpt["model"])
        try:  # a ranks file or folder recorded by path may have moved since
            enc = get_tokenizer(ckpt["tokenizer"])
        except TokenizerError as e:
            raise TokenizerError(f"{path}: cannot load the tokenizer it was trained with: {e}") from None
    if kind is not None and ckpt.get("kind") != kind:
        raise UserError(f"{path}: is a {ckpt.get('kind')} checkpoint, but a {kind} checkpoint is expected here")
    if ckpt.get("tokenizer_fingerprint", fingerprint(enc)) != fingerprint(enc):
        raise UserError(f"{path}: was trained with another version of the {ckpt['tokenizer']!r} tokenizer "
                        "(its ranks changed since); retrain from the base model or restore the old ranks file")
    if model.config.vocab_size > enc.n_vocab:  # rows no token owns (a padded embedding): never sampled
        model = cut_vocab(model, enc.n_vocab)
    if model.config.vocab_size < enc.n_vocab:
        raise UserError(f"{path}: vocabulary {model.config.vocab_size} is smaller than tokenizer "
                        f"{ckpt['tokenizer']!r}'s {enc.n_vocab}")
    return model, enc, ckpt


def cut_vocab(model, n):
    """The model with its embedding (and tied head) cut to the first n rows."""
    sd = {k: v[:n] if k in ("transformer.wte.weight", "lm_head.weight") else v for k, v in model.state_dict().items()}
    small = GPT(GPTConfig(**{**asdict(model.config), "vocab_size": n}))
    small.load_state_dict(sd)
    return small


def added_ids(enc):
    """The ids of our separators that the tokenizer's own vocabulary lacked: tokenizer._with_specials
    appends them after every id it owns (GPT-2: 50257, 50258)."""
    seps = [enc.encode_single_token(t) for t in (PROMPT, RESPONSE)]
    own = max([*enc._mergeable_ranks.values(), *(i for i in enc._special_tokens.values() if i not in seps)])
    return [i for i in seps if i > own]


def to_scalar_head(policy):
    """InstructGPT's RM: the SFT model with the unembedding removed and a scalar output."""
    cfg = GPTConfig(**{**asdict(policy.config), "scalar_head": True})
    rm = GPT(cfg)
    missing, _ = rm.load_state_dict(policy.state_dict(), strict=False)
    assert set(missing) == {"score_head.weight", "score_head.bias"}, missing
    return rm
