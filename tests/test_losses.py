"""Property tests for nanorlhf/losses.py: each loss against a naive float64 loop or a
closed form, plus the invariances the paper's equations promise."""
import math

import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from nanorlhf.losses import (
    adaptive_kl_update, binary_loss, distill_kl, dpo_loss, gae, grpo_advantages, imitation_score, k3_kl, kl_shaped_rewards,
    lm_loss, masked_mean, masked_whiten, ppo_policy_loss, ppo_value_loss, rloo_advantages, rm_ranking_loss,
)

DT = torch.float64
SETTINGS = settings(deadline=None)  # the profile's example count (ci: 200, derandomized)


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


@given(rankings(), st.data())
def test_rm_loss_invariant_to_per_row_shift(batch, data):
    rewards, k = batch
    c = torch.tensor(data.draw(st.lists(st.floats(-10, 10), min_size=len(k), max_size=len(k))), dtype=DT)
    shifted = rewards + c[:, None]  # shifts the padding too: garbage stays garbage
    assert_close(rm_ranking_loss(shifted, k)[0], rm_ranking_loss(rewards, k)[0], atol=1e-9)


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


@settings(max_examples=50)  # lm_loss runs in Triton's interpreter: ~0.25 s an example
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


@given(gae_batch(), st.floats(0.0, 1.0), st.floats(0.0, 1.0))
def test_gae_matches_closed_form(batch, gamma, lam):
    rewards, values, mask, lengths = batch
    values.requires_grad_(True)
    advantages, returns = gae(rewards, values, mask, gamma, lam)
    assert not advantages.requires_grad and not returns.requires_grad
    expected = naive_gae(rewards, values.detach(), lengths, gamma, lam)
    assert_close(advantages, expected)
    assert_close(returns, torch.where(mask, expected + values.detach(), 0.0))


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


@given(ppo_batch(), st.floats(0.05, 0.5))
def test_value_loss_is_half_mse_when_values_unchanged(batch, clip):
    values, returns, delta, mask, _ = batch  # reuse the PPO draws: any (B, T) floats will do
    loss, stats = ppo_value_loss(values, values.clone(), returns, mask, clip)
    assert_close(loss, 0.5 * masked_mean((values - returns) ** 2, mask))
    assert stats["vf_clipfrac"].item() == 0
    # away from old values, clipping can only make the (pessimistic) loss larger
    moved, _ = ppo_value_loss(values + delta, values, returns, mask, clip)
    assert moved >= 0.5 * masked_mean((values + delta - returns) ** 2, mask) - 1e-12


def naive_value_loss(values, old_values, returns, lengths, clip):
    """0.5 * mean over real tokens of max((V - R)^2, (V_clip - R)^2), its gradient in V and the
    fraction of tokens where the clipped term wins, one token at a time in float64."""
    terms, grads, clipped = [], torch.zeros_like(values), []
    count = sum(lengths)
    for b, n in enumerate(lengths):
        for t in range(n):
            v, old, r = values[b, t].item(), old_values[b, t].item(), returns[b, t].item()
            d = min(max(v - old, -clip), clip)  # the move the clip allows
            plain, clip_sq = (v - r) ** 2, (old + d - r) ** 2
            terms.append(0.5 * max(plain, clip_sq))
            clipped.append(float(clip_sq > plain))
            # the clipped term's value V_old + d does not move with V once |V - V_old| > clip
            grads[b, t] = (v - r) / count if plain >= clip_sq else \
                ((old + d - r) / count if abs(v - old) < clip else 0.0)
    n = max(count, 1)
    return sum(terms) / n, grads, sum(clipped) / n


@st.composite
def value_batch(draw):
    """New values moved from the old ones by up to 3 clips either way, returns on either side."""
    g, mask, lengths = draw(padded_batch())
    clip = draw(st.floats(0.05, 0.5))
    old = torch.randn(mask.shape, generator=g, dtype=DT)
    values = old + (torch.rand(mask.shape, generator=g, dtype=DT) * 2 - 1) * 3 * clip
    returns = old + torch.randn(mask.shape, generator=g, dtype=DT)
    return values, old, returns, mask, lengths, clip


