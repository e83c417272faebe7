"""Property tests for nanorlhf/losses.py: each loss against a naive float64 loop or a
closed form, plus the invariances the paper's equations promise."""
import math

import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nanorlhf.losses import (
    adaptive_kl_update, binary_loss, gae, imitation_score, kl_shaped_rewards, lm_loss, masked_mean,
    masked_whiten, ppo_policy_loss, ppo_value_loss, rm_ranking_loss,
)

# one profile for the file: no deadline (torch's first call is slow), bounded, reproducible
SETTINGS = settings(deadline=None, max_examples=50, derandomize=True)
DT = torch.float64


def assert_close(actual, expected, atol=1e-10, rtol=1e-8):
    actual, expected = torch.as_tensor(actual, dtype=DT), torch.as_tensor(expected, dtype=DT)
    err = (actual - expected).abs()
    ok = torch.isclose(actual, expected, atol=atol, rtol=rtol).all()
    assert ok, f"max abs err {err.max().item():.3e}, mean abs err {err.mean().item():.3e}"


# ---------------------------------------------------------------- strategies

@st.composite
def seeds_and_shapes(draw, max_b=5, max_t=12):
    """(seed, B, T): tensors are drawn from a seeded torch generator, hypothesis picks the shapes."""
    return draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, max_b)), draw(st.integers(1, max_t))


def right_padded_mask(lengths, T):
    return torch.arange(T)[None, :] < torch.as_tensor(lengths)[:, None]  # (B, T) bool


@st.composite
def padded_batch(draw, min_len=0):
    """(g, mask, lengths): a right-padded (B, T) mask; rows may be empty when min_len=0."""
    seed, B, T = draw(seeds_and_shapes())
    lengths = draw(st.lists(st.integers(min_len, T), min_size=B, max_size=B))
    return torch.Generator().manual_seed(seed), right_padded_mask(lengths, T), lengths


@st.composite
def rankings(draw):
    """(rewards (B, Kmax), k (B,)): K in 2..9 per prompt, padding filled with garbage."""
    seed, B, _ = draw(seeds_and_shapes())
    k = draw(st.lists(st.integers(2, 9), min_size=B, max_size=B))
    Kmax = max(k) + draw(st.integers(0, 2))
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(B, Kmax, generator=g, dtype=DT) * 3
    garbage = draw(st.sampled_from([1e4, -1e4, math.inf, math.nan]))
    k = torch.tensor(k)
    rewards[torch.arange(Kmax)[None, :] >= k[:, None]] = garbage
    return rewards, k


def naive_rm(rewards, k):
    """Python double loop over the pairs of each prompt, in float64."""
    losses, accs = [], []
    for row, K in zip(rewards.tolist(), k.tolist()):
        pair_losses = [math.log1p(math.exp(-(row[i] - row[j]))) for i in range(K) for j in range(i + 1, K)]
        pair_accs = [float(row[i] > row[j]) for i in range(K) for j in range(i + 1, K)]
        assert len(pair_losses) == K * (K - 1) // 2
        losses.append(sum(pair_losses) / len(pair_losses))
        accs.append(sum(pair_accs) / len(pair_accs))
    return sum(losses) / len(losses), sum(accs) / len(accs)


# ---------------------------------------------------------------- masked_mean, whiten

@SETTINGS
@given(padded_batch(), st.sampled_from([None, 0, 1]), st.booleans())
def test_masked_mean_matches_loop(batch, dim, float_mask):
    g, mask, _ = batch
    mask = mask[:, torch.randperm(mask.shape[1], generator=g)]  # any pattern, not only right-padded
    x = torch.randn(mask.shape, generator=g, dtype=DT)
    got = masked_mean(x, mask.to(DT) if float_mask else mask, dim)
    B, T = x.shape
    if dim is None:
        vals = [x[b, t].item() for b in range(B) for t in range(T) if mask[b, t]]
        expected = sum(vals) / len(vals) if vals else 0.0
    else:
        groups = [[x[b, t].item() for b in range(B) if mask[b, t]] for t in range(T)] if dim == 0 else \
                 [[x[b, t].item() for t in range(T) if mask[b, t]] for b in range(B)]
        expected = [sum(v) / len(v) if v else 0.0 for v in groups]
    assert_close(got, expected)


