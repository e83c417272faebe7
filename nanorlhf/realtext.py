"""
A small data set of REAL text that this project did not write, for the README's walkthrough: the
docstrings of Python's standard library (PSF license), read through `inspect` at run time, so it
is on every machine that has Python and needs no download.

    python -m nanorlhf.realtext --out data/real

Writes, in the JSONL formats of nanorlhf/data.py:
  pretrain.jsonl     every documented public function, class and method of MODULES: its name,
                     signature and whole docstring (the "internet text" the base model reads)
  demos.jsonl        the task PEP 257 sets every docstring: write its one-line summary. Prompt: the
                     name and the docstring's REST (up to 300 characters); response: its first sentence
  comparisons.jsonl  the same prompt with three answers, ranked: the function's own first sentence >
                     the first sentence of another function OF THE SAME MODULE > that of a function of
                     ANOTHER module. Synthetic preferences (right beats wrong, a near miss beats a far
                     one) over real text; no human ranked them.
  {rl,val,test}_prompts.jsonl   the prompt for functions held out from demos and comparisons
Functions whose docstring has more than its summary are split by a hash of their name: 50% demos,
25% comparisons, 15% RL, 5% val, 5% test. There is no gold labeler for these prompts: the scripts
report losses, RM accuracy on held-out comparisons and the RM score. The text varies a little
between Python versions.
"""
import argparse
import hashlib
import importlib
import inspect
import os
import random
import re
import sys

from nanorlhf.data import write_jsonl

MODULES = ["abc", "argparse", "base64", "bisect", "calendar", "collections", "colorsys", "contextlib", "copy", "csv",
           "dataclasses", "datetime", "decimal", "difflib", "enum", "fnmatch", "fractions", "functools", "getopt",
           "glob", "gzip", "hashlib", "heapq", "hmac", "html", "http.client", "inspect", "io", "ipaddress",
           "itertools", "json", "keyword", "linecache", "locale", "logging", "math", "mimetypes", "operator",
           "os", "os.path", "pathlib", "pickle", "pprint", "queue", "random", "re", "sched", "secrets", "shlex",
           "shutil", "socket", "statistics", "string", "struct", "subprocess", "tarfile", "tempfile", "textwrap",
           "threading", "time", "timeit", "tokenize", "traceback", "types", "unicodedata",
           "urllib.parse", "uuid", "warnings", "weakref", "zipfile", "zlib", "ast", "asyncio.events",
           "asyncio.queues", "asyncio.streams", "asyncio.tasks", "bz2", "cmath", "codecs", "configparser",
           "contextvars", "dis", "doctest", "email.message", "email.utils", "filecmp", "ftplib", "gettext",
           "graphlib", "http.cookies", "imaplib", "importlib.util", "lzma", "mailbox", "numbers", "optparse",
           "platform", "plistlib", "pstats", "pydoc", "reprlib", "selectors", "smtplib", "sqlite3", "sysconfig",
           "trace", "tracemalloc", "unittest.case", "unittest.mock", "urllib.request", "wave", "webbrowser",
           "xml.dom.minidom", "xml.etree.ElementTree"]


def summary_and_rest(doc, name, rest_chars=300):
    """(the docstring's first sentence, the text after it cut to `rest_chars` at a word), skipping
    a leading signature line ("dumps(obj, ...)"); None if there is no usable summary or no rest."""
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n") if p.strip()]
    if paragraphs and re.match(rf"{re.escape(name)}\s*\(", paragraphs[0]) and not paragraphs[0].endswith("."):
        paragraphs = paragraphs[1:]  # a C function's signature line
    text = " ".join(paragraphs)
    m = re.match(r"(.+?[.!?])(\s|$)", text)
    if not m or not 10 <= len(m.group(1)) <= 200 or m.group(1).startswith(("..", ">>>", "-", "=")):
        return None
    rest = text[m.end():].strip()
    if len(rest) > rest_chars:
        rest = rest[:rest_chars].rsplit(" ", 1)[0] + " ..."
    return (m.group(1), rest) if len(rest) >= 40 else None


def signature(obj):
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):  # some builtins have none
        return ""


def documented(module_name):
    """[(qualified name, signature, docstring)] of a module's public functions, classes and their methods."""
    try:
        mod = importlib.import_module(module_name)
    except ImportError:  # a Python built without it (sqlite3, lzma, ...)
        return []
    home = mod.__name__.lstrip("_")  # os.path is posixpath; heapq's functions live in _heapq
    out = []
    for name, obj in sorted(vars(mod).items()):
        if name.startswith("_") or not (inspect.isroutine(obj) or inspect.isclass(obj)):
            continue
        if (getattr(obj, "__module__", None) or "").lstrip("_") != home:
            continue  # re-exported from elsewhere
        members = [(name, obj)]
        if inspect.isclass(obj):
            members += [(f"{name}.{m}", v) for m, v in sorted(vars(obj).items())
                        if not m.startswith("_") and inspect.isroutine(v)]
        for qual, o in members:
            doc = o.__doc__ if isinstance(getattr(o, "__doc__", None), str) else None
            if doc and doc.strip():
                out.append((f"{module_name}.{qual}", signature(o), inspect.cleandoc(doc)))
    return out


def build(seed=0):
    """The seven files' records, deterministic for a given Python version."""
    items = [(m, *it) for m in MODULES for it in documented(m)]
    rng = random.Random(seed)
    pretrain = [{"text": f"{qual}{sig}\n{doc}"} for _, qual, sig, doc in items]
    answers = [(m, qual, summary_and_rest(doc, qual.rsplit(".", 1)[-1])) for m, qual, _, doc in items]
    answers = [(m, q, sr[0], sr[1]) for m, q, sr in answers if sr]
    by_module = {}
    for m, q, s, _ in answers:
        by_module.setdefault(m, []).append(s)
    split = lambda q: int(hashlib.md5(q.encode()).hexdigest(), 16) % 20
    question = lambda q, rest: f"Write the one-line summary of {q}, documented as: {rest}"
    out = {k: [] for k in ("pretrain", "demos", "comparisons", "rl_prompts", "val_prompts", "test_prompts")}
    out["pretrain"] = pretrain
    for m, q, s, rest in answers:
        h = split(q)
        if h < 10:
            out["demos"].append({"prompt": question(q, rest), "response": s})
        elif h < 15:
            near = [x for x in by_module[m] if x != s]
            if not near:
                continue
            near = rng.choice(near)
            far = rng.choice([x for mm, _, x, _ in answers if mm != m and x not in (s, near)])
            responses = [s, near, far]  # best first
            order = rng.sample(range(3), 3)  # shown shuffled; `ranking` lists them best first
            out["comparisons"].append({"prompt": question(q, rest), "responses": [responses[i] for i in order],
                                       "ranking": [order.index(i) for i in range(3)]})
        else:
            out[{15: "rl", 16: "rl", 17: "rl", 18: "val", 19: "test"}[h] + "_prompts"].append({"prompt": question(q, rest)})
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="data/real", help="folder to write the JSONL files to")
    ap.add_argument("--seed", type=int, default=0, help="seed for the wrong answers of comparisons")
    args = ap.parse_args(argv)
    files = build(args.seed)
    for name, rows in files.items():
        write_jsonl(os.path.join(args.out, name + ".jsonl"), rows)
    chars = sum(len(r["text"]) for r in files["pretrain"])
    print(f"Python {sys.version.split()[0]} standard library docstrings -> {args.out}: "
          + ", ".join(f"{len(rows)} {name}" for name, rows in files.items()) + f" ({chars:,} characters of pretraining text)")


if __name__ == "__main__":
    main()
