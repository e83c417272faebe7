"""Tests for nanorlhf/data.py: round trips and one malformed file per error, each naming file:line."""
import json

import pytest

from nanorlhf.data import DataError, load_dataset, read_jsonl, write_jsonl

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
    with pytest.raises(DataError, match=rf"^{empty}: no records$"):
        read_jsonl(empty, "demos")
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(DataError, match=rf"^{missing}: no such file$"):
        read_jsonl(missing, "demos")
    with pytest.raises(ValueError, match="unknown kind"):
        read_jsonl(empty, "pictures")
    assert issubclass(DataError, ValueError)
