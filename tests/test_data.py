"""Tests for nanorlhf/data.py: round trips, the formats people already have (each read back to our
record), one malformed file per error, and a fuzz test: malformed lines of every kind always give a
one-line DataError naming file:line, never another exception."""
import json
import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nanorlhf.checkpoint import save_checkpoint
from nanorlhf.data import ROLES, DataError, load_dataset, read_jsonl, render_prompt, write_jsonl
from nanorlhf.errors import UserError
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

GOOD = {
    "pretrain": [{"text": "Bilo lives in Marn."}, {"text": "The fox is red."}],
    "demos": [{"prompt": "Sort these numbers: 7 3 9 1", "response": "1 3 7 9"},
              {"prompt": "List exactly 2 fruits.", "response": "Apple, banana."}],
    "comparisons": [{"prompt": "List exactly 2 fruits.", "responses": ["Apple, banana.", "Apple.", "Pear, pear."],
                     "ranking": [0, 1, 2]},
                    {"prompt": "How old is Bilo?", "responses": ["I don't know.", "He is 40."], "ranking": [1, 0]}],
    "prompts": [{"prompt": "Where does Bilo live?"}, {"prompt": "Roast my friend Tam."}],
}


@pytest.mark.parametrize("kind", list(GOOD))
def test_roundtrip(tmp_path, kind):
    path = tmp_path / f"{kind}.jsonl"
    write_jsonl(path, GOOD[kind])
    assert read_jsonl(path, kind) == GOOD[kind]
    assert [p.name for p in tmp_path.iterdir()] == [f"{kind}.jsonl"]  # no temp file left behind


def test_blank_lines_skipped_and_unicode(tmp_path):
    path = tmp_path / "demos.jsonl"
    path.write_text('\n{"prompt": "caf\\u00e9?", "response": "ok"}\n\n', encoding="utf-8")
    assert read_jsonl(path, "demos") == [{"prompt": "café?", "response": "ok"}]


def test_load_dataset_layout(tmp_path):
    write_jsonl(tmp_path / "demos.jsonl", GOOD["demos"])
    write_jsonl(tmp_path / "rl_prompts.jsonl", GOOD["prompts"])
    assert load_dataset(tmp_path, "demos") == GOOD["demos"]
    assert load_dataset(tmp_path, "prompts", "rl") == GOOD["prompts"]
    with pytest.raises(ValueError, match="split"):
        load_dataset(tmp_path, "prompts")


def comp(**kw):
    row = {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, 0, 1]}
    row.update(kw)
    return json.dumps(row)


BAD = [  # (kind, second line of the file, expected message after "file:2: ")
    ("demos", '{"prompt": "p", "response": "r"', "bad JSON"),
    ("demos", '["prompt", "response"]', "expected a JSON object, got list"),
    ("demos", '{"prompt": "p"}', "missing field 'response'"),
    ("demos", '{"prompt": "p", "response": 3}', "field 'response' must be str, got int"),
    ("demos", '{"prompt": "  ", "response": "r"}', "empty prompt"),
    ("pretrain", '{"txt": "hello"}', "missing field 'text'"),
    ("prompts", '{"prompt": null}', "field 'prompt' must be str, got NoneType"),
    ("comparisons", comp(ranking="0 1 2"), "field 'ranking' must be list, got str"),
    ("comparisons", comp(ranking=[0, 1, "2"]), "field 'ranking' must be a list of ints"),
    ("comparisons", comp(ranking=[0.0, 1, 2]), "field 'ranking' must be a list of ints"),
    ("comparisons", comp(responses=["a", 1, "c"]), "field 'responses' must be a list of strings"),
    ("comparisons", comp(ranking=[0, 1, 1]), "ranking [0, 1, 1] is not a permutation of range(3)"),
    ("comparisons", comp(ranking=[0, 1]), "ranking [0, 1] is not a permutation of range(3)"),
    ("comparisons", comp(responses=["a"], ranking=[0]), "need K >= 2 responses, got 1"),
    ("comparisons", comp(acceptable=[True, False]), "field 'acceptable' must be 3 booleans"),
    ("comparisons", comp(acceptable=[1, 0, 1]), "field 'acceptable' must be 3 booleans"),
]