@given(value_batch())
def test_value_loss_clipping_matches_loop(batch):
    """Both sides of the clip, against a token-by-token loop: loss, gradient and clip fraction."""
    values, old, returns, mask, lengths, clip = batch
    v = values.clone().requires_grad_(True)
    loss, stats = ppo_value_loss(v, old, returns, mask, clip)
    loss.backward()
    expected_loss, expected_grad, expected_frac = naive_value_loss(values, old, returns, lengths, clip)
    assert_close(loss.detach(), expected_loss)
    assert_close(stats["vf_clipfrac"], expected_frac)
    plain, clip_sq = (values - returns) ** 2, (old + (values - old).clamp(-clip, clip) - returns) ** 2
    away = (((values - old).abs() - clip).abs() > 1e-9) & ((plain - clip_sq).abs() > 1e-9)  # off the kinks
    assert_close(v.grad[away], expected_grad[away])
    assert torch.all(v.grad[~mask] == 0)


def test_value_loss_clips_above_and_below():
    """Five tokens by hand, clip 0.2, V_old = 0: a move of +1 or -1 is clipped to +-0.2; the loss
    takes the clipped term where it is the larger (then V gets no gradient), the plain one elsewhere."""
    values = torch.tensor([[1.0, 1.0, -1.0, -1.0, 0.1]], dtype=DT, requires_grad=True)
    returns = torch.tensor([[2.0, 0.0, -2.0, 0.0, 1.0]], dtype=DT)
    loss, stats = ppo_value_loss(values, torch.zeros_like(returns), returns, torch.ones_like(returns, dtype=torch.bool), 0.2)
    loss.backward()
    # (0.2 - 2)^2 = 3.24 beats (1 - 2)^2 = 1; (1 - 0)^2 = 1 beats (0.2 - 0)^2; mirrored below; inside the clip both equal 0.81
    assert_close(loss, 0.5 * (3.24 + 1 + 3.24 + 1 + 0.81) / 5, atol=1e-12)
    assert_close(stats["vf_clipfrac"], 2 / 5)
    assert_close(values.grad, torch.tensor([[0.0, 1.0, 0.0, -1.0, -0.9]], dtype=DT) / 5, atol=1e-12)


# ---------------------------------------------------------------- lm_loss, adaptive_kl_update

@settings(max_examples=50)  # lm_loss runs in Triton's interpreter: ~0.25 s an example
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


# ---------------------------------------------------------------- rloo_advantages, grpo_advantages

@st.composite
def groups(draw, min_k=2):
    """(G, k) sequence rewards: G prompts, k samples each; some groups tied (all samples equal)."""
    seed, G, k = draw(st.integers(0, 2**31 - 1)), draw(st.integers(1, 6)), draw(st.integers(min_k, 9))
    g = torch.Generator().manual_seed(seed)
    rewards = torch.randn(G, k, generator=g, dtype=DT) * draw(st.floats(0.1, 5.0)) + draw(st.floats(-3, 3))
    if draw(st.booleans()):
        rewards[0] = rewards[0, 0]  # a group of equal rewards: nothing to learn from it
    return rewards


@SETTINGS
@given(groups())
def test_rloo_matches_leave_one_out_loop(rewards):
    adv = rloo_advantages(rewards)
    G, k = rewards.shape
    for b in range(G):
        row = rewards[b].tolist()
        for i in range(k):
            others = [row[j] for j in range(k) if j != i]
            assert_close(adv[b, i], row[i] - sum(others) / (k - 1), atol=1e-9)


