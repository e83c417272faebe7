"""train_rm.py's own functions against hand-built comparisons: the rewards of one batch are laid out
in ranking order (best first), each equal to the response scored alone; each objective's loss is
computed on that layout; sampled responses are merged and ranked per prompt."""
import math
import random
from types import SimpleNamespace

import pytest
import torch

import train_rm
from nanorlhf.batching import encode_example, response_nll
from nanorlhf.checkpoint import to_scalar_head
from nanorlhf.losses import rm_ranking_loss
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

pytestmark = pytest.mark.usefixtures("reference_kernels")  # lm_loss on CPU as the scripts run it
ENC = get_tokenizer()
CPU = torch.device("cpu")

# K = 3, 2, 4; rankings that are not the identity, so a layout in response order shows
BATCH = [
    {"prompt": "Sort these numbers: 3 1 2", "responses": ["1 2 3", "3 2 1", "Lol."], "ranking": [2, 0, 1],
     "acceptable": [True, False, False]},
    {"prompt": "List exactly 2 fruits.", "responses": ["Apple, pear.", "Apple."], "ranking": [1, 0],
     "acceptable": [False, True]},
    {"prompt": "Describe the owl in at most 3 words.", "responses": ["Wise night bird.", "Owl.", "A bird.", "No."],
     "ranking": [3, 1, 0, 2], "acceptable": [True, True, False, False]},
]


def tiny(seed=0, scalar_head=True):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=64, vocab_size=ENC.n_vocab, n_layer=1, n_head=2, n_embd=16))
    return (to_scalar_head(model) if scalar_head else model).eval()


def alone(rm, prompt, response):
    """r(x, y): the score at the last token of <|prompt|> x <|response|> y <|endoftext|>, no padding."""
    return rm(torch.tensor([encode_example(ENC, prompt, response)[0]]))[0, -1].item()


def test_batch_rewards_are_in_ranking_order_and_equal_each_response_alone():
    rm = tiny()
    rewards, k = train_rm.batch_rewards(rm, ENC, BATCH, CPU)
    assert k.tolist() == [3, 2, 4] and rewards.shape == (3, 4)
    for b, c in enumerate(BATCH):
        expected = [alone(rm, c["prompt"], c["responses"][j]) for j in c["ranking"]]  # best first
        assert rewards[b, :len(expected)].tolist() == pytest.approx(expected, abs=1e-5)
        assert (rewards[b, len(expected):] == 0).all()


def test_ranked_objective_is_the_ranking_loss_of_that_layout():
    rm = tiny()
    loss, acc, n = train_rm.batch_loss(rm, ENC, BATCH, "ranked", CPU)
    layout = torch.zeros(3, 4, dtype=torch.float64)
    for b, c in enumerate(BATCH):
        layout[b, :len(c["ranking"])] = torch.tensor([alone(rm, c["prompt"], c["responses"][j]) for j in c["ranking"]])
    # the pairs by hand: -log sigmoid(r_w - r_l), mean over a prompt's pairs, then over prompts
    per_prompt, hits = [], []
    for b, c in enumerate(BATCH):
        K = len(c["ranking"])
        pairs = [(layout[b, i] - layout[b, j]).item() for i in range(K) for j in range(i + 1, K)]
        per_prompt.append(sum(math.log1p(math.exp(-d)) for d in pairs) / len(pairs))
        hits.append(sum(d > 0 for d in pairs) / len(pairs))
    assert loss.item() == pytest.approx(sum(per_prompt) / 3, abs=1e-5)
    assert acc.item() == pytest.approx(sum(hits) / 3, abs=1e-6)
    assert n == 9  # sequences in the forward pass
    assert loss.item() == pytest.approx(rm_ranking_loss(layout, torch.tensor([3, 2, 4]))[0].item(), abs=1e-5)


def test_binary_objective_labels_each_response_with_its_own_judgment():
    """The labeler's yes/no of response j goes with response j's score, whatever its rank."""
    rm = tiny()
    loss, acc, n = train_rm.batch_loss(rm, ENC, BATCH, "binary", CPU)
    terms, hits = [], []
    for c in BATCH:
        for response, ok in zip(c["responses"], c["acceptable"]):
            s = alone(rm, c["prompt"], response)
            terms.append(math.log1p(math.exp(-s if ok else s)))  # -log sigmoid(+-s)
            hits.append((s > 0) == ok)
    assert loss.item() == pytest.approx(sum(terms) / len(terms), abs=1e-5)
    assert acc.item() == pytest.approx(sum(hits) / len(hits))
    assert n == 9


