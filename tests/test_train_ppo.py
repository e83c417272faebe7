"""train_ppo.py's own functions against hand-built inputs and an independent recomputation:
policy_forward and value_forward read the positions that predict each response token; rollout
scores truncated responses with --truncated-score, shapes the rewards, runs GAE and whitens the
advantages over the whole rollout; ppo_update takes the PPO-ptx steps in the documented order."""
import math
import statistics
from types import SimpleNamespace

import numpy as np
import pytest
import torch

import train_ppo
from nanorlhf.batching import encode_prompt
from nanorlhf.checkpoint import to_scalar_head
from nanorlhf.losses import k3_kl, lm_loss, masked_mean, ppo_policy_loss, ppo_value_loss
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import get_tokenizer

pytestmark = pytest.mark.usefixtures("reference_kernels")  # token_logprobs on CPU as the scripts run it
ENC = get_tokenizer()
EOT = ENC.eot_token
CPU = torch.device("cpu")


def tiny(seed, scalar_head=False, vocab_size=ENC.n_vocab):
    torch.manual_seed(seed)
    model = GPT(GPTConfig(block_size=160, vocab_size=vocab_size, n_layer=1, n_head=2, n_embd=16))
    return (to_scalar_head(model) if scalar_head else model).eval()


def last_logits(model, seq, temperature=1.0):
    """log softmax of the next-token logits after `seq`, the row alone: no padding, no gather."""
    return torch.log_softmax(model(torch.tensor([seq]))[0, -1].double() / temperature, -1)


def last_score(model, seq):
    return model(torch.tensor([seq]))[0, -1].item()


# ---------------------------------------------------------------- policy_forward, value_forward

def test_policy_and_value_forward_read_the_positions_predicting_each_response_token():
    policy, value = tiny(0, vocab_size=50), tiny(1, scalar_head=True, vocab_size=50)
    rows = [([3, 4, 5], [6, 7, 8, 9]), ([10, 11, 12, 13, 14], [15]), ([16, 17], [18, 19, 20])]  # (prompt, response)
    T = max(len(p) + len(r) for p, r in rows)
    ids = torch.tensor([p + r + [0] * (T - len(p) - len(r)) for p, r in rows])  # right-padded
    start = torch.tensor([len(p) for p, _ in rows])
    Tr = max(len(r) for _, r in rows)
    logp, ent = train_ppo.policy_forward(policy, ids, start, Tr, 0.7, CPU, entropy=True)
    assert torch.equal(train_ppo.policy_forward(policy, ids, start, Tr, 0.7, CPU), logp)
    values = train_ppo.value_forward(value, ids, start, Tr, CPU)
    assert logp.shape == values.shape == ent.shape == (3, Tr) and not ent.requires_grad
    for b, (p, r) in enumerate(rows):
        for t in range(len(r)):  # response token t is predicted after the prompt and r[:t]
            prefix = p + r[:t]
            assert logp[b, t].item() == pytest.approx(last_logits(policy, prefix, 0.7)[r[t]].item(), abs=1e-5)
            q = torch.softmax(policy(torch.tensor([prefix]))[0, -1].double() / 0.7, -1)
            assert ent[b, t].item() == pytest.approx(-(q * q.log()).sum().item(), abs=1e-5)
            assert values[b, t].item() == pytest.approx(last_score(value, prefix), abs=1e-5)


# ---------------------------------------------------------------- rollout

# Responses by hand, one per prompt of the rollout in its order: a stopped one ends with the
# end-of-text (row 4 is nothing but it); a truncated one has all N tokens and no end-of-text.
N = 5
RESPONSES = [[101, 102, EOT], [201, 202, 203, 204, 205], [301, 302, EOT], [401, 402, 403, 404, 405], [EOT],
             [601, 602, 603, EOT]]
STOPPED = [True, False, True, False, True, True]


