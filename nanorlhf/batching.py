"""From text to token batches: prompts and demonstrations with the special tokens, right
padding, and the pretraining stream (random windows for training, a held-out part for the
alignment tax)."""
import numpy as np
import torch

from nanorlhf.errors import UserError
from nanorlhf.losses import lm_loss, model_lm_loss
from nanorlhf.run import autocast
from nanorlhf.tokenizer import PROMPT, RESPONSE, encode


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


def response_batch(examples, pad, device):
    """examples: (ids, n_prompt) pairs from encode_example -> ids (B, T) and mask (B, T-1) over the
    targets ids[:, 1:] that are response tokens or the end-of-text (what SFT and imitation learn)."""
    ids, lengths = pad_right([ids for ids, _ in examples], pad)
    ids, lengths = ids.to(device), lengths.to(device)
    t = torch.arange(ids.size(1) - 1, device=device)  # target index in ids, minus 1
    n_prompt = torch.tensor([n for _, n in examples], device=device)
    return ids, (t[None] + 1 >= n_prompt[:, None]) & (t[None] + 1 < lengths[:, None])


def response_nll(model, examples, pad, device):
    """The SFT loss (and the imitation objective's): examples (ids, n_prompt) -> (sum of next-token NLL
    over response tokens and the end-of-text, token count)."""
    ids, mask = response_batch(examples, pad, device)  # (B, T), (B, T-1) response targets
    with autocast(device):
        loss = model_lm_loss(model, ids[:, :-1], ids[:, 1:], mask)  # no (B, T-1, V) logits when fused
    n = mask.sum()
    return loss * n, int(n)


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
        raise UserError(f"pretraining text has {len(stream)} tokens, fewer than one window of {T + 1}: add text to "
                        "pretrain.jsonl")
    starts = rng.integers(0, len(stream) - T - 1, batch_size)
    return torch.from_numpy(np.stack([stream[s:s + T + 1] for s in starts]))


def pretrain_loss(model, stream, device, n_windows=64, T=128):
    """Mean next-token loss on n_windows fixed windows (those of default_rng(1234)) of held-out
    pretraining text, each window weighing the same."""
    was_training = model.training
    model.eval()
    xy = pretrain_batch(stream, n_windows, min(T, len(stream) - 2), np.random.default_rng(1234)).to(device)
    losses = []
    for i in range(0, n_windows, 16):
        with autocast(device), torch.no_grad():  # (a block: mutmut 3 skips decorated functions)
            logits = model(xy[i:i + 16, :-1])
        y = xy[i:i + 16, 1:]
        losses.append(lm_loss(logits.float(), y, torch.ones_like(y, dtype=torch.bool)).item() * len(y))
    model.train(was_training)
    return float(np.sum(losses) / n_windows)