def test_imitation_objective_is_the_sft_loss_on_the_labelers_top_choice():
    lm = tiny(scalar_head=False)
    loss, likelihood, n = train_rm.batch_loss(lm, ENC, BATCH, "imitation", CPU)
    top = [encode_example(ENC, c["prompt"], c["responses"][c["ranking"][0]]) for c in BATCH]  # "Lol.", "Apple.", "No."
    total, count = 0.0, 0
    for ids, n_prompt in top:
        logp = torch.log_softmax(lm(torch.tensor([ids[:-1]]))[0], -1)
        total -= sum(logp[t - 1, ids[t]].item() for t in range(n_prompt, len(ids)))
        count += len(ids) - n_prompt
    assert loss.item() == pytest.approx(total / count, rel=1e-5)
    assert likelihood.item() == pytest.approx(math.exp(-total / count), rel=1e-5)
    assert n == 3
    nll, m = response_nll(lm, top, ENC.eot_token, CPU)
    assert m == count and nll.item() == pytest.approx(total, rel=1e-5)


def test_sample_comparisons_merges_duplicates_and_ranks_per_prompt(monkeypatch):
    """K in [k_min, k_max] samples per prompt at temperature 1; duplicates merged in order of first
    appearance; a prompt left with fewer than 2 distinct responses dropped; ranking and yes/no refer
    to the merged list."""
    prompts = ["Sort these numbers: 3 1 2", "List exactly 2 fruits.", "Describe the owl in at most 3 words."]
    calls = {}

    def fake_sample(policy, enc, flat, temperature, seed, batch_size):
        calls.update(flat=flat, temperature=temperature, policy=policy, enc=enc, seed=seed)
        # prompt 0: two distinct texts, prompt 1: one text repeated (dropped), prompt 2: all distinct
        fill = {prompts[0]: ["a b", "c", "a b", "c", "a b", "c", "a b", "c", "a b"], prompts[1]: ["same"] * 9,
                prompts[2]: [f"r{i}" for i in range(9)]}
        seen = {p: 0 for p in prompts}
        out = []
        for p in flat:
            out.append(fill[p][seen[p]])
            seen[p] += 1
        return out, [True] * len(flat)

    monkeypatch.setattr(train_rm, "sample", fake_sample)
    args, policy = SimpleNamespace(k_min=3, k_max=5, labeler_taste=0.0), object()
    out = train_rm.sample_comparisons(policy, ENC, prompts, args, random.Random(0))
    ks = [calls["flat"].count(p) for p in prompts]
    assert calls["temperature"] == 1.0 and all(3 <= k <= 5 for k in ks)
    rng = random.Random(0)  # the K draws, then the sampler's seed: both from the caller's rng
    assert ks == [rng.randint(3, 5) for _ in prompts] and calls["seed"] == rng.randint(0, 2**31)
    assert calls["policy"] is policy and calls["enc"] is ENC
    assert calls["flat"] == [p for p, k in zip(prompts, ks) for _ in range(k)]  # grouped by prompt, in order
    assert [c["prompt"] for c in out] == [prompts[0], prompts[2]]
    assert out[0]["responses"] == ["a b", "c"] and out[1]["responses"] == [f"r{i}" for i in range(ks[2])]
    for c in out:
        assert sorted(c["ranking"]) == list(range(len(c["responses"])))
        assert len(c["acceptable"]) == len(c["responses"])


def test_sample_comparisons_ranks_with_the_labelers_taste(monkeypatch):
    """--labeler-taste reaches the ranker: a taste far above any gold gap puts the opener first."""
    prompt = "Sort these numbers: 3 1 2"
    monkeypatch.setattr(train_rm, "sample", lambda policy, enc, flat, temperature, seed, batch_size: (
        ["1 2 3.", "Sure! 1 2 3."] * (len(flat) // 2) + ["1 2 3."] * (len(flat) % 2), None))
    for taste, first in ((100.0, "Sure! 1 2 3."), (0.0, None)):
        out = train_rm.sample_comparisons(None, ENC, [prompt] * 40, SimpleNamespace(k_min=2, k_max=2, labeler_taste=taste),
                                          random.Random(1))
        tops = [c["responses"][c["ranking"][0]] for c in out]
        if first:
            assert tops == [first] * 40
        else:  # without it the gold labeler's charge for the opener mostly wins
            assert tops.count("1 2 3.") > 30