def fake_generate(calls):
    def generate(model, prompts, max_new_tokens, eot_id, temperature, generator=None):
        """The contract of model.generate: prompts left-padded with eot_id, the mask on generated tokens."""
        calls.append(dict(max_new_tokens=max_new_tokens, eot_id=eot_id, temperature=temperature, training=model.training,
                          seed=generator.initial_seed()))  # sampling must be seeded (resume, DDP ranks)
        P, W = max(map(len, prompts)), max(map(len, RESPONSES))
        tokens = torch.full((len(prompts), P + W), eot_id)
        gen = torch.zeros(len(prompts), P + W, dtype=torch.bool)
        for b, (p, r) in enumerate(zip(prompts, RESPONSES)):
            tokens[b, P - len(p):P], tokens[b, P:P + len(r)], gen[b, P:P + len(r)] = torch.tensor(p), torch.tensor(r), True
        return tokens, gen
    return generate


PROMPTS = [f"Say word number {i}." for i in range(10)]
ARGS = dict(seed=3, rollout_size=6, minibatch_size=2, temperature=0.9, max_new_tokens=N, truncated_score=-2.0,
            gamma=0.9, lam=0.8, advantage="gae", group_size=1)


@pytest.fixture
def models():
    return dict(policy=tiny(0).train(), ref=tiny(1), rm=tiny(2, scalar_head=True), value_model=tiny(3, scalar_head=True).train())


def run_rollout(monkeypatch, models, beta=0.3, it=3, rank=0, **kw):  # it 3: minibatches [4, 0] [3, 2] [1, 5]
    calls = []
    monkeypatch.setattr(train_ppo, "generate", fake_generate(calls))
    args = SimpleNamespace(**{**ARGS, **kw})
    roll, info = train_ppo.rollout(args, it, rank, CPU, ENC, PROMPTS, beta=beta, **models)
    return args, roll, info, calls


def expected_episode(models, prompt, response, stopped, args, beta):
    """One episode from scratch, each forward on the row alone: log-probs, values, the score (or the
    truncated score), the KL-shaped rewards and GAE's closed form A_t = sum_l (gamma lam)^l delta_{t+l}."""
    p, n = encode_prompt(ENC, prompt), len(response)
    seqs = [p + response[:t] for t in range(n)]
    logp = [last_logits(models["policy"], s, args.temperature)[response[t]].item() for t, s in enumerate(seqs)]
    ref = [last_logits(models["ref"], s, args.temperature)[response[t]].item() for t, s in enumerate(seqs)]
    v = [last_score(models["value_model"], s) for s in seqs]
    score = last_score(models["rm"], p + response) if stopped else args.truncated_score
    r = [-beta * (a - b) + (score if t == n - 1 else 0.0) for t, (a, b) in enumerate(zip(logp, ref))]
    delta = [r[t] + (args.gamma * v[t + 1] if t + 1 < n else 0.0) - v[t] for t in range(n)]
    adv = [sum((args.gamma * args.lam) ** k * delta[t + k] for k in range(n - t)) for t in range(n)]
    return dict(prompt_ids=p, logp=logp, values=v, score=score, adv=adv, ret=[a + b for a, b in zip(adv, v)],
                kl=sum(a - b for a, b in zip(logp, ref)))


