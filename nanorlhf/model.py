"""
A GPT-2 in one file: the policy, the SFT reference, the reward model and the value function.

Same architecture as GPT-2 (pre-LN blocks, learned positions, tanh-GELU MLP, tied embeddings,
dropout), with the layer names of GPT-2 so its weights load by name. Where it departs from GPT-2:
- An optional scalar head (`GPTConfig.scalar_head`). InstructGPT's reward model is "the SFT model
  with the final unembedding layer removed" and a scalar output; the PPO value function is
  initialized from the RM. Both are this class with `scalar_head=True`.
- Attention goes through one function, `attention()`, with a backend switch: PyTorch SDPA (the
  reference; CPU) or the hand-written Triton flash-attention kernel (CUDA, `kernels/`).
- Batched generation with a KV cache for prompts of different lengths: prompts are LEFT-padded,
  an attention mask hides the pads, and positions are counted from each row's first real token,
  so a padded row computes exactly what it would alone.
"""
import json
import math
import os
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from nanorlhf.errors import UserError

# "sdpa" (PyTorch reference) or "triton" (kernels.flash_attention); "auto" = triton on CUDA.
ATTENTION_BACKEND = os.environ.get("NANORLHF_ATTENTION", "auto")


@dataclass
class GPTConfig:
    block_size: int = 256  # context length: prompt + response of the embedded world fit in ~64
    vocab_size: int = 4096  # the embedded BPE's size (GPT-2's is 50257)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128  # a width-128 model matched width 256 after 3 CPU-minutes (MEASURED.md)
    dropout: float = 0.0  # the paper uses residual dropout 0.2 for SFT; PPO needs 0 (ratio == 1)
    bias: bool = True  # GPT-2 has biases in Linear and LayerNorm
    scalar_head: bool = False  # True: reward model / value function (no unembedding)


def attention(q, k, v, mask=None):
    """Causal self-attention. q, k, v: (B, nh, T, hs). mask: None (plain causal) or a bool
    (B, 1, Tq, Tk) of allowed keys (padding and KV cache). The Triton kernel handles the plain
    causal case, which is every training forward; masked generation stays on SDPA."""
    use_triton = ATTENTION_BACKEND == "triton" or (ATTENTION_BACKEND == "auto" and q.is_cuda)
    if mask is None and use_triton:
        from kernels import flash_attention
        return flash_attention(q, k, v, causal=True)
    if mask is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=cfg.bias)  # q, k, v at once
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, mask=None, cache=None):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))  # (B, nh, T, hs)
        if cache is not None:  # append this step's keys/values, attend over everything so far
            k, v = cache.update(k, v)  # (B, nh, Tk, hs)
        y = attention(q, k, v, mask)  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=cfg.bias)
        self.gelu = nn.GELU(approximate="tanh")  # GPT-2's "gelu_new"
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=cfg.bias)
        self.mlp = MLP(cfg)

    def forward(self, x, mask=None, cache=None):
        x = x + self.attn(self.ln_1(x), mask, cache)
        return x + self.mlp(self.ln_2(x))