def test_masked_mean_empty_mask_is_zero_not_nan():
    x = torch.full((3, 4), -math.inf)  # padding log-probs can be -inf
    assert masked_mean(x, torch.zeros(3, 4)).item() == 0.0
    assert torch.equal(masked_mean(x, torch.zeros(3, 4, dtype=torch.bool), dim=1), torch.zeros(3))


@SETTINGS
@given(padded_batch())
def test_masked_whiten_zero_mean_unit_var(batch):
    g, mask, lengths = batch
    assume(sum(lengths) >= 2)
    x = torch.randn(mask.shape, generator=g, dtype=DT) * 5 + 3
    assume(x[mask].std() > 1e-3)
    w = masked_whiten(x, mask)
    assert_close(masked_mean(w, mask), 0.0, atol=1e-9)
    assert_close(masked_mean(w**2, mask), 1.0, atol=1e-6)
    assert torch.all(w[~mask] == 0)
    assert_close(masked_whiten(x, mask, shift_mean=False)[mask], w[mask] + masked_mean(x, mask))


# ---------------------------------------------------------------- rm_ranking_loss

@SETTINGS
@given(rankings())
def test_rm_loss_matches_pairwise_loop(batch):
    rewards, k = batch
    rewards.requires_grad_(True)
    loss, acc = rm_ranking_loss(rewards, k)
    expected_loss, expected_acc = naive_rm(rewards.detach(), k)
    assert_close(loss.detach(), expected_loss)
    assert_close(acc, expected_acc)
    loss.backward()
    # the garbage padding gets exactly zero gradient, and nothing is NaN
    pad = torch.arange(rewards.shape[1])[None, :] >= k[:, None]
    assert torch.isfinite(rewards.grad).all()
    assert torch.all(rewards.grad[pad] == 0)
    # a shift of r changes nothing, so each prompt's gradient sums to zero
    assert_close(rewards.grad.sum(1), torch.zeros(len(k)), atol=1e-12)


@SETTINGS
@given(rankings(), st.data())
def test_rm_loss_invariant_to_per_row_shift(batch, data):
    rewards, k = batch
    c = torch.tensor(data.draw(st.lists(st.floats(-10, 10), min_size=len(k), max_size=len(k))), dtype=DT)
    shifted = rewards + c[:, None]  # shifts the padding too: garbage stays garbage
    assert_close(rm_ranking_loss(shifted, k)[0], rm_ranking_loss(rewards, k)[0], atol=1e-9)


@SETTINGS
@given(rankings(), st.data())
def test_rm_loss_swapping_a_correct_pair_increases_loss(batch, data):
    rewards, k = batch
    b = data.draw(st.integers(0, len(k) - 1))
    i = data.draw(st.integers(0, k[b].item() - 2))  # adjacent pair (i, i+1): no pair straddles it
    lo, hi = sorted([rewards[b, i].item(), rewards[b, i + 1].item()])
    assume(hi - lo > 1e-3)
    ordered, swapped = rewards.clone(), rewards.clone()
    ordered[b, i], ordered[b, i + 1] = hi, lo
    swapped[b, i], swapped[b, i + 1] = lo, hi
    loss_ordered, acc_ordered = rm_ranking_loss(ordered, k)
    loss_swapped, acc_swapped = rm_ranking_loss(swapped, k)
    assert loss_swapped > loss_ordered and acc_swapped < acc_ordered
    # softplus(d) - softplus(-d) = d: the increase is exactly the margin, weighted
    n_pairs = k[b].item() * (k[b].item() - 1) / 2
    assert_close(loss_swapped - loss_ordered, (hi - lo) / n_pairs / len(k), atol=1e-9)


# ---------------------------------------------------------------- binary_loss, imitation_score

