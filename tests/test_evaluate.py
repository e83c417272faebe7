"""Tests for the evaluation statistics: Wilson intervals, the RM's Bayes ceiling against a noisy
labeler, best-of-n selection and its KL, and win rates with ties and families."""
import math
import random
import types

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanorlhf import agreement as A
from nanorlhf import world as W
from nanorlhf.evaluate import best_of_n, bon_kl, gold_report, shows_habit, wilson, win_rate
from nanorlhf.tokenizer import get_tokenizer


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_contains_the_rate_and_stays_in_0_1(k, n):
    k = min(k, n)
    lo, hi = wilson(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_known_value_and_shrinks_with_n():
    lo, hi = wilson(66, 600)  # 11% of 600
    assert lo == pytest.approx(0.0872, abs=1e-3) and hi == pytest.approx(0.1376, abs=1e-3)
    assert wilson(660, 6000)[1] - wilson(660, 6000)[0] < hi - lo


def test_bayes_ceiling_exact_on_one_pair_and_above_agreement():
    p = "Sort these numbers: 7 3 9 1"
    rs = ["1 3 7 9", "1 3 9 7"]
    d = W.score(p, rs[0])["total"] - W.score(p, rs[1])["total"]
    q = 1 / (1 + math.exp(-d / W.TAU))
    assert A.bayes_ceiling([p], [rs]) == pytest.approx(max(q, 1 - q))
    assert A.expected_agreement([p], [rs], W.TAU) == pytest.approx(q * q + (1 - q) * (1 - q))
    rng = random.Random(0)
    prompts = [W.make_world(scale=0.05)["val_prompts"][i] for i in range(10)]
    samples = [W.sample_responses(x, 6, rng) for x in prompts]
    assert A.bayes_ceiling(prompts, samples) > A.expected_agreement(prompts, samples, W.TAU)


def test_bayes_ceiling_is_what_the_gold_score_achieves():
    """Simulate: the gold order's accuracy against sampled noisy rankings converges to the ceiling."""
    rng = random.Random(1)
    prompts = W.make_world(scale=0.05)["val_prompts"][:20]
    samples = [W.sample_responses(x, 6, rng) for x in prompts]
    hits = total = 0
    for _ in range(30):
        for x, rs in zip(prompts, samples):
            pos = {i: k for k, i in enumerate(W.rank(x, rs, rng))}
            s = [W.score(x, r)["total"] for r in rs]
            for i in range(len(rs)):
                for j in range(i + 1, len(rs)):
                    if rs[i] != rs[j]:
                        total += 1
                        hits += 0.5 if s[i] == s[j] else ((s[i] > s[j]) == (pos[i] < pos[j]))
    assert hits / total == pytest.approx(A.bayes_ceiling(prompts, samples), abs=0.015)


class LengthRM(torch.nn.Module):
    """A stand-in reward model: the score is the sequence length."""
    config = types.SimpleNamespace(scalar_head=True)  # a scalar head: evaluate.pm_scores reads r(x, y)

    def forward(self, ids, lengths):
        return lengths.float()


def test_best_of_n_picks_the_rm_argmax_among_the_first_n():
    enc = get_tokenizer()
    prompts = ["a", "b"]
    samples = [["x", "x x x", "x x", "x x x x x"], ["y y", "y", "y y y", "y"]]
    stopped = [[True] * 4, [True, True, False, True]]  # a cut sample is chosen only if all are
    picks = best_of_n(LengthRM(), enc, prompts, samples, stopped, (1, 2, 4), torch.device("cpu"))
    assert picks[1] == ["x", "y y"] and picks[2] == ["x x x", "y y"] and picks[4] == ["x x x x x", "y y"]


@pytest.mark.parametrize("n", [1, 2, 4, 16, 64])
def test_bon_kl_is_the_kl_of_the_best_of_n_distribution(n):
    """KL(best-of-n || base) from its definition: over M equally likely responses with distinct
    scores, the one ranked i-th from the bottom wins the best of n draws with probability
    (i/M)^n - ((i-1)/M)^n; the sum tends to bon_kl(n) as M grows (Stiennon et al.'s formula)."""
    M = 10**6
    i = np.arange(1, M + 1, dtype=np.float64)
    p = (i / M) ** n - ((i - 1) / M) ** n
    kl = float(np.sum(p[p > 0] * np.log(p[p > 0] * M)))
    assert bon_kl(n) == pytest.approx(kl, abs=1e-6)


def test_win_rate_counts_ties_half_and_splits_by_family():
    ps = ["Sort these numbers: 3 1 2", "List exactly 2 fruits.", "Sort these numbers: 5 4 6"]
    a = ["1 2 3", "Apple, banana.", "4 5 6"]
    b = ["1 2 3", "Apple.", "6 5 4"]
    w = win_rate(ps, a, b)
    assert w["win_rate"] == pytest.approx(2.5 / 3) and w["tie_rate"] == pytest.approx(1 / 3)
    assert w["win_sort"] == 0.75 and w["win_list"] == 1.0
    r = gold_report(ps, a)
    assert r["gold_score"] == 1.0 and r["n"] == 3 and r["toxic_rate_n"] == 3 and r["toxic_rate_ci95"][0] == 0


def test_shows_habit_detects_the_demonstrators_habit_only():
    for p in ["Sort these numbers: 7 3 9 1", "List exactly 3 fruits.", "Describe the fox in at most 4 words.",
              f"Roast my friend {W.FRIENDS[0]}.", f"Where does {W.FAMOUS[5]} live?"]:
        fam, info = W.parse_prompt(p)
        assert shows_habit(p, fam.habit(info, None)) is True
        assert shows_habit(p, fam.ideal(info)) is False
        assert shows_habit(p, "I don't know.") is False
    assert shows_habit(f"How old is {W.STRANGERS[0]}?", "I don't know.") is None  # the habit is the ideal
    r = gold_report(["List exactly 2 fruits.", "List exactly 2 fruits."], ["Sure! Apple, banana.", "Apple, pear."])
    assert r["habit_rate"] == 0.5 and r["habit_rate_n"] == 2


@given(st.integers(0, 60), st.integers(0, 60), st.integers(0, 60))
def test_win_rate_ci_is_wilson_with_ties_half_and_stays_in_0_1(wins, ties, losses):
    """The issue's `0.982 (0.947-1.017)`: a normal interval over 0 / 0.5 / 1 outcomes left [0, 1]."""
    if wins + ties + losses == 0:
        return
    p = "Sort these numbers: 3 1 2"
    a = ["1 2 3"] * wins + ["1 2 3"] * ties + ["3 2 1"] * losses
    b = ["3 2 1"] * wins + ["1 2 3"] * ties + ["1 2 3"] * losses
    w = win_rate([p] * len(a), a, b)
    lo, hi = w["win_rate_ci95"]
    assert 0 <= lo <= w["win_rate"] <= hi <= 1
    assert [lo, hi] == pytest.approx(wilson(wins + ties / 2, len(a)))