@pytest.mark.parametrize("kind,line,message", BAD)
def test_malformed_names_file_and_line(tmp_path, kind, line, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(GOOD[kind][0]) + "\n" + line + "\n")
    with pytest.raises(DataError) as e:
        read_jsonl(path, kind)
    assert str(e.value).startswith(f"{path}:2: {message}"), str(e.value)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "demos.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match=rf"^{empty}: no records \(empty or blank"):
        read_jsonl(empty, "demos")
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=rf"^{missing}: no such file$"):
        read_jsonl(missing, "demos")
    with pytest.raises(ValueError, match="unknown kind"):
        read_jsonl(empty, "pictures")
    assert issubclass(DataError, UserError)


def test_data_folder_errors(tmp_path):
    with pytest.raises(DataError, match=r"^--data .*nowhere: no such folder \(give the folder that holds"):
        load_dataset(tmp_path / "nowhere", "demos")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match=r"^--data .*file: is a file, not a folder"):
        load_dataset(tmp_path / "file", "demos")
    with pytest.raises(DataError, match=r"pretrain.jsonl: no such file \(--data .* needs pretrain.jsonl; or --init"):
        load_dataset(tmp_path, "pretrain", hint="or --init")
    assert load_dataset(tmp_path, "demos", optional=True) == []


# -----------------------------------------------------------------------------
# The formats people already have, each read back to our record

TURNS = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"},
         {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a fruit."},
         {"role": "assistant", "content": "Apple."}]
HH_PROMPT = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: Do you like cats?\n\nAssistant:"