@SETTINGS
@given(groups(), st.floats(-10, 10))
def test_rloo_advantages_sum_to_zero_per_group_and_ignore_a_shift(rewards, c):
    adv = rloo_advantages(rewards)
    assert_close(adv.sum(1), torch.zeros(rewards.shape[0]), atol=1e-9)
    assert_close(rloo_advantages(rewards + c), adv, atol=1e-9)  # a prompt's reward offset is baselined away
    tied = (rewards == rewards[:, :1]).all(1)
    assert_close(adv[tied], torch.zeros_like(adv[tied]), atol=1e-12)  # a tied group teaches nothing


@SETTINGS
@given(groups())
def test_grpo_advantages_zero_mean_unit_std_per_group(rewards):
    adv = grpo_advantages(rewards)
    assert_close(adv.mean(1), torch.zeros(rewards.shape[0]), atol=1e-9)
    std = rewards.std(1)
    spread = std > 1e-6
    if spread.any():
        assert_close(adv[spread].std(1), std[spread] / (std[spread] + 1e-4), atol=1e-9)  # 1 but for eps
    assert_close(adv[~spread], torch.zeros_like(adv[~spread]), atol=1e-9)  # a tied group gets ~0, not 0/0 or +-1
    for b in range(rewards.shape[0]):  # the loop: (r - mean) / (unbiased std + eps)
        row = rewards[b].tolist()
        m = sum(row) / len(row)
        sd = math.sqrt(sum((x - m) ** 2 for x in row) / (len(row) - 1))
        assert_close(adv[b], [(x - m) / (sd + 1e-4) for x in row], atol=1e-9)


@SETTINGS
@given(groups(), st.floats(0.01, 100.0), st.floats(-10, 10))
def test_grpo_invariant_to_positive_affine_reward_transforms(rewards, a, b):
    # exactly, once eps is scaled along; and to within eps's effect with the default eps
    assert_close(grpo_advantages(a * rewards + b), grpo_advantages(rewards, eps=1e-4 / a), atol=1e-8, rtol=1e-7)
    spread = rewards.std(1) > 0.1
    if a >= 0.1:
        assert_close(grpo_advantages(a * rewards + b)[spread], grpo_advantages(rewards)[spread], atol=0.0, rtol=2e-2)
    # a negative scale flips every advantage: the reward's sign is what it learns
    assert_close(grpo_advantages(-rewards, eps=0.0)[spread], -grpo_advantages(rewards, eps=0.0)[spread])


# ---------------------------------------------------------------- distill_kl

@SETTINGS
@given(padded_batch(min_len=1), st.integers(2, 30), st.floats(0.1, 5.0))
def test_distill_kl_matches_a_loop_and_pulls_the_student_only(batch, V, spread):
    """Forward KL(teacher || student) per position, against a loop over the vocabulary; zero for
    equal logits whatever their shift; the gradient reaches the student's logits only, as
    softmax(student) - softmax(teacher) over the real positions."""
    g, mask, _ = batch
    s = (torch.randn(*mask.shape, V, generator=g, dtype=DT) * spread).requires_grad_(True)
    t = (torch.randn(*mask.shape, V, generator=g, dtype=DT) * spread).requires_grad_(True)
    loss = distill_kl(s, t, mask)
    total = 0.0
    for b, i in mask.nonzero().tolist():
        p, q = t[b, i].detach().softmax(-1), s[b, i].detach().softmax(-1)
        total += sum(p[v] * (p[v].log() - q[v].log()) for v in range(V))
    assert_close(loss, total / mask.sum())
    loss.backward()
    assert t.grad is None or torch.all(t.grad == 0)
    want = torch.where(mask[..., None], s.detach().softmax(-1) - t.detach().softmax(-1), 0.0) / mask.sum()
    assert_close(s.grad, want)
    assert_close(distill_kl(t.detach() + 3.0, t.detach(), mask), 0.0)
    assert distill_kl(s.detach(), t.detach(), mask) > 0  # distinct draws differ somewhere


# ---------------------------------------------------------------- k3_kl

