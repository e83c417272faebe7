"""
The tokenizer: byte-level BPE run by tiktoken, offline.

`tiktoken.get_encoding("gpt2")` downloads its ranks file, which this project may not do. So we
train our own small BPE (GPT-2's split pattern, a few thousand tokens) on the embedded corpus,
commit its ranks in tiktoken's file format (`assets/nanorlhf.tiktoken`: base64 token, rank) and
load them with `tiktoken.Encoding`. Special tokens: end-of-text and the prompt / response
separators that frame every example: <|prompt|> x <|response|> y <|endoftext|>.

Retrain (about a minute): python -m nanorlhf.tokenizer
A BPE for your own corpus:  python -m nanorlhf.tokenizer --data DIR --vocab-size 2000 --out DIR/bpe.tiktoken
(then `train_sft.py --tokenizer DIR/bpe.tiktoken`; checkpoints record its path and fingerprint, so
the later stages find it).

A Hugging Face GPT-2 folder (vocab.json + merges.txt, or tokenizer.json) loads offline too, with
ids unchanged. GPT-2 has <|endoftext|> (50256) but not our two separators: they get NEW ids after
the vocabulary (50257, 50258), and `from_pretrained_gpt2(..., vocab_size=)` grows the embedding
for them. Mapping them to plain text ("Question:", "Answer:") would keep GPT-2's vocabulary, but a
prompt could then contain the separator by accident, and every example would cost more tokens.
"""
import argparse
import base64
import collections
import hashlib
import json
import os
import re
import time

import tiktoken

from nanorlhf import data as jdata
from nanorlhf.errors import UserError

EOT, PROMPT, RESPONSE = "<|endoftext|>", "<|prompt|>", "<|response|>"
ASSET = os.path.join(os.path.dirname(__file__), "assets", "nanorlhf.tiktoken")
# GPT-2's pre-tokenizer pattern; tiktoken runs it at encode time.
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# The same with Python's `re` (no \p{..}): letters = [^\W\d_], numbers = \d. Used only to count
# words while training; any difference only changes which merges are learned, never round trips.
_TRAIN_PAT = re.compile(r"""'(?:[sdmt]|ll|ve|re)| ?[^\W\d_]+| ?\d+| ?[^\s\w]+|\s+(?!\S)|\s+|_+""")


def train_bpe(texts, vocab_size):
    """Byte-level BPE: start from the 256 bytes, repeatedly merge the most frequent adjacent pair
    inside pre-tokenized words. Returns {token bytes: rank}, ranks 0..255 the single bytes."""
    words = collections.Counter()
    for text in texts:
        words.update(m.encode("utf-8") for m in _TRAIN_PAT.findall(text))
    seqs = [[bytes([b]) for b in w] for w in words]  # each unique word as a list of tokens
    freq = list(words.values())
    pairs = collections.Counter()  # (a, b) -> count over the corpus
    where = collections.defaultdict(set)  # (a, b) -> indices of words that contain it
    for i, s in enumerate(seqs):
        for a, b in zip(s, s[1:]):
            pairs[a, b] += freq[i]
            where[a, b].add(i)
    ranks = {bytes([i]): i for i in range(256)}
    while len(ranks) < vocab_size and pairs:
        (a, b), n = max(pairs.items(), key=lambda kv: (kv[1], kv[0]))  # ties broken by bytes: deterministic
        if n < 2:
            break
        new = a + b
        ranks[new] = len(ranks)
        for i in where.pop((a, b)):
            s, f = seqs[i], freq[i]
            for x, y in zip(s, s[1:]):  # remove this word's old pairs ...
                pairs[x, y] -= f
            j, merged = 0, []
            while j < len(s):
                if j + 1 < len(s) and s[j] == a and s[j + 1] == b:
                    merged.append(new)
                    j += 2
                else:
                    merged.append(s[j])
                    j += 1
            seqs[i] = merged
            for x, y in zip(merged, merged[1:]):  # ... and add the new ones
                pairs[x, y] += f
                where[x, y].add(i)
        for p in [p for p, c in pairs.items() if c <= 0]:
            del pairs[p]
    return ranks