FORMATS = [  # (kind, a record in a format people have, the record of ours it becomes)
    ("demos", {"prompt": "p", "response": "r", "extra": 1}, {"prompt": "p", "response": "r"}),
    ("demos", {"prompt": "p", "completion": "c"}, {"prompt": "p", "response": "c"}),
    ("demos", {"messages": TURNS[1:3]}, {"prompt": "Hi?", "response": "Hello."}),
    ("demos", {"messages": TURNS},
     {"prompt": "System: Be brief.\n\nUser: Hi?\n\nAssistant: Hello.\n\nUser: Name a fruit.", "response": "Apple."}),
    ("comparisons", {"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1]}),
    ("comparisons", {"prompt": "p", "responses": ["a", "b", "c"], "scores": [0.5, 2, -1]},
     {"prompt": "p", "responses": ["a", "b", "c"], "ranking": [1, 0, 2]}),
    # a tie: "c" has the score of "a", which comes first and stays; "c" is dropped
    ("comparisons", {"prompt": "p", "responses": ["a", "b", "c", "d"], "scores": [1, 3, 1.0, 2]},
     {"prompt": "p", "responses": ["a", "b", "d"], "ranking": [1, 2, 0]}),
    # Anthropic HH: the responses share "I" after the last common "Assistant:", which stays in them
    ("comparisons", {"chosen": HH_PROMPT + " I do, they are cute.", "rejected": HH_PROMPT + " I hate them."},
     {"prompt": "User: Hi\n\nAssistant: Hello!\n\nUser: Do you like cats?", "responses": ["I do, they are cute.",
                                                                                       "I hate them."], "ranking": [0, 1]}),
]


@pytest.mark.parametrize("kind,theirs,ours", FORMATS)
def test_formats_people_have_read_as_ours(tmp_path, kind, theirs, ours):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [theirs, theirs])
    assert read_jsonl(path, kind) == [ours, ours]


def test_comparisons_without_a_preference_are_skipped(tmp_path, capsys):
    path = tmp_path / "comparisons.jsonl"
    write_jsonl(path, [{"prompt": "p", "chosen": "a", "rejected": "b"}, {"prompt": "p", "chosen": "a", "rejected": "a"}])
    assert len(read_jsonl(path, "comparisons")) == 1
    assert "skipped 1 comparisons" in capsys.readouterr().out
    write_jsonl(path, [{"prompt": "p", "responses": ["a", "b"], "scores": [1, 1]}])
    with pytest.raises(DataError, match=r": no records left \(1 skipped\)$"):
        read_jsonl(path, "comparisons")


FORMAT_ERRORS = [  # (kind, first line, second line, message after "file:2: ")
    ("demos", {"prompt": "p", "response": "r"}, {"prompt": "p", "completion": "c"},
     "missing field 'response' (format {\"prompt\", \"response\"}, detected from line 1)"),
    ("demos", {"messages": TURNS[1:3]}, {"messages": TURNS[1:2]}, "'messages' must end with an assistant turn"),
    ("demos", {"messages": TURNS[1:3]}, {"messages": [{"role": "bot", "content": "x"}] + TURNS[2:3]},
     "messages[0]: role 'bot' is not one of"),
    ("demos", {"messages": TURNS[1:3]}, {"messages": [TURNS[1], {"role": "assistant"}]},
     "messages[1] must be an object with string fields 'role' and 'content'"),
    ("comparisons", FORMATS[5][1], {"prompt": "p", "responses": ["a", "b"], "scores": [1, float("nan")]},
     "NaN is not valid JSON"),
    ("comparisons", FORMATS[5][1], {"prompt": "p", "responses": ["a", "b"], "scores": [1]}, "2 responses but 1 scores"),
    ("comparisons", FORMATS[7][1], {"chosen": "Hello", "rejected": "Help"}, "'chosen' and 'rejected' share no"),
    ("pretrain", {"text": "t"}, {"text": "\ud800"}, "field 'text' holds an unpaired surrogate escape"),
]


@pytest.mark.parametrize("kind,first,second,message", FORMAT_ERRORS)
def test_format_errors_name_file_and_line(tmp_path, kind, first, second, message):
    path = tmp_path / "data.jsonl"
    path.write_text(json.dumps(first) + "\n" + json.dumps(second) + "\n")  # json.dumps writes NaN: not strict JSON
    with pytest.raises(DataError) as e:
        read_jsonl(path, kind)
    assert str(e.value).startswith(f"{path}:2: {message}"), str(e.value)


def test_a_line_fitting_no_format_lists_the_formats(tmp_path):
    path = tmp_path / "comparisons.jsonl"
    path.write_text('{"question": "q", "answer": "a"}\n')
    with pytest.raises(DataError) as e:
        read_jsonl(path, "comparisons")
    assert str(e.value) == (f"{path}:1: fits no comparisons format (fields: 'question', 'answer'); accepted: "
                            '{"prompt", "responses", "ranking"}; {"prompt", "responses", "scores"}; '
                            '{"prompt", "chosen", "rejected"} (trl); {"chosen", "rejected"} (Anthropic HH dialogues) '
                            "(see nanorlhf/data.py)")


def test_bom_at_start_is_fine_bad_utf8_names_its_line(tmp_path):
    path = tmp_path / "demos.jsonl"
    line = json.dumps(GOOD["demos"][0]).encode()
    path.write_bytes(b"\xef\xbb\xbf" + line + b"\n" + line + b"\n")
    assert read_jsonl(path, "demos") == [GOOD["demos"][0]] * 2
    path.write_bytes(line + b"\n\n" + line[:5] + b"\xe9" + line[5:] + b"\n")  # latin-1 e-acute
    with pytest.raises(DataError, match=rf"^{path}:3: not UTF-8 text \(byte 0xe9 at column 6\); save the file as UTF-8$"):
        read_jsonl(path, "demos")
    path.write_bytes(line + b"\n\xef\xbb\xbf" + line + b"\n")  # a byte-order mark inside the file
    with pytest.raises(DataError, match=rf"^{path}:2: bad JSON"):
        read_jsonl(path, "demos")


# -----------------------------------------------------------------------------
# Fuzz: malformed lines of every kind -> DataError naming file:line, never another exception

VALID = {  # kind -> one record per format
    "demos": [{"prompt": "Sort: 3 1", "response": "1 3"}, {"prompt": "Sort: 3 1", "completion": "1 3"},
              {"messages": TURNS[1:3]}],
    "comparisons": [{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [2, 0, 1]},
                    {"prompt": "p", "responses": ["a", "b", "c"], "scores": [0.5, -1, 2]},
                    {"prompt": "p", "chosen": "a", "rejected": "b"}, FORMATS[7][1]],
    "pretrain": [{"text": "Bilo lives in Marn."}],
    "prompts": [{"prompt": "Where does Bilo live?"}],
}
FIELD_NAMES = {k for records in VALID.values() for r in records for k in r}


def could_be_valid(field, value):
    """False when `value` surely makes a record invalid in `field` (a conservative oracle)."""
    if field == "responses":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if field == "ranking":
        return isinstance(value, list) and all(type(i) is int for i in value) and sorted(value) == [0, 1, 2]
    if field == "scores":
        return isinstance(value, list) and len(value) == 3 and all(type(x) in (int, float) for x in value)
    if field == "messages":
        return isinstance(value, list) and len(value) >= 2 and all(
            isinstance(m, dict) and m.get("role") in ROLES and isinstance(m.get("content"), str) for m in value) \
            and value[-1]["role"] == "assistant"
    return isinstance(value, str)


json_values = st.recursive(  # nested garbage
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
semantic_values = st.one_of(  # the right type, the wrong content
    st.lists(st.integers(-2, 5), max_size=5), st.lists(st.text(max_size=5), max_size=1),
    st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=6),
    st.lists(st.fixed_dictionaries({"role": st.sampled_from(list(ROLES)) | st.text(max_size=5), "content": st.text()}),
             max_size=4))
LITERALS = st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 5000, "[1e309]",
                            "[" * 100_000 + "]" * 100_000])  # huge numbers, non-finite, nested too deep
