"""The real-text data set (Python's standard-library docstrings): valid files in the documented
formats, disjoint splits, and comparisons whose best answer is the function's own summary."""
import re

from nanorlhf import realtext
from nanorlhf.data import load_dataset


def test_files_load_and_splits_are_disjoint(tmp_path):
    realtext.main(["--out", str(tmp_path)])
    demos = load_dataset(str(tmp_path), "demos")
    comps = load_dataset(str(tmp_path), "comparisons")
    prompts = {s: [r["prompt"] for r in load_dataset(str(tmp_path), "prompts", s)] for s in ("rl", "val", "test")}
    pretrain = load_dataset(str(tmp_path), "pretrain")
    assert len(demos) > 300 and len(comps) > 150 and all(len(p) > 20 for p in prompts.values())
    name = lambda p: re.match(r"Write the one-line summary of (\S+), documented as", p).group(1)
    groups = [{name(d["prompt"]) for d in demos}, {name(c["prompt"]) for c in comps}] + \
        [{name(p) for p in ps} for ps in prompts.values()]
    assert sum(map(len, groups)) == len(set().union(*groups))  # no function in two splits
    docs = "\n".join(r["text"] for r in pretrain)
    for d in demos[:50]:  # each answer is real text from the docstrings pretraining reads
        assert d["response"] in " ".join(docs.split())


def test_comparisons_rank_the_own_summary_first():
    files = realtext.build()
    summaries = {}
    for m in realtext.MODULES:
        for qual, _, doc in realtext.documented(m):
            sr = realtext.summary_and_rest(doc, qual.rsplit(".", 1)[-1])
            if sr:
                summaries[qual] = sr[0]
    for c in files["comparisons"]:
        q = re.match(r"Write the one-line summary of (\S+), documented as", c["prompt"]).group(1)
        best, near, far = (c["responses"][i] for i in c["ranking"])
        assert best == summaries[q] and len({best, near, far}) == 3


def test_summary_skips_signature_lines_and_needs_a_rest():
    doc = "dumps(obj, indent=None)\n\nSerialize obj to a JSON string. More details follow here, enough of them."
    assert realtext.summary_and_rest(doc, "dumps") == ("Serialize obj to a JSON string.",
                                                       "More details follow here, enough of them.")
    assert realtext.summary_and_rest("Only a summary.", "f") is None