def save_ranks(ranks, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")


def load_ranks(path):
    with open(path) as f:
        return {base64.b64decode(tok): int(r) for tok, r in (line.split() for line in f if line.strip())}


class TokenizerError(UserError, ValueError):
    """A tokenizer name, ranks file or Hugging Face folder that cannot be used; the message names it."""


def _with_specials(name, ranks, specials=None):
    """A tiktoken Encoding with GPT-2's split pattern. Special tokens the vocabulary lacks among
    <|endoftext|>, <|prompt|>, <|response|> get new ids after every existing one."""
    specials = dict(specials or {})
    n = max([*ranks.values(), *specials.values()]) + 1
    for tok in (EOT, PROMPT, RESPONSE):
        if tok not in specials:
            specials[tok], n = n, n + 1
    return tiktoken.Encoding(name, pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens=specials)


def bytes_to_unicode():
    """GPT-2's map from the 256 bytes to printable characters: vocab.json and merges.txt spell
    every token's bytes with these characters (a space is 'Ġ', a newline 'Ċ')."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in bs]  # the rest get 256, 257, ... in byte order
    return {**{b: chr(b) for b in bs}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def load_hf_bpe(folder):
    """A Hugging Face byte-level BPE (GPT-2's: vocab.json + merges.txt, or tokenizer.json) as a
    tiktoken Encoding, offline. tiktoken merges the adjacent pair whose JOINED bytes have the lowest
    rank, so a token's id can serve as its rank only if ids grow in merge order; that holds for
    GPT-2 (merge i makes id 256 + i) and is checked. Vocabulary entries that are neither a byte nor
    a merge (GPT-2: <|endoftext|>) become special tokens with their ids."""
    def read_json(path):
        try:
            with open(path, encoding="utf-8") as f:
                return json.load(f)
        except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise TokenizerError(f"{path}: not valid JSON ({e})") from None

    vj, mt, tj = (os.path.join(folder, f) for f in ("vocab.json", "merges.txt", "tokenizer.json"))
    if os.path.isfile(vj) and os.path.isfile(mt):
        vocab = read_json(vj)
        with open(mt, encoding="utf-8") as f:
            merges = [tuple(line.rstrip("\n").split(" ")) for line in f if line.strip() and not line.startswith("#version")]
        added = {}
    elif os.path.isfile(tj):
        spec = read_json(tj)
        model, pre = spec.get("model") or {}, json.dumps(spec.get("pre_tokenizer"))
        if model.get("type") != "BPE" or "ByteLevel" not in pre:
            raise TokenizerError(f"{tj}: not a byte-level BPE like GPT-2's (model {model.get('type')!r})")
        if '"add_prefix_space": true' in pre:  # GPT-2's pattern, run by tiktoken, adds no leading space
            raise TokenizerError(f"{tj}: add_prefix_space is true, which GPT-2's tokenizer (and this loader) does not do")
        vocab = model["vocab"]
        merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
        added = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    else:
        raise TokenizerError(f"{folder}: no tokenizer here (expected vocab.json + merges.txt, or tokenizer.json)")
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    ranks = {}
    for c, b in byte_of.items():
        if c not in vocab:
            raise TokenizerError(f"{folder}: byte {b} ({c!r}) is not in the vocabulary: not a byte-level BPE")
        ranks[bytes([b])] = vocab[c]
    last = max(ranks.values())
    for lineno, m in enumerate(merges, 1):
        tok = "".join(m)
        if len(m) != 2 or tok not in vocab or any(c not in byte_of for c in tok):
            raise TokenizerError(f"{folder}: merge {lineno} {' '.join(m)!r} is malformed or makes no vocabulary entry")
        if vocab[tok] <= last:
            raise TokenizerError(f"{folder}: merge {lineno} {' '.join(m)!r} has id {vocab[tok]}, not above the "
                                 "previous merges': ids must follow merge order")
        last = ranks[bytes(byte_of[c] for c in tok)] = vocab[tok]
    made = set(byte_of) | {"".join(m) for m in merges}
    specials = {**{t: i for t, i in vocab.items() if t not in made}, **added}
    return _with_specials(os.path.abspath(folder), ranks, specials)


def get_tokenizer(name="nanorlhf"):
    """'nanorlhf': the embedded BPE (offline). 'gpt2': tiktoken's GPT-2 encoding, which needs
    tiktoken's cache or the network. A path: a .tiktoken ranks file (`--data` training below) or a
    Hugging Face GPT-2 folder (load_hf_bpe). Each gets the three special tokens; a path is
    recorded absolute, as checkpoints name their tokenizer by `enc.name`."""
    if name == "nanorlhf":
        return _with_specials("nanorlhf", load_ranks(ASSET))
    if name == "gpt2":
        try:
            base = tiktoken.get_encoding("gpt2")
        except Exception as e:
            raise RuntimeError("--tokenizer gpt2 needs tiktoken's GPT-2 files, which are neither cached "
                               "(TIKTOKEN_CACHE_DIR) nor downloadable here; use the default 'nanorlhf' "
                               f"tokenizer. ({type(e).__name__}: {e})") from None
        return tiktoken.Encoding("gpt2", pat_str=base._pat_str, mergeable_ranks=base._mergeable_ranks,
                                 special_tokens={EOT: 50256, PROMPT: 50257, RESPONSE: 50258})
    if os.path.isdir(name):
        return load_hf_bpe(name)
    if os.path.isfile(name):
        try:
            ranks = load_ranks(name)
        except (ValueError, UnicodeDecodeError) as e:  # binascii.Error is a ValueError
            raise TokenizerError(f"{name}: not a .tiktoken ranks file (lines 'base64-token rank'): {e}") from None
        if not ranks or any(bytes([b]) not in ranks for b in range(256)):
            raise TokenizerError(f"{name}: a byte-level ranks file must contain all 256 single bytes")
        return _with_specials(os.path.abspath(name), ranks)
    if os.sep in name or name.endswith(".tiktoken"):
        raise TokenizerError(f"tokenizer {name!r} not found (a .tiktoken ranks file or a Hugging Face folder)")
    raise TokenizerError(f"unknown tokenizer {name!r}: expected 'nanorlhf', 'gpt2', a .tiktoken ranks file "
                         "or a Hugging Face tokenizer folder")


def fingerprint(enc):
    """A short hash of every token's bytes: checkpoints remember it, so a model is never run with
    a tokenizer other than the one it was trained with (e.g. after retraining the BPE)."""
    h = hashlib.sha256()
    for i in range(enc.n_vocab):
        try:
            h.update(enc.decode_single_token_bytes(i) + b"\0")
        except KeyError:  # a gap in the ids
            h.update(b"\1")
    return h.hexdigest()[:16]


def encode(enc, text):
    """Text to ids; special tokens in the text are honoured (the corpus and examples contain them)."""
    return enc.encode(text, allowed_special="all")


def corpus_texts(data_dir):
    """The texts a BPE for a --data folder learns from: pretrain.jsonl, plus demos.jsonl if present."""
    texts = [r["text"] for r in jdata.load_dataset(data_dir, "pretrain")]
    return texts + [d["prompt"] + "\n" + d["response"] for d in jdata.load_dataset(data_dir, "demos", optional=True)]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", help="train on this folder's pretrain.jsonl (+ demos.jsonl) instead of the embedded world")
    ap.add_argument("--vocab-size", type=int, default=4093, help="BPE ranks, before the 3 special tokens (>= 256)")
    ap.add_argument("--out", help=f"ranks file to write (default: {ASSET}, or DIR/bpe.tiktoken with --data)")
    args = ap.parse_args(argv)
    if args.vocab_size < 256:
        ap.error(f"--vocab-size must be at least 256 (the single bytes), got {args.vocab_size}")
    t0 = time.time()
    if args.data:
        texts = corpus_texts(args.data)
    else:
        from nanorlhf.world import make_world
        texts = make_world()["pretrain"]
    texts = [re.sub(r"<\|[a-z]+\|>", "\n", t) for t in texts]  # specials are not merged
    out = args.out or (os.path.join(args.data, "bpe.tiktoken") if args.data else ASSET)
    ranks = train_bpe(texts, args.vocab_size)
    save_ranks(ranks, out)
    print(f"trained {len(ranks)} ranks on {sum(map(len, texts)):,} chars in {time.time() - t0:.1f}s -> {out}")


if __name__ == "__main__":
    main()