BAD_UTF8 = st.sampled_from([b"\xff", b"\xfe", b"\x80", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\xf8\x88\x80\x80\x80"])


@st.composite
def malformed_line(draw, record):
    """One line (bytes, no newline) that no reader may accept as a record of `record`'s format."""
    text = json.dumps(record)
    how = draw(st.sampled_from(["truncated", "wrong value", "raw literal", "bad utf-8", "not an object",
                                "no known field", "random bytes", "bom + truncated"]))
    if how in ("truncated", "bom + truncated"):
        cut = text.encode()[:draw(st.integers(1, len(text) - 1))]
        return (b"\xef\xbb\xbf" if how == "bom + truncated" else b"") + cut
    if how == "wrong value":
        field = draw(st.sampled_from(sorted(record)))
        value = draw(json_values | semantic_values)
        assume(not could_be_valid(field, value))
        return json.dumps({**record, field: value}).encode()
    if how == "raw literal":
        field = draw(st.sampled_from(sorted(record)))
        return json.dumps({**record, field: "@@"}).replace('"@@"', draw(LITERALS)).encode()
    if how == "bad utf-8":
        raw, at = text.encode(), draw(st.integers(0, len(text)))
        return raw[:at] + draw(BAD_UTF8) + raw[at:]
    if how == "not an object":
        return json.dumps(draw(json_values.filter(lambda v: not isinstance(v, dict)))).encode()
    if how == "no known field":
        keys = st.text(max_size=8).filter(lambda k: k not in FIELD_NAMES)
        return json.dumps(draw(st.dictionaries(keys, json_values, max_size=4))).encode()
    raw = draw(st.binary(min_size=1, max_size=40).filter(lambda b: b"\n" not in b))
    try:
        assume(raw.decode("utf-8").strip())  # not a blank line
    except UnicodeDecodeError:
        pass
    return raw


@settings(max_examples=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_malformed_line_is_a_one_line_data_error(tmp_path, data):
    kind = data.draw(st.sampled_from(sorted(VALID)))
    record = data.draw(st.sampled_from(VALID[kind]))
    before, after = data.draw(st.integers(0, 3)), data.draw(st.integers(0, 2))
    good = json.dumps(record).encode()
    bad = data.draw(malformed_line(record))
    path = tmp_path / "data.jsonl"
    path.write_bytes(b"\n".join([good] * before + [bad] + [good] * after) + b"\n")
    with pytest.raises(DataError) as e:  # any other exception fails the test
        read_jsonl(path, kind)
    message = str(e.value)
    assert message.startswith(f"{path}:{before + 1}: ") and "\n" not in message, (bad, message)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(sorted(VALID)), bom=st.booleans(),
       lines=st.lists(st.text(alphabet=" \t\r\x0b\x0c", max_size=3), max_size=5))
def test_fuzz_empty_and_blank_files_say_no_records(tmp_path, kind, bom, lines):
    path = tmp_path / "data.jsonl"
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + "\n".join(lines).encode())
    with pytest.raises(DataError) as e:
        read_jsonl(path, kind)
    assert str(e.value).startswith(f"{path}: no records") and "\n" not in str(e.value)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(prompt=st.text(min_size=1).filter(lambda p: p.strip() and not p.lstrip().startswith("Human:")), response=st.text(),
       fmt=st.sampled_from(["response", "completion", "messages"]))
def test_fuzz_any_text_reads_back_in_every_demo_format(tmp_path, prompt, response, fmt):
    rec = {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]} \
        if fmt == "messages" else {"prompt": prompt, fmt: response}
    path = tmp_path / "demos.jsonl"
    write_jsonl(path, [rec])
    assert read_jsonl(path, "demos") == [{"prompt": prompt.strip(), "response": response}]  # render_prompt