def test_rollout_matches_an_episode_by_episode_recomputation(monkeypatch, models):
    """Every number rollout hands to the update, against expected_episode: the truncated score
    replaces the RM's on responses without an end-of-text, and the advantages are whitened with
    the mean and variance of the WHOLE rollout (not of each minibatch)."""
    beta = 0.3
    args, roll, info, calls = run_rollout(monkeypatch, models, beta)
    assert [{k: v for k, v in c.items() if k != "seed"} for c in calls] == \
        [dict(max_new_tokens=N, eot_id=EOT, temperature=0.9, training=False)]  # sampled in eval mode
    assert models["policy"].training  # and back to training mode
    assert len(info["prompts"]) == 6 and len(set(info["prompts"])) == 6 and set(info["prompts"]) <= set(PROMPTS)
    assert info["stopped"].tolist() == STOPPED
    assert info["texts"] == [ENC.decode(r[:-1] if s else r) for r, s in zip(RESPONSES, STOPPED)]
    assert info["ntok"] == sum(map(len, RESPONSES))
    exp = [expected_episode(models, p, r, s, args, beta) for p, r, s in zip(info["prompts"], RESPONSES, STOPPED)]
    assert [len(mb["ids"]) for mb in roll] == [2, 2, 2]
    seen, raw, got = [], [], []
    for mb in roll:
        assert mb["Tr"] == int(mb["mask"].sum(1).max())
        for b in range(2):
            start = int(mb["start"][b])
            i = next(i for i, e in enumerate(exp) if mb["ids"][b, :start].tolist() == e["prompt_ids"])
            seen.append(i)
            e, n = exp[i], len(RESPONSES[i])
            assert mb["mask"][b].tolist() == [t < n for t in range(mb["Tr"])]
            assert mb["ids"][b, start:start + n].tolist() == RESPONSES[i]
            assert mb["score"][b].item() == pytest.approx(e["score"], abs=1e-5)
            assert mb["kl"][b].item() == pytest.approx(e["kl"], abs=1e-4)
            for key in ("logp", "values", "ret"):
                np.testing.assert_allclose(mb[key][b, :n].tolist(), e[key], atol=1e-4, err_msg=key)
            assert (mb["adv"][b, n:] == 0).all() and (mb["ret"][b, n:] == 0).all()
            raw += e["adv"]
            got += mb["adv"][b, :n].tolist()
    assert sorted(seen) == list(range(6))  # every episode in exactly one minibatch
    mean = sum(raw) / len(raw)
    var = sum((a - mean) ** 2 for a in raw) / len(raw)
    np.testing.assert_allclose(got, [(a - mean) / math.sqrt(var + 1e-8) for a in raw], atol=1e-4)
    assert info["rm_score"] == pytest.approx(np.mean([e["score"] for e in exp]), abs=1e-5)
    assert info["kl"] == pytest.approx(np.mean([e["kl"] for e in exp]), abs=1e-4)


def test_rollout_is_a_function_of_seed_iteration_and_rank(monkeypatch, models):
    """Prompts, the sampling seed and the minibatch layout come from (seed, iteration, rank) only: a
    resumed run redraws them, and each DDP rank and each iteration draws its own."""
    _, roll_a, info_a, calls_a = run_rollout(monkeypatch, models)
    _, roll_b, info_b, calls_b = run_rollout(monkeypatch, models)
    assert info_a["prompts"] == info_b["prompts"] and calls_a == calls_b
    assert all(torch.equal(a["ids"], b["ids"]) for a, b in zip(roll_a, roll_b))
    for change in (dict(seed=4), dict(it=4), dict(rank=1)):
        _, _, info_c, calls_c = run_rollout(monkeypatch, models, **change)
        assert info_c["prompts"] != info_a["prompts"] and calls_c[0]["seed"] != calls_a[0]["seed"], change


@pytest.mark.parametrize("advantage", ["rloo", "grpo"])
def test_rollout_gives_every_token_its_groups_baselined_sequence_reward(monkeypatch, models, advantage):
    """RLOO and GRPO, k = 3 samples of each prompt, contiguous in rollout order. R_i is the score less
    beta * KL for RLOO (the KL in the reward) and the bare score for GRPO (its KL is in the loss);
    each group is its own baseline (against expected_episode and statistics, not the losses); every
    response token gets its episode's advantage, padding 0; with no value model, no returns."""
    beta = 0.3
    args, roll, info, _ = run_rollout(monkeypatch, {**models, "value_model": None}, beta, advantage=advantage,
                                      group_size=3)
    p = info["prompts"]
    assert p == [p[0]] * 3 + [p[3]] * 3 and p[0] != p[3]
    exp = [expected_episode(models, q, r, s, args, beta) for q, r, s in zip(p, RESPONSES, STOPPED)]
    R = [e["score"] - beta * e["kl"] if advantage == "rloo" else e["score"] for e in exp]
    want = []
    for g in (R[:3], R[3:]):
        if advantage == "rloo":  # R_i - mean of the other two
            want += [g[i] - (sum(g) - g[i]) / 2 for i in range(3)]
        else:
            want += [(x - statistics.mean(g)) / (statistics.stdev(g) + 1e-4) for x in g]
    seen = []
    for mb in roll:
        assert mb["values"] is None and mb["ret"] is None
        for b, i in enumerate(mb["episodes"].tolist()):
            seen.append(i)
            start, n = int(mb["start"][b]), len(RESPONSES[i])
            assert mb["ids"][b, start:start + n].tolist() == RESPONSES[i]  # the episode index names this row
            assert mb["adv"][b, :n].tolist() == pytest.approx([want[i]] * n, abs=1e-4)
            assert (mb["adv"][b, n:] == 0).all()
    assert sorted(seen) == list(range(6))


