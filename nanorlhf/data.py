"""
The data formats: JSON Lines, one record per line, validated on read.

Every training script takes `--data DIR` and reads these standard file names in it (write them
for the embedded world with `python -m nanorlhf.world --out DIR`, or bring your own):

    pretrain.jsonl       kind "pretrain"     {"text": "Bilo lives in Marn. Bilo has a cat."}
    demos.jsonl          kind "demos"        {"prompt": "Sort these numbers: 7 3 9 1", "response": "1 3 7 9"}
    comparisons.jsonl    kind "comparisons"  {"prompt": "List exactly 2 fruits.", "responses": ["Apple, banana.",
                                              "Apple.", "Pear, pear, plum."], "ranking": [0, 1, 2]}
    val_comparisons.jsonl  the same, optional: held-out comparisons (else train_rm.py holds out some)
    {split}_prompts.jsonl  kind "prompts"    {"prompt": "Where does Bilo live?"}
                         split in sft, rm, rl, val, test

`ranking` lists indices into `responses`, best first: a permutation of range(K), K >= 2.
Prompts and responses are plain text; the scripts add <|prompt|> / <|response|> / <|endoftext|>.

One prompt text per conversation, whatever the format (render_prompt): every reader turns its
prompt into turns [(role, text)], roles system / user / assistant, and renders them ONE way:

    one user turn          its text, stripped:   "Which country is Lisbon in?"
    any other conversation "Role: text" turns (System / User / Assistant), each text stripped,
                           joined by a blank line: "User: Hi\\n\\nAssistant: Hello!\\n\\nUser: Any cats?"

A prompt string (the "prompt" field of any format, *_prompts.jsonl) is one user turn, unless it is
Anthropic HH dialogue text ("\\n\\nHuman: ...\\n\\nAssistant: ..." , starting with "Human:" after
whitespace): then its Human / Assistant turns are the user / assistant turns, and the closing
empty "Assistant:" cue is dropped. So an RL prompt, a one-turn chat demonstration and an HH pair
about the same question all give the reward model and the policy the same text.

The formats people already have are read too, and turned into the records above, so the scripts
never see the difference. The format is detected per file, from its first record (the first
format whose fields it has, in the order below); every other line must then fit that format.
Other fields are ignored.

    demos.jsonl
      {"prompt", "response"}      ours
      {"prompt", "completion"}    trl's prompt-completion format (strings)
      {"messages": [{"role", "content"}, ...]}   chat: roles system / user / assistant. The last
                                  message must be the assistant's: it is the response. The turns
                                  before it are the prompt (render_prompt).
    comparisons.jsonl
      {"prompt", "responses", "ranking"}   ours; may add "acceptable": [bool per response], the
                                  labeler's yes/no that train_rm.py --objective binary learns
      {"prompt", "responses", "scores"}    ranked by score, highest first. Responses with the SAME
                                  score are merged: the first in the list is kept, the others
                                  dropped (the ranking loss needs a strict order, and a tied pair
                                  says nothing about which is better).
      {"prompt", "chosen", "rejected"}     trl's preference format, K = 2
      {"chosen", "rejected"}      Anthropic HH: two whole dialogues "\\n\\nHuman: ...\\n\\nAssistant: ...".
                                  The prompt is their shared turns up to the last "\\n\\nAssistant:"
                                  before they differ (render_prompt); the rest of each is its
                                  response (stripped of surrounding whitespace).
    A comparison left with fewer than two distinct responses (chosen == rejected, all scores tied)
    carries no preference: it is skipped, and the count is printed.

Strict JSON and UTF-8: NaN / Infinity, numbers out of float range, unpaired surrogate escapes and
bytes that are not UTF-8 are errors. A byte-order mark at the start of a file is allowed; blank
lines are skipped. Any line that cannot be used raises DataError naming the file and line, e.g.
"data/demos.jsonl:17: missing field 'response' (...)"; a first line that fits no format lists the
formats accepted.
"""
import json
import math
import os
import re

from nanorlhf.errors import UserError