@SETTINGS
@given(padded_batch())
def test_k3_is_nonnegative_and_zero_when_policies_equal(batch):
    g, mask, _ = batch
    logp = -torch.rand(mask.shape, generator=g, dtype=DT) * 8
    ref = -torch.rand(mask.shape, generator=g, dtype=DT) * 8
    logp[~mask] = -math.inf  # padding log-probs may be -inf: no NaN, no overflow, no gradient
    k3 = k3_kl(logp, ref, mask)
    assert torch.all(k3 >= 0) and torch.all(k3[~mask] == 0)
    assert torch.all(k3_kl(logp, logp.clone(), mask) == 0)
    x = logp.clone().requires_grad_(True)
    masked_mean(k3_kl(x, ref, mask), mask).backward()
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[~mask] == 0)
    # d k3 / d log pi = 1 - pi_ref / pi: it pulls log pi toward log pi_ref from either side
    assert_close(x.grad[mask], (1 - (ref - logp).exp())[mask] / max(int(mask.sum()), 1))


@SETTINGS
@given(st.integers(0, 2**31 - 1), st.integers(2, 50), st.floats(0.1, 4.0))
def test_k3_is_unbiased_for_kl_in_expectation(seed, V, spread):
    """E_{y ~ p}[k3(y)] summed exactly over the vocabulary equals KL(p || q), and so does the plain
    log-ratio's expectation, which unlike k3 is negative for some y whenever p != q."""
    g = torch.Generator().manual_seed(seed)
    logp = torch.log_softmax(torch.randn(V, generator=g, dtype=DT) * spread, 0)
    logq = torch.log_softmax(torch.randn(V, generator=g, dtype=DT) * spread, 0)
    kl = (logp.exp() * (logp - logq)).sum()
    every_token = torch.ones(V, dtype=torch.bool)
    assert_close((logp.exp() * k3_kl(logp, logq, every_token)).sum(), kl, atol=1e-12)
    assert_close((logp.exp() * (logp - logq)).sum(), kl, atol=1e-12)
    assert (logp - logq).min() < 0 <= k3_kl(logp, logq, every_token).min()


# ---------------------------------------------------------------- dpo_loss

def naive_dpo(logratios, k, beta, ipo):
    """The pairs of each prompt, one scalar at a time (autograd runs through the loop)."""
    per_prompt = []
    for b, K in enumerate(k.tolist()):
        terms = []
        for i in range(K):
            for j in range(i + 1, K):
                h = logratios[b, i] - logratios[b, j]
                terms.append((h - 1 / (2 * beta)) ** 2 if ipo else torch.log1p(torch.exp(-beta * h)))
        per_prompt.append(sum(terms) / len(terms))
    return sum(per_prompt) / len(per_prompt)


@SETTINGS
@given(rankings(), st.floats(0.01, 2.0), st.booleans())
def test_dpo_loss_matches_pairwise_loop_values_and_gradients(batch, beta, ipo):
    logratios, k = batch
    x = logratios.clone().requires_grad_(True)
    loss, acc = dpo_loss(x, k, beta, ipo=ipo)
    loss.backward()
    valid = torch.arange(logratios.shape[1])[None, :] < k[:, None]
    y = torch.where(valid, logratios, 0.0).requires_grad_(True)  # the loop never reads the padding
    expected = naive_dpo(y, k, beta, ipo)
    expected.backward()
    assert_close(loss.detach(), expected.detach(), atol=1e-9)
    assert_close(x.grad[valid], y.grad[valid], atol=1e-10)
    assert torch.isfinite(x.grad).all() and torch.all(x.grad[~valid] == 0)  # garbage padding: no gradient
    assert_close(acc, naive_rm(logratios, k)[1])  # ordered pairs: the implicit reward's accuracy