@SETTINGS
@given(padded_batch(min_len=1), st.sampled_from([1e4, -1e4, math.inf, math.nan]))
def test_binary_loss_matches_loop(batch, garbage):
    g, mask, lengths = batch
    logits = torch.randn(mask.shape, generator=g, dtype=DT) * 4
    labels = torch.rand(mask.shape, generator=g) < 0.5
    logits[~mask] = garbage
    logits.requires_grad_(True)
    loss, acc = binary_loss(logits, labels, mask)
    terms, hits = [], []
    for row, lab, n in zip(logits.detach().tolist(), labels.tolist(), lengths):
        for s, y in zip(row[:n], lab[:n]):
            p = 1 / (1 + math.exp(-s))
            terms.append(-math.log(p) if y else -math.log(1 - p))
            hits.append(float((s > 0) == y))
    assert_close(loss.detach(), sum(terms) / len(terms), atol=1e-9)
    assert_close(acc, sum(hits) / len(hits))
    loss.backward()
    assert torch.isfinite(logits.grad).all() and torch.all(logits.grad[~mask] == 0)
    # the gradient pushes each logit toward its label: d loss / d s = (sigmoid(s) - y) / n
    expected = (torch.sigmoid(logits.detach()) - labels.to(DT)) / mask.sum()
    assert_close(logits.grad[mask], expected[mask], atol=1e-12)


@SETTINGS
@given(padded_batch(min_len=1), st.integers(2, 7))
def test_imitation_score_is_mean_token_loglik(batch, V):
    g, mask, lengths = batch
    logits = torch.randn(*mask.shape, V, generator=g, dtype=DT)
    targets = torch.randint(0, V, mask.shape, generator=g)
    s, total = imitation_score(logits, targets, mask), imitation_score(logits, targets, mask, per_token=False)
    logp = torch.log_softmax(logits, -1)
    for b, n in enumerate(lengths):
        ll = [logp[b, t, targets[b, t]].item() for t in range(n)]
        assert_close(s[b], sum(ll) / n)
        assert_close(total[b], sum(ll))
    # training the imitation PM is lm_loss: with rows of equal length, the two are negatives
    full = torch.ones_like(mask)
    assert_close(lm_loss(logits, targets, full), -imitation_score(logits, targets, full).mean(), atol=1e-6)


# ---------------------------------------------------------------- kl_shaped_rewards

@st.composite
def response_batch(draw):
    """A (B, T) mask whose response occupies [start, start + length): prompt tokens may precede it."""
    seed, B, T = draw(seeds_and_shapes())
    starts = draw(st.lists(st.integers(0, T), min_size=B, max_size=B))
    lengths = [draw(st.integers(0, T - s)) for s in starts]
    pos = torch.arange(T)[None, :]
    start, end = torch.tensor(starts)[:, None], torch.tensor(starts)[:, None] + torch.tensor(lengths)[:, None]
    mask = (pos >= start) & (pos < end)  # (B, T)
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(B, generator=g, dtype=DT)
    logprobs = -torch.rand(B, T, generator=g, dtype=DT) * 5
    ref_logprobs = -torch.rand(B, T, generator=g, dtype=DT) * 5
    beta = draw(st.floats(0.0, 1.0))
    last = [s + n - 1 if n else None for s, n in zip(starts, lengths)]  # None: empty response
    return scores, logprobs, ref_logprobs, mask, beta, last


@SETTINGS
@given(response_batch())
def test_kl_rewards_score_at_last_token_when_policies_equal(batch):
    scores, logprobs, _, mask, beta, last = batch
    rewards, kl = kl_shaped_rewards(scores, logprobs, logprobs.clone(), mask, beta)
    assert torch.all(kl == 0)
    expected = torch.zeros_like(rewards)
    for b, t in enumerate(last):
        if t is not None:
            expected[b, t] = scores[b]
    assert torch.equal(rewards, expected)


@SETTINGS
@given(response_batch())
def test_kl_rewards_sum_is_score_minus_beta_kl(batch):
    scores, logprobs, ref_logprobs, mask, beta, last = batch
    rewards, kl = kl_shaped_rewards(scores, logprobs, ref_logprobs, mask, beta)
    assert torch.all(rewards[~mask] == 0) and torch.all(kl[~mask] == 0)
    assert_close(kl[mask], (logprobs - ref_logprobs)[mask])
    has_response = torch.tensor([t is not None for t in last])
    assert_close(rewards.sum(1), scores * has_response - beta * kl.sum(1))
    # at the last token the score and that token's KL penalty add up
    for b, t in enumerate(last):
        if t is not None:
            assert_close(rewards[b, t], scores[b] - beta * kl[b, t])