# ---------------------------------------------------------------- ppo_update

class Recorder(torch.nn.Module):
    """The policy, recording which minibatch each forward reads (ppo_update's visiting order)."""

    def __init__(self, model, roll):
        super().__init__()
        self.model, self.roll, self.order, self.config = model, roll, [], model.config
        self.lm_head = model.lm_head  # the fused log-probs read the head's weight (losses.unembedding)

    def forward(self, ids, **kw):
        if kw.get("head_at") is not None:  # the policy term; the ptx term reads pretraining windows
            self.order.append(next(j for j, r in enumerate(self.roll) if torch.equal(r["ids"][:, :-1], ids)))
        return self.model(ids, **kw)


UPDATE_ARGS = dict(ppo_epochs=2, clip=0.15, vf_clip=0.25, vf_coef=0.5, ptx_coef=0.2, ptx_batch=2)  # clips off the defaults


@pytest.mark.parametrize("advantage", ["gae", "grpo"])
def test_ppo_update_takes_the_ppo_ptx_steps(monkeypatch, models, advantage):
    """ppo_update against a replay of the objective in the order it visited the minibatches (rollout
    order in the first epoch, then each minibatch once per epoch): for each, the clipped policy loss
    (+ beta * the k3 KL to the reference for GRPO) + gamma * ptx loss + vf_coef * clipped value loss,
    gradient norm clipped to 1, one optimizer step. A constant pretraining stream makes every ptx
    window the same 128 tokens. Also the returned statistics and the first minibatch's log-ratio,
    exactly 0."""
    args, roll, _, _ = run_rollout(monkeypatch, models)
    args = SimpleNamespace(**{**vars(args), **UPDATE_ARGS, "advantage": advantage})
    stream = np.full(300, 42)
    replay = {k: tiny(s, scalar_head=k == "value").train() for k, s in (("policy", 0), ("value", 3))}
    policy = Recorder(models["policy"], roll)
    params = list(models["policy"].parameters()) + list(models["value_model"].parameters())
    opt = torch.optim.SGD(params, lr=0.5)
    stats, first_dev = train_ppo.ppo_update(args, 2, roll, policy, models["value_model"], opt, params, stream,
                                            CPU, beta=0.3)
    assert policy.order[:3] == [0, 1, 2] and sorted(policy.order[3:]) == [0, 1, 2] and len(policy.order) == 6
    assert first_dev == 0.0

    rparams = list(replay["policy"].parameters()) + list(replay["value"].parameters())
    ropt = torch.optim.SGD(rparams, lr=0.5)
    window = torch.full((2, 129), 42)
    expected = []
    for j in policy.order:
        r = roll[j]
        ropt.zero_grad()
        logp = train_ppo.policy_forward(replay["policy"], r["ids"], r["start"], r["Tr"], args.temperature, CPU)
        idx = train_ppo.response_index(r["start"], r["Tr"]).clamp(max=r["ids"].size(1) - 2)
        logits = replay["policy"](r["ids"][:, :-1], head_at=idx)  # (b, Tr, V), before the step
        pg, pg_stats = ppo_policy_loss(logp, r["logp"], r["adv"], r["mask"], 0.15)
        k3 = masked_mean(k3_kl(logp, r["ref_logp"], r["mask"]), r["mask"])
        ptx = lm_loss(replay["policy"](window[:, :-1]), window[:, 1:], torch.ones(2, 128, dtype=torch.bool))
        v = train_ppo.value_forward(replay["value"], r["ids"], r["start"], r["Tr"], CPU)
        vf, _ = ppo_value_loss(v, r["values"], r["ret"], r["mask"], 0.25)
        (pg + 0.3 * k3 * (advantage == "grpo") + 0.2 * ptx + 0.5 * vf).backward()
        torch.nn.utils.clip_grad_norm_(rparams, 1.0)
        ropt.step()
        p = torch.softmax(logits.detach().double() / args.temperature, -1)
        ent = (-(p * p.log()).sum(-1) * r["mask"]).sum() / r["mask"].sum()
        expected.append([pg.item(), vf.item(), ptx.item(), ent.item(), pg_stats["clipfrac"].item(),
                         pg_stats["approx_kl"].item(), k3.item()])
    for got, want in zip(params, rparams):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
    assert any(not torch.equal(a, b) for a, b in zip(params, tiny(0).parameters()))  # it did move
    mean = np.mean(expected, axis=0)
    for k, name in enumerate(["pg_loss", "vf_loss", "ptx_loss", "entropy", "clipfrac", "approx_kl", "k3_kl"]):
        assert stats[name] == pytest.approx(mean[k], rel=1e-4, abs=1e-6), name
    assert stats["clipfrac"] > 0 and stats["approx_kl"] > 0  # the second epoch moved past the clip