@SETTINGS
@given(rankings(), st.floats(0.01, 2.0), st.data())
def test_dpo_is_the_rm_loss_on_the_implicit_reward_and_ignores_a_prompt_shift(batch, beta, data):
    logratios, k = batch
    loss, acc = dpo_loss(logratios, k, beta)
    rm_loss, rm_acc = rm_ranking_loss(beta * logratios, k)
    assert_close(loss, rm_loss, atol=1e-9) and assert_close(acc, rm_acc)
    # log Z(x), the partition function DPO cancels, is a per-prompt constant: it must change nothing
    c = torch.tensor(data.draw(st.lists(st.floats(-10, 10), min_size=len(k), max_size=len(k))), dtype=DT)
    for ipo in (False, True):
        assert_close(dpo_loss(logratios + c[:, None], k, beta, ipo)[0], dpo_loss(logratios, k, beta, ipo)[0], atol=1e-8)


@SETTINGS
@given(st.floats(0.01, 2.0), st.floats(-5, 5))
def test_ipo_pulls_the_margin_to_half_over_beta_where_dpo_keeps_pushing(beta, h):
    k = torch.tensor([2])
    def grad(x, ipo):
        x = torch.tensor([[x, 0.0]], dtype=DT, requires_grad=True)
        dpo_loss(x, k, beta, ipo)[0].backward()
        return x.grad[0, 0].item()  # d loss / d log-ratio of the chosen response
    target = 1 / (2 * beta)
    assert dpo_loss(torch.tensor([[target, 0.0]], dtype=DT), k, beta, ipo=True)[0].item() < 1e-20
    assert abs(grad(target, True)) < 1e-9
    if abs(h - target) > 1e-6:  # IPO's gradient points back toward the target margin from both sides
        assert math.copysign(1, grad(h, True)) == math.copysign(1, h - target)
    assert grad(h, False) < 0 and grad(target + 10, False) < 0  # DPO: raise the chosen's ratio, always


# ---------------------------------------------------------------- edges the property tests do not draw

def test_a_tie_is_not_a_correct_ranking():
    """Every accuracy counts a pair right only when the preferred response scores strictly higher, so
    a constant reward model, or DPO at its first step (policy = reference: every h = 0), scores 0, not 1."""
    _, acc = rm_ranking_loss(torch.zeros(2, 4, dtype=DT), torch.tensor([4, 2]))
    assert acc.item() == 0.0
    _, acc = dpo_loss(torch.zeros(2, 4, dtype=DT), torch.tensor([3, 4]), beta=0.1)
    assert acc.item() == 0.0
    # s = 0 does not predict "acceptable": wrong on every 1 label
    _, acc = binary_loss(torch.zeros(1, 2, dtype=DT), torch.tensor([[True, True]]), torch.ones(1, 2, dtype=torch.bool))
    assert acc.item() == 0.0


def test_whitening_a_constant_gives_zeros_not_nan():
    """var = 0 (every advantage equal, e.g. a group that all scored the same): the 1e-8 keeps the
    rsqrt finite, and the whitened values are 0."""
    mask = torch.tensor([[True, True, False]])
    w = masked_whiten(torch.full((1, 3), 7.0, dtype=DT), mask)
    assert torch.equal(w, torch.zeros(1, 3, dtype=DT))


def test_ppo_losses_clip_at_0_2_by_default():
    """The paper's clip, 0.2, for both losses when none is given: ratio 1.5 on a positive advantage is
    clipped at 1.2, and a value moved by 1 is clipped to 0.2 from the old value."""
    mask = torch.ones(1, 1, dtype=torch.bool)
    old, adv = torch.zeros(1, 1, dtype=DT), torch.ones(1, 1, dtype=DT)
    loss, stats = ppo_policy_loss(old + math.log(1.5), old, adv, mask)
    assert_close(loss, -1.2)
    assert_close(stats["clipfrac"], 1.0)
    # value 1 from old value 0 toward a return of 2: clipped to 0.2, (0.2 - 2)^2 = 3.24 beats (1 - 2)^2 = 1
    loss, stats = ppo_value_loss(old + 1.0, old, old + 2.0, mask)
    assert_close(loss, 0.5 * (0.2 - 2.0) ** 2)
    assert_close(stats["vf_clipfrac"], 1.0)