# ---------------------------------------------------------------- gae

def naive_gae(rewards, values, lengths, gamma, lam):
    """Closed form A_t = sum_l (gamma * lam)^l delta_{t+l}, by explicit double loop."""
    adv = torch.zeros_like(rewards)
    for b, L in enumerate(lengths):
        r, v = rewards[b].tolist(), values[b].tolist()
        delta = [r[t] + (gamma * v[t + 1] if t + 1 < L else 0.0) - v[t] for t in range(L)]
        for t in range(L):
            adv[b, t] = sum((gamma * lam) ** l * delta[t + l] for l in range(L - t))
    return adv


@st.composite
def gae_batch(draw):
    g, mask, lengths = draw(padded_batch())
    rewards = torch.randn(mask.shape, generator=g, dtype=DT)
    values = torch.randn(mask.shape, generator=g, dtype=DT)
    garbage = draw(st.sampled_from([1e4, -1e4, math.inf, math.nan]))
    rewards[~mask], values[~mask] = garbage, garbage  # padding garbage must not leak in
    return rewards, values, mask, lengths


@SETTINGS
@given(gae_batch(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_closed_form(batch, gamma, lam):
    rewards, values, mask, lengths = batch
    values.requires_grad_(True)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert not advantages.requires_grad and not returns.requires_grad
    expected = naive_gae(rewards, values.detach(), lengths, gamma, lam)
    assert_close(advantages, expected)
    assert_close(returns, torch.where(mask, expected + values.detach(), 0.0))


@SETTINGS
@given(gae_batch())
def test_gae_undiscounted_returns_are_reward_to_go(batch):
    rewards, values, mask, lengths = batch
    _, returns = gae(rewards, values, mask, gamma=1.0, lam=1.0)
    to_go = torch.where(mask, rewards, 0.0).flip(1).cumsum(1).flip(1) * mask
    assert_close(returns, to_go, atol=1e-9)


# ---------------------------------------------------------------- ppo_policy_loss, ppo_value_loss

@st.composite
def ppo_batch(draw):
    g, mask, lengths = draw(padded_batch())
    old_logprobs = -torch.rand(mask.shape, generator=g, dtype=DT) * 5
    advantages = torch.randn(mask.shape, generator=g, dtype=DT)
    log_ratio = (torch.rand(mask.shape, generator=g, dtype=DT) * 2 - 1) * 0.6  # ratio in [0.55, 1.8]
    return old_logprobs, advantages, log_ratio, mask, sum(lengths)


@SETTINGS
@given(ppo_batch(), st.floats(0.05, 0.5))
def test_ppo_loss_at_ratio_one_is_plain_policy_gradient(batch, clip):
    old_logprobs, advantages, _, mask, count = batch
    logprobs = old_logprobs.clone().requires_grad_(True)
    loss, stats = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip)
    assert_close(loss.detach(), -masked_mean(advantages, mask))
    assert stats["clipfrac"].item() == 0 and stats["approx_kl"].item() == 0
    assert stats["ratio_mean"].item() == (1.0 if count else 0.0)
    loss.backward()
    # d(ratio)/d(logp) = ratio = 1, so each real token's gradient is -A_t / (number of tokens)
    assert_close(logprobs.grad, -advantages * mask / max(count, 1))


@SETTINGS
@given(ppo_batch(), st.floats(0.05, 0.5))
def test_ppo_gradient_is_zero_past_the_clip(batch, clip):
    old_logprobs, advantages, log_ratio, mask, count = batch
    logprobs = (old_logprobs + log_ratio).requires_grad_(True)
    loss, stats = ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip)
    loss.backward()
    ratio = (logprobs.detach() - old_logprobs).exp()  # as the loss sees it, rounding included
    # clipped: the ratio has already moved past 1 +- clip in the direction the advantage wants
    clipped = ((advantages > 0) & (ratio > 1 + clip)) | ((advantages < 0) & (ratio < 1 - clip))
    far = ((ratio - (1 + clip)).abs() > 1e-9) & ((ratio - (1 - clip)).abs() > 1e-9)  # not on a kink
    expected = torch.where(clipped, 0.0, -advantages * ratio) * mask / max(count, 1)
    assert_close(logprobs.grad[far], expected[far])
    assert torch.all(logprobs.grad[clipped & mask] == 0)
    assert_close(stats["clipfrac"], masked_mean(clipped.to(DT), mask))
    assert_close(stats["approx_kl"], masked_mean(0.5 * ratio.log() ** 2, mask))
    assert_close(stats["ratio_max"], ratio[mask].max() if count else 0.0)


