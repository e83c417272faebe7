"""
The tokenizer: byte-level BPE run by tiktoken, offline.

`tiktoken.get_encoding("gpt2")` downloads its ranks file, which this project may not do. So we
train our own small BPE (GPT-2's split pattern, a few thousand tokens) on the embedded corpus,
commit its ranks in tiktoken's file format (`assets/nanorlhf.tiktoken`: base64 token, rank) and
load them with `tiktoken.Encoding`. Special tokens: end-of-text and the prompt / response
separators that frame every example: <|prompt|> x <|response|> y <|endoftext|>.

Retrain (about a minute): python -m nanorlhf.tokenizer
"""
import argparse
import base64
import collections
import hashlib
import os
import re
import time

import tiktoken

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
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(f"{base64.b64encode(tok).decode()} {r}\n")


def load_ranks(path):
    with open(path) as f:
        return {base64.b64decode(tok): int(r) for tok, r in (line.split() for line in f if line.strip())}


def get_tokenizer(name="nanorlhf"):
    """'nanorlhf': the embedded BPE (offline). 'gpt2': tiktoken's GPT-2 encoding, which needs
    tiktoken's cache or the network. Either gets the three special tokens."""
    if name == "nanorlhf":
        ranks = load_ranks(ASSET)
        n = len(ranks)
        return tiktoken.Encoding("nanorlhf", pat_str=GPT2_PAT, mergeable_ranks=ranks,
                                 special_tokens={EOT: n, PROMPT: n + 1, RESPONSE: n + 2})
    if name == "gpt2":
        try:
            base = tiktoken.get_encoding("gpt2")
        except Exception as e:
            raise RuntimeError("--tokenizer gpt2 needs tiktoken's GPT-2 files, which are neither cached "
                               "(TIKTOKEN_CACHE_DIR) nor downloadable here; use the default 'nanorlhf' "
                               f"tokenizer. ({type(e).__name__}: {e})") from None
        return tiktoken.Encoding("gpt2", pat_str=base._pat_str, mergeable_ranks=base._mergeable_ranks,
                                 special_tokens={EOT: 50256, PROMPT: 50257, RESPONSE: 50258})
    raise ValueError(f"unknown tokenizer {name!r}: expected 'nanorlhf' or 'gpt2'")


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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--vocab-size", type=int, default=4093, help="BPE ranks, before the 3 special tokens")
    ap.add_argument("--out", default=ASSET, help="ranks file to write")
    args = ap.parse_args()
    from nanorlhf.world import make_world
    t0 = time.time()
    w = make_world()
    texts = [re.sub(r"<\|[a-z]+\|>", "\n", t) for t in w["pretrain"]]  # specials are not merged
    ranks = train_bpe(texts, args.vocab_size)
    save_ranks(ranks, args.out)
    print(f"trained {len(ranks)} ranks on {sum(map(len, texts)):,} chars in {time.time() - t0:.1f}s -> {args.out}")


if __name__ == "__main__":
    main()