def test_ppo_update_shuffles_later_epochs_by_iteration_and_epoch(monkeypatch, models):
    """After the first epoch (rollout order) the minibatches come in a shuffled order that is a
    function of the iteration and epoch: the same on a second call, not always the identity."""
    args, roll, _, _ = run_rollout(monkeypatch, models)
    args = SimpleNamespace(**{**vars(args), **UPDATE_ARGS, "ptx_coef": 0.0, "ppo_epochs": 3})
    params = list(models["policy"].parameters()) + list(models["value_model"].parameters())

    def later_orders(it):
        policy = Recorder(models["policy"], roll)
        train_ppo.ppo_update(args, it, roll, policy, models["value_model"], torch.optim.SGD(params, lr=0.0), params,
                             None, CPU, beta=0.3)
        assert policy.order[:3] == [0, 1, 2] and all(sorted(policy.order[k:k + 3]) == [0, 1, 2] for k in (3, 6))
        return policy.order[3:]
    orders = [later_orders(it) for it in range(4)]
    assert orders[2] == later_orders(2) and any(o[:3] != [0, 1, 2] or o[3:] != [0, 1, 2] for o in orders)
    assert len({tuple(o) for o in orders}) > 1


def test_ppo_update_without_ptx_and_its_first_minibatch_deviation(monkeypatch, models):
    """--ptx-coef 0 adds no pretraining term (the stream may be None); the returned deviation is the
    largest |log pi - log pi_old| over the real tokens of the FIRST minibatch only."""
    args, roll, _, _ = run_rollout(monkeypatch, models)
    args = SimpleNamespace(**vars(args), **{**UPDATE_ARGS, "ptx_coef": 0.0, "ppo_epochs": 1})
    roll[0]["logp"] = roll[0]["logp"] + torch.where(roll[0]["mask"], 0.0, 100.0)  # padding: must not count
    roll[0]["logp"][0, 0] -= 0.25
    roll[1]["logp"] = roll[1]["logp"] + 3.0  # a later minibatch: not measured
    params = list(models["policy"].parameters()) + list(models["value_model"].parameters())
    stats, first_dev = train_ppo.ppo_update(args, 0, roll, models["policy"], models["value_model"],
                                            torch.optim.SGD(params, lr=0.0), params, None, CPU, beta=0.3)
    assert first_dev == pytest.approx(0.25, abs=1e-6)
    assert stats["ptx_loss"] == 0.0