@SETTINGS
@given(ppo_batch(), st.floats(0.05, 0.5))
def test_value_loss_is_half_mse_when_values_unchanged(batch, clip):
    values, returns, delta, mask, _ = batch  # reuse the PPO draws: any (B, T) floats will do
    loss, stats = ppo_value_loss(values, values.clone(), returns, mask, clip)
    assert_close(loss, 0.5 * masked_mean((values - returns) ** 2, mask))
    assert stats["vf_clipfrac"].item() == 0
    # away from old values, clipping can only make the (pessimistic) loss larger
    moved, _ = ppo_value_loss(values + delta, values, returns, mask, clip)
    assert moved >= 0.5 * masked_mean((values + delta - returns) ** 2, mask) - 1e-12


# ---------------------------------------------------------------- lm_loss, adaptive_kl_update

@SETTINGS
@given(padded_batch(), st.integers(2, 17))
def test_lm_loss_matches_cross_entropy_on_masked_tokens(batch, V):
    g, mask, lengths = batch
    B, T = mask.shape
    logits = torch.randn(B, T, V, generator=g, dtype=DT) * 3
    targets = torch.randint(0, V, (B, T), generator=g)
    targets[~mask] = -1  # padding ids that F.cross_entropy would reject
    got = lm_loss(logits, targets, mask)
    expected = F.cross_entropy(logits[mask], targets[mask]) if sum(lengths) else torch.tensor(0.0)
    assert_close(got.double(), expected, atol=1e-5, rtol=1e-5)  # token_logprobs computes in fp32 by contract


@SETTINGS
@given(st.floats(1e-3, 1.0), st.floats(0.0, 50.0), st.floats(0.1, 20.0),
       st.integers(1, 512), st.integers(1000, 100_000))
def test_adaptive_kl_moves_beta_toward_target(beta, kl, target, n_steps, horizon):
    new = adaptive_kl_update(beta, kl, target, n_steps, horizon)
    step = new / beta - 1
    assert abs(step) <= 0.2 * n_steps / horizon + 1e-12  # the clip bounds every update
    if kl > target * (1 + 1e-9):
        assert new > beta
    elif kl < target * (1 - 1e-9):
        assert new < beta
    expected = min(max(kl / target - 1, -0.2), 0.2) * n_steps / horizon
    assert math.isclose(step, expected, rel_tol=1e-9, abs_tol=1e-12)


@SETTINGS
@given(padded_batch(), st.integers(2, 17))
def test_lm_loss_cross_entropy_path_equals_reference_with_gradient(batch, V):
    """lm_loss off the Triton path (F.cross_entropy) against the plain token_logprobs reference
    (log_softmax + gather): loss and gradient, float64."""
    from unittest import mock

    from kernels import token_logprobs_ref
    from nanorlhf import losses
    g, mask, _ = batch
    B, T = mask.shape
    logits = (torch.randn(B, T, V, generator=g, dtype=DT) * 3).requires_grad_()
    targets = torch.randint(0, V, (B, T), generator=g)
    with mock.patch.object(losses, "use_triton", lambda x: False):
        fast = lm_loss(logits, torch.where(mask, targets, -1), mask)
    (g_fast,) = torch.autograd.grad(fast, logits)
    plain = -masked_mean(token_logprobs_ref(logits, targets), mask)
    (g_plain,) = torch.autograd.grad(plain, logits)
    assert_close(fast, plain)
    assert_close(g_fast, g_plain)