# -----------------------------------------------------------------------------
# The scripts see only our records: chat demonstrations and HH comparisons train SFT and the RM

def test_formats_people_have_train_through_the_scripts(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    run = lambda script, *args: subprocess.run([sys.executable, os.path.join(root, script), *map(str, args)],
                                               capture_output=True, text=True, env=env, cwd=root, timeout=300)
    enc = get_tokenizer()
    save_checkpoint(str(tmp_path / "base.pt"), GPT(GPTConfig(vocab_size=enc.n_vocab, n_layer=1, n_head=2, n_embd=16,
                                                             block_size=64)), enc, "policy")
    data = tmp_path / "data"
    write_jsonl(data / "demos.jsonl", [{"messages": [{"role": "user", "content": f"Say hi to {i}."},
                                                     {"role": "assistant", "content": "Hi!"}]} for i in range(40)])
    hh = lambda i, answer: f"\n\nHuman: Say hi to {i}.\n\nAssistant: {answer}"
    write_jsonl(data / "comparisons.jsonl", [{"chosen": hh(i, "Hi!"), "rejected": hh(i, "No.")} for i in range(40)]
                + [{"chosen": hh(0, "Hi!"), "rejected": hh(0, "Hi!")}])
    p = run("train_sft.py", "--quick", "--data", data, "--init", tmp_path / "base.pt", "--batch-size", 4,
            "--out", tmp_path / "sft")
    assert p.returncode == 0, p.stderr[-3000:]
    p = run("train_rm.py", "--quick", "--data", data, "--sft", tmp_path / "sft/model.pt", "--batch-size", 4,
            "--out", tmp_path / "rm")
    assert p.returncode == 0, p.stderr[-3000:]
    assert "comparisons.jsonl: skipped 1 comparisons" in p.stdout
    assert json.load(open(tmp_path / "rm/metrics.json"))["n_comparisons"] == 36  # 40 kept, 4 held out


# -----------------------------------------------------------------------------
# One conversation, one prompt: every format renders its prompt through data.render_prompt

@pytest.mark.parametrize("turns", [
    [("user", "Which country is Lisbon in?")],
    [("user", "Hi"), ("assistant", "Hello!"), ("user", "Do you like cats?")],
])
def test_one_conversation_gives_one_prompt_in_every_format(tmp_path, turns):
    """The same conversation as an RL prompt, a demonstration (ours, trl's, chat), a comparison
    (ours, scored, trl's, Anthropic HH whole dialogues) and an HH-text prompt: one prompt text."""
    hh = "".join(f"\n\n{'Human' if r == 'user' else 'Assistant'}: {t}" for r, t in turns) + "\n\nAssistant:"
    text = turns[0][1] if len(turns) == 1 else hh  # what a user writes in a "prompt" field
    chat = [{"role": r, "content": t} for r, t in turns]
    records = {
        "prompts": [{"prompt": text}, {"prompt": hh}, {"prompt": "  " + text + "\n"}],
        "demos": [{"prompt": text, "response": "r"}, {"prompt": hh, "completion": "r"},
                  {"messages": chat + [{"role": "assistant", "content": "r"}]}],
        "comparisons": [{"prompt": text, "responses": ["a", "b"], "ranking": [0, 1]},
                        {"prompt": hh, "responses": ["a", "b"], "scores": [1, 0]},
                        {"prompt": text, "chosen": "a", "rejected": "b"},
                        {"chosen": hh + " a", "rejected": hh + " b"}],
    }
    prompts = set()
    for kind, recs in records.items():
        for i, rec in enumerate(recs):
            path = tmp_path / f"{kind}{i}.jsonl"
            write_jsonl(path, [rec])
            prompts.add(read_jsonl(path, kind)[0]["prompt"])
    assert prompts == {render_prompt(turns)}
    assert render_prompt(turns) == ("Which country is Lisbon in?" if len(turns) == 1 else
                                    "User: Hi\n\nAssistant: Hello!\n\nUser: Do you like cats?")