FILES = {"pretrain": "pretrain.jsonl", "demos": "demos.jsonl", "comparisons": "comparisons.jsonl"}
SPLITS = ["sft", "rm", "rl", "val", "test", "heldout"]
ROLES = {"system": "System", "user": "User", "assistant": "Assistant"}  # chat role -> its name in a rendered prompt
HH_ASSISTANT = "\n\nAssistant:"
HH_ROLES = {"Human": "user", "Assistant": "assistant"}  # Anthropic HH's speakers -> chat roles


class DataError(UserError):
    """A data file that cannot be used; the message names file:line."""


# -----------------------------------------------------------------------------
# Fields: each check raises DataError with the problem (read_jsonl adds file:line)

def _field(rec, name, typ):
    if name not in rec:
        raise DataError(f"missing field {name!r}")
    value = rec[name]
    if not isinstance(value, typ) or isinstance(value, bool) and typ is not bool:
        raise DataError(f"field {name!r} must be {typ.__name__}, got {type(value).__name__}")
    return value


def _text(value, name):
    """A string that is also valid UTF-8: JSON's "\\ud800" escapes decode to unpaired surrogates,
    which the tokenizer cannot encode (it would fail mid-run, far from the line)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise DataError(f"field {name!r} holds an unpaired surrogate escape (\\ud800-\\udfff): not text") from None
    return value


def _str(rec, name):
    return _text(_field(rec, name, str), name)


def _prompt(rec, name="prompt"):
    prompt = render_prompt(text_turns(_str(rec, name)))
    if not prompt:
        raise DataError(f"empty {name}")
    return prompt


def _str_list(rec, name):
    values = _field(rec, name, list)
    if not all(isinstance(v, str) for v in values):
        raise DataError(f"field {name!r} must be a list of strings")
    return [_text(v, name) for v in values]


def _int_list(rec, name):
    values = _field(rec, name, list)
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in values):
        raise DataError(f"field {name!r} must be a list of ints")
    return values


# -----------------------------------------------------------------------------
# The canonical prompt: one rendering of a conversation, used by every reader (module docstring)

def render_prompt(turns):
    """[(role, text)] -> the prompt text: one user turn is its text; any other conversation is
    "Role: text" turns joined by a blank line. Texts are stripped."""
    turns = [(role, text.strip()) for role, text in turns]
    if len(turns) == 1 and turns[0][0] == "user":
        return turns[0][1]
    return "\n\n".join(f"{ROLES[role]}: {text}" for role, text in turns)


def text_turns(text):
    """A prompt string -> turns: Anthropic HH text ("Human: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\n
    Assistant:") is split into its turns, the closing empty assistant cue dropped; any other
    string is one user turn."""
    if not text.lstrip().startswith("Human:"):
        return [("user", text)]
    parts = re.split(r"(?:^|\n\n)(Human|Assistant):", text.lstrip())  # ['', 'Human', ' a', 'Assistant', ' b', ...]
    turns = [(HH_ROLES[who], said) for who, said in zip(parts[1::2], parts[2::2])]
    return turns[:-1] if len(turns) > 1 and turns[-1][0] == "assistant" and not turns[-1][1].strip() else turns


def _short(x, n=60):
    s = repr(x)
    return s if len(s) <= n else s[:n] + "..."


# -----------------------------------------------------------------------------
# Formats: each turns one record into ours, or None for a comparison with no preference left

def _ours_demo(rec):
    return {"prompt": _prompt(rec), "response": _str(rec, "response")}


def _trl_demo(rec):
    return {"prompt": _prompt(rec), "response": _str(rec, "completion")}


def _chat_demo(rec):
    messages = _field(rec, "messages", list)
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise DataError(f"messages[{i}] must be an object with string fields 'role' and 'content'")
        if m["role"] not in ROLES:
            raise DataError(f"messages[{i}]: role {_short(m['role'])} is not one of {sorted(ROLES)}")
        _text(m["content"], f"messages[{i}].content")
    if len(messages) < 2 or messages[-1]["role"] != "assistant":
        raise DataError("'messages' must end with an assistant turn (the response) after at least one other turn")
    prompt = render_prompt([(m["role"], m["content"]) for m in messages[:-1]])
    if not prompt:
        raise DataError("empty prompt (the turns before the last assistant turn)")
    return {"prompt": prompt, "response": messages[-1]["content"]}


def _ours_comparison(rec):
    prompt, responses, ranking = _prompt(rec), _str_list(rec, "responses"), _int_list(rec, "ranking")
    if len(responses) < 2:
        raise DataError(f"need K >= 2 responses, got {len(responses)}")
    if sorted(ranking) != list(range(len(responses))):
        raise DataError(f"ranking {_short(ranking)} is not a permutation of range({len(responses)})")
    out = {"prompt": prompt, "responses": responses, "ranking": ranking}
    if "acceptable" in rec:  # optional: the labeler's yes/no per response (train_rm.py --objective binary)
        ok = _field(rec, "acceptable", list)
        if len(ok) != len(responses) or not all(isinstance(a, bool) for a in ok):
            raise DataError(f"field 'acceptable' must be {len(responses)} booleans, one per response")
        out["acceptable"] = ok
    return out


def _scored_comparison(rec):
    prompt, responses, scores = _prompt(rec), _str_list(rec, "responses"), _field(rec, "scores", list)
    if not all(isinstance(s, (int, float)) and not isinstance(s, bool) and math.isfinite(s) for s in scores):
        raise DataError("field 'scores' must be a list of finite numbers")
    if len(scores) != len(responses):
        raise DataError(f"{len(responses)} responses but {len(scores)} scores")
    if len(responses) < 2:
        raise DataError(f"need K >= 2 responses, got {len(responses)}")
    keep = list({s: i for i, s in reversed(list(enumerate(scores)))}.values())  # first response of each score
    if len(keep) < 2:
        return None
    keep.sort()
    ranking = sorted(range(len(keep)), key=lambda j: -scores[keep[j]])
    return {"prompt": prompt, "responses": [responses[i] for i in keep], "ranking": ranking}


def _pair_comparison(rec):
    prompt, chosen, rejected = _prompt(rec), _str(rec, "chosen"), _str(rec, "rejected")
    return None if chosen == rejected else {"prompt": prompt, "responses": [chosen, rejected], "ranking": [0, 1]}


def _hh_comparison(rec):
    chosen, rejected = _str(rec, "chosen"), _str(rec, "rejected")
    shared = len(os.path.commonprefix([chosen, rejected]))
    cut = chosen.rfind(HH_ASSISTANT, 0, shared)
    if cut < 0:
        raise DataError("'chosen' and 'rejected' share no '\\n\\nAssistant:' turn: not an Anthropic HH dialogue pair")
    cut += len(HH_ASSISTANT)
    prompt, responses = render_prompt(text_turns(chosen[:cut])), [chosen[cut:].strip(), rejected[cut:].strip()]
    if responses[0] == responses[1]:
        return None
    return {"prompt": prompt, "responses": responses, "ranking": [0, 1]}


FORMATS = {  # kind -> [(fields that identify the format, description, record -> our record)], in detection order
    "pretrain": [(("text",), '{"text"}', lambda rec: {"text": _str(rec, "text")})],
    "demos": [(("prompt", "response"), '{"prompt", "response"}', _ours_demo),
              (("prompt", "completion"), '{"prompt", "completion"} (trl)', _trl_demo),
              (("messages",), '{"messages": [{"role", "content"}, ...]} (chat)', _chat_demo)],
    "comparisons": [(("prompt", "responses", "ranking"), '{"prompt", "responses", "ranking"}', _ours_comparison),
                    (("prompt", "responses", "scores"), '{"prompt", "responses", "scores"}', _scored_comparison),
                    (("prompt", "chosen", "rejected"), '{"prompt", "chosen", "rejected"} (trl)', _pair_comparison),
                    (("chosen", "rejected"), '{"chosen", "rejected"} (Anthropic HH dialogues)', _hh_comparison)],
    "prompts": [(("prompt",), '{"prompt"}', lambda rec: {"prompt": _prompt(rec)})],
}


def _detect(rec, kind):
    """The format of a file, from its first record."""
    if not isinstance(rec, dict):
        raise DataError(f"expected a JSON object, got {type(rec).__name__}")
    for fields, description, convert in FORMATS[kind]:
        if all(f in rec for f in fields):
            return description, convert
    if len(FORMATS[kind]) == 1:  # one format: say which field is missing
        return FORMATS[kind][0][1:]
    keys = ", ".join(_short(k, 30) for k in list(rec)[:8]) + (", ..." if len(rec) > 8 else "")
    raise DataError(f"fits no {kind} format (fields: {keys or 'none'}); accepted: "
                    + "; ".join(d for _, d, _ in FORMATS[kind]) + " (see nanorlhf/data.py)")


# -----------------------------------------------------------------------------
# Reading and writing

def _reject_constant(name):
    raise DataError(f"{name} is not valid JSON (write null, or a number)")


def _finite_float(s):
    x = float(s)
    if not math.isfinite(x):
        raise DataError(f"number {_short(s, 30)} is out of range")
    return x


def _parse(line):
    try:
        return json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)
    except RecursionError:
        raise DataError("bad JSON (nested too deeply)") from None
    except ValueError as e:  # JSONDecodeError, or an integer longer than Python's 4300-digit limit
        raise DataError(f"bad JSON ({e.msg if isinstance(e, json.JSONDecodeError) else str(e).split(':')[0]})") from None


def _lines(path):
    """(line number, text) of the non-blank lines. Bytes are decoded line by line, so a byte that
    is not UTF-8 is reported with its line (a UTF-8 sequence never contains the newline byte)."""
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            if lineno == 1 and raw.startswith(b"\xef\xbb\xbf"):  # byte-order mark, as some editors write
                raw = raw[3:]
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} at column {e.start + 1}); "
                                "save the file as UTF-8") from None
            if line.strip():
                yield lineno, line


def read_jsonl(path, kind):
    """Read and validate a JSONL file of the given kind, in any of its formats -> list of our records."""
    if kind not in FORMATS:
        raise ValueError(f"unknown kind {kind!r}: expected one of {sorted(FORMATS)}")
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    rows, skipped, fmt = [], 0, None
    for lineno, line in _lines(path):
        try:
            rec = _parse(line)
            if fmt is None:
                fmt, first = _detect(rec, kind), lineno
            elif not isinstance(rec, dict):
                raise DataError(f"expected a JSON object, got {type(rec).__name__}")
            out = fmt[1](rec)
        except DataError as e:
            where = "" if fmt is None or lineno == first else f" (format {fmt[0]}, detected from line {first})"
            raise DataError(f"{path}:{lineno}: {e}{where}") from None
        if out is None:
            skipped += 1
        else:
            rows.append(out)
    if skipped:
        print(f"[data] {path}: skipped {skipped} comparisons whose responses are all identical or tied in score "
              "(no preference to learn)", flush=True)
    if not rows:
        raise DataError(f"{path}: no records" + (f" left ({skipped} skipped)" if skipped else
                                                 " (empty or blank; one JSON object per line, see nanorlhf/data.py)"))
    return rows


def write_jsonl(path, rows):
    """Write rows atomically: a reader never sees a half-written file."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def load_dataset(data_dir, kind, split=None, optional=False, hint=""):
    """Read the standard file of `kind` in a --data directory; prompts need a split (e.g. "rl").
    `optional`: a missing file gives [] instead of an error. `hint`: what to do if it is missing."""
    if kind == "prompts":
        if split not in SPLITS:
            raise ValueError(f"prompts need split in {SPLITS}, got {split!r}")
        name = f"{split}_prompts.jsonl"
    elif split is not None:  # e.g. val_comparisons.jsonl
        name = f"{split}_{FILES[kind]}"
    else:
        name = FILES[kind]
    if not os.path.isdir(data_dir):
        raise DataError(f"--data {data_dir}: " + ("is a file, not a" if os.path.exists(data_dir) else "no such") +
                        " folder (give the folder that holds demos.jsonl, comparisons.jsonl, ...)")
    path = os.path.join(data_dir, name)
    if not os.path.exists(path):
        if optional:
            return []
        raise DataError(f"{path}: no such file (--data {data_dir} needs {name}{'; ' + hint if hint else ''})")
    return read_jsonl(path, kind)
