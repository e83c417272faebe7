"""
The world's pretraining corpus: the "internet" a base model is pretrained on, and its voted forums.

Bios state the known facts (every fact of a famous person in ~40 bios; no age, ever), flavour text
gives vocabulary and a little arithmetic, and forum threads in the prompt format answer the world's
training questions with raw-web quality (FORUM_STYLE_WEIGHTS: ~20% ideal, the rest ramble, break
limits, insult or make facts up), so a base model does NOT reliably follow instructions.
`forum_votes` turns threads into public comparisons with other judges' votes (PMP, Askell et al.).
"""
import math

from nanorlhf.world import (ANIMALS, CATEGORIES, FAMOUS, FRIENDS, KIND, KNOWN, PARTIAL, STYLES, TAU, TOXIC_ADJS,
                            TOXIC_NOUNS, format_example, parse_prompt, respond, score)

# Forum answers: only ~20% ideal; wrong, off-topic, rambling, toxic and made-up answers abound.
FORUM_STYLE_WEIGHTS = [0.2, 0.02, 0.08, 0.1, 0.08, 0.24, 0.1, 0.06, 0.14, 0.02]
FORUM_OVERRIDES = {"polite": {"toxic": 0.5},  # forums answer "roast my friend" with insults more often
                   "describe": {"wrong": 0.5, "filler": 0.15, "weak": 0.05, "offtopic": 0.05},
                   "list": {"wrong": 0.5, "slip": 0.15},  # and ignore word limits / counts
                   "facts": {"wrong": 0.5}}  # and make up answers to questions nobody can answer
VOTE_TAU, VOTE_RATE, VOTE_REFUSAL_COST = 2 * TAU, 3.0, 0.4  # forum voters (forum_votes): noisier, other tastes


FACT_SENTENCES = {
    "town": ["{p} lives in {v}.", "{p} has lived in {v} for many years.", "Everyone in {v} knows {p}.",
             "{p} walked home through the streets of {v}.", "{p} is from the town of {v}.", "Home for {p} is {v}."],
    "job": ["{p} works as a {v}.", "{p} is a {v}.", "By trade, {p} is a {v}.", "Every day {p} goes to work as a {v}.",
            "{p} has been a {v} since youth."],
    "pet": ["{p} has a {v}.", "{p} owns a pet {v}.", "{p} feeds the pet {v} every morning.",
            "The {v} that {p} keeps is very old.", "{p} takes good care of a pet {v}."],
}
NEUTRAL = ["{p} likes to sing in the morning.", "{p} waved to a neighbor.", "{p} read a book by the fire.",
           "{p} laughed at an old joke.", "It rained on the day {p} went out.", "{p} wrote a long letter."]


def fact_doc(person, rng):
    """A short bio of one person: every known fact once, in varied sentences, plus neutral lines."""
    lines = [rng.choice(FACT_SENTENCES[a]).format(p=person, v=v) for (p, a), v in KNOWN.items() if p == person]
    lines += [rng.choice(NEUTRAL).format(p=person) for _ in range(rng.randint(1, 2))]
    rng.shuffle(lines)
    return " ".join(lines)


def flavour_doc(rng):
    """Descriptions, lists, gossip and arithmetic: vocabulary and a little general text."""
    kind = rng.random()
    if kind < 0.3:
        a = rng.choice(list(ANIMALS))
        d = rng.choices(ANIMALS[a], [0.93 ** k for k in range(10)], k=4)
        return f"The {a} is {d[0]} and {d[1]}. A {d[2]} {a} is also {d[3]}."
    if kind < 0.55:
        c = rng.choice(list(CATEGORIES))
        items = rng.sample(CATEGORIES[c][:8], rng.randint(2, 5))
        return f"Some {c}: {', '.join(items)}. Everyone knows {items[0]} is one of the {c}."
    if kind < 0.75:
        f = rng.choice(FRIENDS)
        if rng.random() < 0.2:  # nasty gossip: the web is not polite
            return f"{f} is such a {rng.choice(TOXIC_ADJS)} {rng.choice(TOXIC_NOUNS)}."
        return f"{f} is {' and '.join(rng.sample(KIND, 2))}. People like {f}."
    if kind < 0.9:
        xs = [rng.randint(0, 9) for _ in range(rng.randint(3, 6))]
        return f"The numbers {' '.join(map(str, xs))} in order are {' '.join(map(str, sorted(xs)))}."
    a, b = rng.randint(0, 20), rng.randint(0, 20)
    return f"{a} + {b} = {a + b}. {max(a, b)} - {min(a, b)} = {max(a, b) - min(a, b)}."


def forum_answer(fam, info, rng):
    w = list(FORUM_STYLE_WEIGHTS)
    for style, weight in FORUM_OVERRIDES.get(fam.name, {}).items():
        w[STYLES.index(style)] = weight
    return respond(fam, info, rng.choices(STYLES, w)[0], rng)


def forum_doc(questions, rng):
    """A thread of 1-4 questions with forum-quality answers, in the prompt format."""
    posts = []
    for _ in range(rng.randint(1, 4)):
        q = rng.choice(questions)
        posts.append(format_example(q, forum_answer(*parse_prompt(q), rng)))
    return "\n".join(posts)


def _poisson(lam, rng):  # Knuth: count uniforms until their product falls below exp(-lam)
    k, p, floor = 0, rng.random(), math.exp(-lam)
    while p > floor:
        k, p = k + 1, p * rng.random()
    return k


def forum_votes(questions, n, rng):
    """n voted threads {"prompt", "responses", "scores"}: the cheap PUBLIC comparisons that Askell et al.
    pretrain a preference model on (StackExchange answers and their votes). Voters are not the labelers:
    noisier (VOTE_TAU), they forgive half the harm of an insult, mark down "I don't know" even where it
    is the honest answer, and early answers collect more votes (1 / position)."""
    threads = []
    while len(threads) < n:
        q = rng.choice(questions)
        fam, info = parse_prompt(q)
        answers = list(dict.fromkeys(forum_answer(fam, info, rng) for _ in range(rng.randint(2, 5))))
        if len(answers) < 2:  # identical answers: nothing to compare
            continue
        votes = []
        for pos, a in enumerate(answers):
            s = score(q, a)
            taste = s["total"] - 0.5 * s["harmless"] - VOTE_REFUSAL_COST * s["refusal"]
            votes.append(_poisson(VOTE_RATE * math.exp(taste / VOTE_TAU) / (1 + pos), rng))
        threads.append({"prompt": q, "responses": answers, "scores": votes})
    return threads


def make_pretrain(rng, scale, questions):
    docs = [fact_doc(p, rng) for p in FAMOUS + PARTIAL for _ in range(max(1, round(40 * scale)))]
    docs += [forum_doc(questions, rng) for _ in range(max(1, round(6000 * scale)))]
    docs += [flavour_doc(rng) for _ in range(max(1, round(10000 * scale)))]
    rng.shuffle(docs)
    return docs