class KVCache:
    """Preallocated keys and values of one layer: (B, nh, T_max, hs) each, filled left to right."""

    def __init__(self, B, nh, T_max, hs, device, dtype):
        self.k = torch.zeros(B, nh, T_max, hs, device=device, dtype=dtype)
        self.v = torch.zeros(B, nh, T_max, hs, device=device, dtype=dtype)
        self.t = 0

    def update(self, k, v):
        T = k.size(2)
        self.k[:, :, self.t:self.t + T] = k
        self.v[:, :, self.t:self.t + T] = v
        self.t += T
        return self.k[:, :, :self.t], self.v[:, :, :self.t]


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.config = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.vocab_size, cfg.n_embd),
            wpe=nn.Embedding(cfg.block_size, cfg.n_embd),
            drop=nn.Dropout(cfg.dropout),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.n_embd, bias=cfg.bias),
        ))
        if cfg.scalar_head:
            self.score_head = nn.Linear(cfg.n_embd, 1)  # r(x, y): replaces the unembedding
        else:
            self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
            self.lm_head.weight = self.transformer.wte.weight  # tied, as in GPT-2
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by 1/sqrt(2 * n_layer)
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    def _init_weights(self, m):
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)

    def num_params(self):
        return sum(p.numel() for p in self.parameters())  # tied weights are counted once

    def forward(self, idx, attn_mask=None, pos=None, caches=None, return_hidden=False, lengths=None, head_at=None):
        """idx: (B, T) token ids. attn_mask: optional bool (B, 1, T, Tk) of allowed keys (padding);
        pos: optional (B, T) positions (default 0..T-1); caches: list of KVCache for generation.
        Returns logits (B, T, V), or scores (B, T) with a scalar head, or with return_hidden the final
        hidden states (B, T, C) (after ln_f, before the head; at head_at: (B, K, C)), which
        kernels.hidden_logprobs turns into log-probs without the (B, T, V) logits.
        head_at: optional (B, K) time steps; the head is applied only there, giving (B, K, V) or (B, K).
        PPO reads the logits of 32 response tokens out of 63 and generation those of the last one:
        at V 4096 the unembedding is the largest matmul of the model, and the (B, T, V) logits it
        writes (and their gradient) the largest tensor (bench/peers.py, README "Speed against peers").
        With a scalar head and `lengths` (B,) of right-padded rows: the score at each row's last real
        token, (B,). Padding after that token cannot reach it (causal attention)."""
        B, T = idx.shape
        if pos is None:
            pos = torch.arange(T, device=idx.device).unsqueeze(0)  # (1, T)
        if int(pos.max()) >= self.config.block_size:
            raise ValueError(f"sequence position {int(pos.max())} exceeds block_size {self.config.block_size}")
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, C)
        for i, block in enumerate(self.transformer.h):
            x = block(x, attn_mask, None if caches is None else caches[i])
        x = self.transformer.ln_f(x)  # (B, T, C)
        if lengths is not None:
            head_at = (lengths - 1).clamp(min=0).unsqueeze(1)  # (B, 1) each row's last real token
        if head_at is not None:
            x = x.gather(1, head_at.unsqueeze(-1).expand(-1, -1, x.size(-1)))  # (B, K, C)
        if return_hidden:
            return x
        if not self.config.scalar_head:
            return self.lm_head(x)  # (B, T or K, V)
        s = self.score_head(x).squeeze(-1)  # (B, T or K)
        return s if lengths is None else s.squeeze(1)  # (B,)


# -----------------------------------------------------------------------------
# Generation

def sample_next_token(logits, generator=None, temperature=1.0, top_k=None):
    """logits (B, V) -> (B,) token ids. temperature 0 means greedy."""
    if temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1)), dim=-1).values[:, -1:]  # (B, 1)
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = F.softmax(logits, dim=-1)
    # Inverse CDF: one uniform per row, then a binary search for where the cumulative sum passes it.
    # torch.multinomial draws V exponentials per row instead, which took most of a cached generation
    # step at (64, 4096) on 2 cores. right=True picks the first index whose cdf EXCEEDS u, and u stays
    # strictly below the total, so a zero-probability token (top_k, or underflow) is never drawn.
    cdf = probs.cumsum(-1)  # (B, V), non-decreasing
    total = cdf[:, -1:]  # (B, 1), 1 up to rounding
    u = torch.rand(total.shape, generator=generator, device=total.device) * total
    u = torch.minimum(u, torch.nextafter(total, torch.zeros_like(total)))
    return torch.searchsorted(cdf, u, right=True).squeeze(1)


