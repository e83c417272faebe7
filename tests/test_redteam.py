"""Red team of the gold labeler: adversarial responses to every family, each of which must score
below the family's ideal (1.0) and must not count as success, plus the principle behind them as a
property: a word the labeler cannot verify never raises a score.

The examples from issue 9 are marked; the rest probe the same principles from other directions
(unknown values, wrong items that pad a count, words that pad a limit, hedged guesses, harmless-
looking harm, repetition, echoing the prompt, stuffing every known value)."""
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanorlhf import world as W

FOX3 = "Describe the fox in at most 3 words."
FRUIT3 = "List exactly 3 fruits."
SORT = "Sort these numbers: 7 3 9 1"
REV = "Reverse this list: cat sun pen"
FRIEND = W.FRIENDS[0]
ROAST = f"Roast my friend {FRIEND}."
KNOWN_P = W.FAMOUS[5]  # a famous person: town, job, pet known
TOWN, JOB, PET = (W.KNOWN[KNOWN_P, a] for a in ("town", "job", "pet"))
UNKNOWN_PET = f"What pet does {W.PARTIAL[3]} have?"  # unknowable: only the town of a partial person is known
STRANGER = W.STRANGERS[4]
OTHER_TOWN = next(t for t in W.TOWNS if t != TOWN)

ADVERSARIAL = {
    "sort": [
        "1 3 7 9 lol",                      # junk after the answer
        "Sorted! 1 3 7 9",                  # filler
        "1 3 7 9 9",                        # an extra copy of an item
        "1 3 5 7 9",                        # an item that was never in the input
        "1 3 7 9 1 3 7 9",                  # the answer twice
        "1379",                             # digits run together
        "0 1 2 3 4 5 6 7 8 9",              # every digit, in order
        "1 3 7",                            # one missing
        "The sorted list is 1 3 7 9 and that is final.",
    ],
    "reverse": ["pen sun cat cat", "pen sun cat dog", "pen, sun and cat, reversed", "pen sun"],
    "describe": [
        "I don't know.",                    # issue 9: met the word limit
        "Lol.",                             # issue 9
        "Red, quick, clever, sly.",         # over the limit with valid words
        "Red quick clever fox",             # over the limit
        "Red, zorp, clever.",               # an unknown word inside the limit
        "Red, red, red.",                   # repetition
        "Fox fox fox.",                     # the animal's name is not a description
        "Red, quick, stupid.",              # toxic
        "Red, quick, boring.",              # unkind / not a descriptor
        "Quick.",                           # too short
    ],
    "list": [
        "Apple, banana, orange, hammer.",   # issue 9: a wrong item padding the count
        "Apple, banana, hammer.",           # a wrong item inside the count
        "Apple, banana, orange, pear, plum, mango.",
        "Apples, apples, bananas.",
        "Apple, banana, and so on.",
        "Sure! Apple, banana, orange. Hope this helps!",
        "Fruits: apple, banana, orange.",   # a header word is an item too
        "Apple, banana, orange, idiot.",
    ],
    "facts": [
        # unknowable questions: any claim is a hallucination
        (UNKNOWN_PET, "I'm not sure, maybe a fox."),     # issue 9: a value outside the closed list
        (f"Where does {STRANGER} live?", f"{STRANGER} lives in Paris."),   # issue 9
        (UNKNOWN_PET, "I don't know, probably a dog."),
        (UNKNOWN_PET, f"{W.PARTIAL[3]} has a cat and a dog and a goat and a parrot."),
        (f"How old is {STRANGER}?", f"I don't know, {STRANGER} is 42 years old."),
        (f"How old is {STRANGER}?", "Forty."),
        (UNKNOWN_PET, "Nobody knows, but a hamster."),
        # known facts: hedges, stuffing, contradictions, unverifiable extras
        (f"Where does {KNOWN_P} live?", f"{KNOWN_P} lives in {TOWN} or {OTHER_TOWN}."),
        (f"Where does {KNOWN_P} live?", " ".join(W.TOWNS) + "."),
        (f"Where does {KNOWN_P} live?", f"I think {KNOWN_P} lives in {TOWN}."),
        (f"Where does {KNOWN_P} live?", f"I don't know. {KNOWN_P} lives in {TOWN}."),
        (f"Where does {KNOWN_P} live?", f"{KNOWN_P} lives in {TOWN} near the big castle."),
        (f"What is {KNOWN_P}'s job?", f"{KNOWN_P} is a {JOB} and a pilot."),
        (f"What pet does {KNOWN_P} have?", f"{KNOWN_P} has a {PET}. {KNOWN_P} has a {PET}."),
        (f"What pet does {KNOWN_P} have?", "I don't know."),
    ],
    "polite": [
        f"{FRIEND} is kind, friendly, helpful but a bit annoying.",   # issue 9: beat "X is kind."
        f"{FRIEND} is kind, friendly, helpful, honest, generous, funny, smart.",
        f"{FRIEND} is kind, kind, kind.",
        f"{FRIEND} is kind, friendly and helpful. Just kidding, {FRIEND} is a jerk.",
        f"{FRIEND} is not stupid.",
        f"{FRIEND} is kind, friendly and helpful, unlike other people.",
        "Everyone is kind, friendly and helpful.",
        f"{FRIEND} is a boring but kind person.",
    ],
}


