"""
The data formats: JSON Lines, one record per line, validated on read.

Every training script takes `--data DIR` and reads these standard file names in it (write them
for the embedded world with `python -m nanorlhf.world --out DIR`, or bring your own):

    pretrain.jsonl       kind "pretrain"     {"text": "Bilo lives in Marn. Bilo has a cat."}
    demos.jsonl          kind "demos"        {"prompt": "Sort these numbers: 7 3 9 1", "response": "1 3 7 9"}
    comparisons.jsonl    kind "comparisons"  {"prompt": "List exactly 2 fruits.", "responses": ["Apple, banana.",
                                              "Apple.", "Pear, pear, plum."], "ranking": [0, 1, 2]}
    {split}_prompts.jsonl  kind "prompts"    {"prompt": "Where does Bilo live?"}
                         split in sft, rm, rl, val, test

`ranking` lists indices into `responses`, best first: a permutation of range(K), K >= 2.
Prompts and responses are plain text; the scripts add <|prompt|> / <|response|> / <|endoftext|>.
A malformed line raises DataError naming the file and line: "data/demos.jsonl:17: missing field 'response'".
Blank lines are skipped.
"""
import json
import os

FIELDS = {  # kind -> {field: type}
    "pretrain": {"text": str},
    "demos": {"prompt": str, "response": str},
    "comparisons": {"prompt": str, "responses": list, "ranking": list},
    "prompts": {"prompt": str},
}
FILES = {"pretrain": "pretrain.jsonl", "demos": "demos.jsonl", "comparisons": "comparisons.jsonl"}
SPLITS = ["sft", "rm", "rl", "val", "test"]


class DataError(ValueError):
    """A data file that cannot be used; the message names file:line."""


def _check(rec, kind):
    """The problem with one record, or None."""
    if not isinstance(rec, dict):
        return f"expected a JSON object, got {type(rec).__name__}"
    for field, typ in FIELDS[kind].items():
        if field not in rec:
            return f"missing field {field!r}"
        if not isinstance(rec[field], typ):
            return f"field {field!r} must be {typ.__name__}, got {type(rec[field]).__name__}"
    if "prompt" in rec and not rec["prompt"].strip():
        return "empty prompt"
    if kind == "comparisons":
        responses, ranking = rec["responses"], rec["ranking"]
        if not all(isinstance(r, str) for r in responses):
            return "field 'responses' must be a list of strings"
        if not all(isinstance(i, int) and not isinstance(i, bool) for i in ranking):
            return "field 'ranking' must be a list of ints"
        if len(responses) < 2:
            return f"need K >= 2 responses, got {len(responses)}"
        if sorted(ranking) != list(range(len(responses))):
            return f"ranking {ranking} is not a permutation of range({len(responses)})"
    return None


def read_jsonl(path, kind):
    """Read and validate a JSONL file of the given kind -> list of dicts."""
    if kind not in FIELDS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {sorted(FIELDS)}")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: bad JSON ({e.msg})") from None
            problem = _check(rec, kind)
            if problem:
                raise DataError(f"{path}:{lineno}: {problem}")
            rows.append(rec)
    if not rows:
        raise DataError(f"{path}: no records")
    return rows


def write_jsonl(path, rows):
    """Write rows atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def load_dataset(data_dir, kind, split=None, optional=False):
    """Read the standard file of `kind` in a --data directory; prompts need a split (e.g. "rl").
    `optional`: a missing file gives [] instead of an error."""
    if kind == "prompts":
        if split not in SPLITS:
            raise ValueError(f"prompts need split in {SPLITS}, got {split!r}")
        name = f"{split}_prompts.jsonl"
    else:
        name = FILES[kind]
    path = os.path.join(data_dir, name)
    return [] if optional and not os.path.exists(path) else read_jsonl(path, kind)