def generate(model, prompts, max_new_tokens, eot_id, temperature=1.0, top_k=None, generator=None,
             use_cache=True):
    """Sample continuations of a batch of prompts (lists of token ids, any lengths).
    Returns (tokens, gen_mask): tokens (B, P + N) with the prompts left-padded (pad = eot_id) and
    gen_mask (B, P + N) True on generated tokens, including each row's end-of-text, which stops
    that row. `use_cache=False` recomputes the whole sequence each step (the reference)."""
    device = next(model.parameters()).device
    B, P = len(prompts), max(len(p) for p in prompts)
    N = min(max_new_tokens, model.config.block_size - P)
    if N <= 0:
        raise ValueError(f"prompt of {P} tokens leaves no room in block_size {model.config.block_size}")
    tokens = torch.full((B, P + N), eot_id, dtype=torch.long, device=device)
    valid = torch.zeros(B, P + N, dtype=torch.bool, device=device)  # real (non-pad) tokens
    for b, p in enumerate(prompts):
        tokens[b, P - len(p):P] = torch.tensor(p, dtype=torch.long)
        valid[b, P - len(p):P] = True
    pos_all = (valid.long().cumsum(1) - 1).clamp(min=0)  # positions count real tokens only
    pos_all[:, P:] = pos_all[:, P - 1:P] + torch.arange(1, N + 1, device=device)
    causal = torch.ones(P + N, P + N, dtype=torch.bool, device=device).tril()
    eye = torch.eye(P + N, dtype=torch.bool, device=device)  # pad queries see themselves: no NaN

    def mask_for(q0, q1):  # allowed keys for queries q0..q1-1 over keys 0..q1-1: (B, 1, Tq, Tk)
        return (causal[q0:q1, :q1] & (valid[:, None, :q1] | eye[q0:q1, :q1])).unsqueeze(1)

    caches = None
    if use_cache:
        c = model.config
        dtype = next(model.parameters()).dtype
        caches = [KVCache(B, c.n_head, P + N, c.n_embd // c.n_head, device, dtype) for _ in range(c.n_layer)]
    done = torch.zeros(B, dtype=torch.bool, device=device)
    gen_mask = torch.zeros(B, P + N, dtype=torch.bool, device=device)
    t0 = 0  # first position not yet in the cache
    for t in range(P, P + N):
        q0 = t0 if use_cache else 0
        last = torch.full((B, 1), t - 1 - q0, device=device)  # logits of the last position only
        with torch.no_grad():  # sampling needs no graph (a block, not a decorator: mutmut 3 skips decorated functions)
            logits = model(tokens[:, q0:t], mask_for(q0, t), pos_all[:, q0:t], caches, head_at=last)[:, 0]  # (B, V)
        t0 = t
        nxt = sample_next_token(logits, generator, temperature, top_k)
        tokens[:, t] = torch.where(done, torch.full_like(nxt, eot_id), nxt)
        gen_mask[:, t] = ~done
        valid[:, t] = True  # finished rows keep a harmless eot pad, never read
        done |= nxt == eot_id
        if bool(done.all()):
            break
    return tokens[:, :t + 1], gen_mask[:, :t + 1]


# -----------------------------------------------------------------------------
# GPT-2 weights from a local Hugging Face folder (config.json + model.safetensors or pytorch_model.bin)

class WeightsError(UserError, ValueError):
    """GPT-2 weights (a folder or a .safetensors file) that cannot be loaded; the one-line message names them."""


SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
                      "BOOL": torch.bool}


def _read_safetensors(path):
    """The safetensors format is 8 bytes of header length (little-endian), a JSON header
    {name: {dtype, shape, data_offsets: [begin, end]}} and the raw little-endian tensors, offsets
    counted from the end of the header. Reading it by hand saves a dependency, so every field is
    checked before it is trusted: a damaged or hostile file gets a one-line error, never a crash
    or an allocation larger than the file itself."""
    def bad(msg):
        return WeightsError(f"{path}: {msg}")

    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if size < 8:
            raise bad(f"truncated: {size} bytes, no room for the 8-byte header length")
        n = int.from_bytes(f.read(8), "little")
        if n > size - 8:  # checked BEFORE reading: a lying length must not allocate
            raise bad(f"header length {n} exceeds the {size - 8} bytes after it (truncated or not safetensors)")
        try:
            header = json.loads(f.read(n))
        except (UnicodeDecodeError, ValueError, RecursionError) as e:
            raise bad(f"header is not valid JSON ({type(e).__name__})") from None
        data = f.read()  # (size - 8 - n) bytes
    if not isinstance(header, dict):
        raise bad("header is not a JSON object")
    out = {}
    for name, meta in header.items():
        if name == "__metadata__":
            continue
        if not (isinstance(meta, dict) and isinstance(meta.get("shape"), list)
                and isinstance(meta.get("data_offsets"), list) and len(meta["data_offsets"]) == 2
                and all(type(x) is int and x >= 0 for x in meta["shape"] + meta["data_offsets"])):
            raise bad(f"tensor {name!r}: needs dtype, shape (ints >= 0) and data_offsets [begin, end]")
        if not isinstance(meta.get("dtype"), str) or meta["dtype"] not in SAFETENSORS_DTYPES:
            raise bad(f"tensor {name!r}: unsupported dtype {meta.get('dtype')!r} (have {', '.join(SAFETENSORS_DTYPES)})")
        dtype, (a, b) = SAFETENSORS_DTYPES[meta["dtype"]], meta["data_offsets"]
        if not a <= b <= len(data):
            raise bad(f"tensor {name!r}: data_offsets [{a}, {b}] outside the {len(data)} bytes of data")
        numel = math.prod(meta["shape"])
        if (b - a) != numel * dtype.itemsize:
            raise bad(f"tensor {name!r}: shape {meta['shape']} of {meta['dtype']} needs {numel * dtype.itemsize} "
                      f"bytes, data_offsets give {b - a}")
        out[name] = torch.frombuffer(bytearray(data[a:b]), dtype=dtype).reshape(meta["shape"]) if numel \
            else torch.zeros(meta["shape"], dtype=dtype)
    return out


def from_pretrained_gpt2(folder, vocab_size=None, fresh_ids=()):
    """Load GPT-2 weights from a local Hugging Face checkpoint folder. Never downloads.
    `vocab_size` is the tokenizer's size; the embedding (and the tied head) is cut or grown to it:
    - cut: nanoGPT pads GPT-2's 50257 rows to 50304 (a multiple of 64), and many exported configs
      round vocab_size up. No token owns those rows, so they leave the softmax: a sampled padding id
      could not be decoded (tiktoken's KeyError in the middle of a PPO rollout).
    - grown / `fresh_ids`: our tokenizer adds <|prompt|> and <|response|> after the folder's own ids
      (GPT-2: 50257, 50258). Their rows start as the mean of the owned rows, so the new tokens begin
      as an average input and an average (never a dominant) output, also where a padding row stood."""
    cfg_path = os.path.join(folder, "config.json")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"{folder}: no config.json (expected a Hugging Face GPT-2 folder)")
    with open(cfg_path) as f:
        hf = json.load(f)
    cfg = GPTConfig(block_size=hf.get("n_positions", hf.get("n_ctx", 1024)), vocab_size=vocab_size or hf["vocab_size"],
                    n_layer=hf["n_layer"], n_head=hf["n_head"], n_embd=hf["n_embd"], bias=True)
    st, pt = os.path.join(folder, "model.safetensors"), os.path.join(folder, "pytorch_model.bin")
    if os.path.isfile(st):
        sd = _read_safetensors(st)
    elif os.path.isfile(pt):
        sd = torch.load(pt, map_location="cpu", weights_only=True)
    else:
        raise WeightsError(f"{folder}: neither model.safetensors nor pytorch_model.bin")
    model = GPT(cfg)
    ours = model.state_dict()
    # HF's Conv1D stores weights as (in, out); our nn.Linear wants (out, in).
    transposed = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
    loaded = {}
    for name, t in sd.items():
        if name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers, not weights
        key = name if name.startswith(("transformer.", "lm_head.")) else "transformer." + name
        if key not in ours:
            raise WeightsError(f"{folder}: unexpected tensor {name!r} for a GPT-2 checkpoint")
        loaded[key] = t.t() if key.endswith(transposed) else t
    missing = set(ours) - set(loaded) - {"lm_head.weight"}
    if missing:
        raise WeightsError(f"{folder}: checkpoint lacks {sorted(missing)[:5]}")
    wte = loaded["transformer.wte.weight"]  # (V_file, C)
    if wte.size(0) != hf["vocab_size"]:
        raise WeightsError(f"{folder}: wte has {wte.size(0)} rows, config.json says vocab_size {hf['vocab_size']}")
    n_own = min([wte.size(0), cfg.vocab_size, *fresh_ids])  # rows a token of the folder's own owns
    mean = wte[:n_own].mean(0, keepdim=True)  # (1, C)
    wte = torch.cat([wte[:cfg.vocab_size], mean.expand(max(0, cfg.vocab_size - wte.size(0)), -1)])  # (V, C): cut or grown
    wte[list(fresh_ids)] = mean  # new ids: the mean embedding (see docstring)
    loaded["transformer.wte.weight"] = wte
    loaded["lm_head.weight"] = loaded["transformer.wte.weight"]  # tied, as in GPT-2
    for key, t in loaded.items():
        if t.shape != ours[key].shape:
            raise WeightsError(f"{folder}: {key} has shape {tuple(t.shape)}, expected {tuple(ours[key].shape)}")
    model.load_state_dict({k: v.float() for k, v in loaded.items()})
    return model