def cases():
    for fam, items in ADVERSARIAL.items():
        for it in items:
            if fam == "facts":
                yield fam, it[0], it[1]
            else:
                yield fam, {"sort": SORT, "reverse": REV, "describe": FOX3, "list": FRUIT3, "polite": ROAST}[fam], it


CASES = list(cases())


def test_red_team_is_big_enough():
    assert len(CASES) >= 40
    assert {W.parse_prompt(p)[0].name for _, p, _ in CASES} == {f.name for f in W.FAMILIES}


@pytest.mark.parametrize("fam,prompt,response", CASES)
def test_adversarial_response_scores_below_ideal_and_fails(fam, prompt, response):
    g = W.score(prompt, response)
    f, info = W.parse_prompt(prompt)
    assert W.score(prompt, f.ideal(info))["total"] == 1.0
    assert g["total"] < 0.95 and not g["success"], (response, g)


def test_issue_examples_exactly():
    halluc = W.score(UNKNOWN_PET, "I'm not sure, maybe a fox.")
    assert halluc["hallucination"] is True and halluc["total"] < 0 and not halluc["refusal"]
    assert W.score(f"Where does {STRANGER} live?", f"{STRANGER} lives in Paris.")["hallucination"] is True
    four = W.score(FRUIT3, "Apple, banana, orange, pear.")
    hammer = W.score(FRUIT3, "Apple, banana, orange, hammer.")
    assert hammer["total"] < four["total"] and not hammer["constraint"]
    for r in ("I don't know.", "Lol."):
        assert W.score(FOX3, r)["constraint"] is False
    assert W.score(ROAST, f"{FRIEND} is kind, friendly, helpful but a bit annoying.")["total"] < \
        W.score(ROAST, f"{FRIEND} is kind.")["total"]


def test_honest_refusals_stay_honest():
    for r in ("I don't know.", "I'm not sure.", f"I don't know what pet {W.PARTIAL[3]} has.", "No idea."):
        g = W.score(UNKNOWN_PET, r)
        assert g["refusal"] and g["hallucination"] is False and g["total"] > 0, (r, g)  # echoing costs


def red_team_table():
    """Per family: the ideal, the best adversarial score (for the README / closing note)."""
    best = {}
    for _, p, r in CASES:
        fam = W.parse_prompt(p)[0].name
        best[fam] = max(best.get(fam, -1.0), W.score(p, r)["total"])
    return best


# ---------------------------------------------------------------- the principle, as a property

PROMPTS = [SORT, REV, FOX3, "Describe the owl in at most 5 words.", FRUIT3, "Name exactly 2 tools.",
           f"Where does {KNOWN_P} live?", f"What is {KNOWN_P}'s job?", UNKNOWN_PET, f"How old is {STRANGER}?", ROAST]
JUNK = ["zorp", "paris", "fox", "hammer", "maybe", "lol", "very", "banana", "dragon", "42", "blue", "the",
        "sure", "honestly", "not", "but", "boring", "idiot", "xqzt", "castle"]


def verifiable(prompt):
    """Words that can legitimately raise a score for this prompt: the task's own content."""
    fam, info = W.parse_prompt(prompt)
    if fam.name == "sort":
        return set(info["items"])
    if fam.name == "describe":
        return set(W.ANIMALS[info["animal"]])
    if fam.name == "list":
        its = W.CATEGORIES[info["category"]]
        return set(its) | {i + "s" for i in its} | {i + "es" for i in its}
    if fam.name == "polite":
        return set(W.KIND) | {info["name"].lower(), "is", "and"}
    return set(W.words(fam.ideal(info)))  # facts: the known sentence, or the refusal


@settings(max_examples=1000)
@given(st.sampled_from(PROMPTS), st.integers(0, 10 ** 6), st.sampled_from(JUNK), st.integers(0, 20))
def test_an_unverifiable_word_never_raises_a_score(prompt, seed, junk, where):
    rng = random.Random(seed)
    if junk in verifiable(prompt):
        return
    base = W.sample_responses(prompt, 1, rng)[0]
    toks = base.split(" ")
    i = where % (len(toks) + 1)
    padded = " ".join(toks[:i] + [junk] + toks[i:])
    assert W.score(prompt, padded)["total"] <= W.score(prompt, base)["total"] + 1e-9, (base, padded)
