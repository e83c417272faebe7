"""The losses of InstructGPT (Ouyang et al. 2022), as pure functions.

Tensors in, tensors out, no module state: that is what lets tests/test_losses.py
check each one against a naive loop. In the algorithm's order:

    lm_loss             SFT (response tokens) and the ptx term (all tokens)
    rm_ranking_loss     the reward model's loss over the C(K,2) pairs of a ranking
    binary_loss         Askell et al.'s binary discrimination: acceptable or not, per response
    imitation_score     Askell et al.'s imitation PM: lm_loss on the labeler's top choice, then
                        a response scores its mean token log-likelihood
    kl_shaped_rewards   per-token reward: -beta * KL, plus the RM score at the end
    gae                 generalized advantage estimation (reversed loop)
    ppo_policy_loss     clipped surrogate
    ppo_value_loss      clipped value loss
    adaptive_kl_update  Ziegler et al. 2019's proportional controller for beta
    distill_kl          Askell et al.'s context distillation: the prompted model's distribution, no prompt

and what people use instead of PPO (train_ppo.py --advantage, train_dpo.py):

    rloo_advantages     RLOO's leave-one-out baseline over k samples of a prompt
    grpo_advantages     GRPO's group-normalized advantages
    k3_kl               the unbiased, non-negative per-token KL estimator GRPO puts in its loss
    dpo_loss            DPO (and IPO) on the C(K,2) pairs of a ranking: no reward model, no sampling

Shapes: B batch, T response tokens, K completions per prompt, V vocabulary.
Every `mask` marks the real tokens; it may be bool or 0/1 float.
"""
import torch
import torch.nn.functional as F

from kernels import hidden_logprobs, token_entropy, token_logprobs
from kernels._dispatch import use_fused_logprobs, use_triton


def masked_mean(x, mask, dim=None):
    """sum(x * mask) / sum(mask) over `dim` (all dims if None); 0 where the mask is empty."""
    mask = mask.bool()
    # torch.where, not x * mask: padding may hold -inf log-probs and -inf * 0 = NaN
    total = torch.where(mask, x, 0.0).sum(dim)
    count = mask.sum(dim).clamp(min=1)  # an all-padding row gives 0, not 0/0 = NaN
    return total / count


def masked_whiten(x, mask, shift_mean=True):
    """(x - mean) / sqrt(var + 1e-8) with mean and (biased) var over the masked entries.

    Whitening the advantages keeps the policy step size independent of the reward scale.
    shift_mean=False adds the mean back (only rescales). Entries outside the mask are 0.
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    whitened = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, 0.0)


def lm_loss(logits, targets, mask):
    """Masked mean token negative log-likelihood, -E[log pi(x_t | x_<t)].

    One function for two uses: SFT passes a mask over the response tokens only
    (InstructGPT, section 3), PPO-ptx passes all tokens of pretraining text; the
    caller multiplies the latter by gamma (objective: + gamma * E_pretrain[log pi(x)]).
    logits (B, T, V) must already be aligned with targets (B, T): logits[:, t] predicts targets[:, t].
    """
    # padding targets may be -1 or any id: make them valid, the mask drops them anyway
    targets = torch.where(mask.bool(), targets, 0)
    if use_triton(logits):
        return -masked_mean(token_logprobs(logits, targets), mask)  # fused kernel on CUDA
    # Elsewhere F.cross_entropy: log_softmax and the gather in one call, without the reference's
    # division by a temperature of 1, a pass over the (B, T, V) logits each way (profiled on CPU).
    nll = F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none")  # (B*T,)
    return masked_mean(nll.view_as(targets), mask)


def unembedding(model):
    """The (V, C) head weight of a policy (tied to wte), through a DistributedDataParallel wrapper."""
    return getattr(model, "module", model).lm_head.weight


def model_logprobs(model, idx, targets, temperature=1.0, head_at=None, entropy=False):
    """log pi(targets) of a policy on idx (B, T): targets (B, T) for every position, or (B, K) read at
    head_at (B, K). entropy=True: also the entropy (B, T or K) of each position, detached (a statistic).
    Fused (kernels._dispatch.use_fused_logprobs): from the hidden states, no (B, T, V) logits; else the
    logits and kernels.token_logprobs. Call it inside the autocast of the model's forward."""
    if use_fused_logprobs(idx, unembedding(model).size(0)):
        h = model(idx, head_at=head_at, return_hidden=True)  # (B, T or K, C)
        out = hidden_logprobs(h, unembedding(model), targets, temperature, entropy=entropy)
        return (out[0], out[1].detach()) if entropy else out
    logits = model(idx, head_at=head_at).float()  # (B, T or K, V)
    logp = token_logprobs(logits, targets, temperature)
    if not entropy:
        return logp
    with torch.no_grad():
        return logp, token_entropy(logits, temperature)


def model_lm_loss(model, idx, targets, mask):
    """lm_loss of a policy on idx (B, T) against targets (B, T): through model_logprobs when fused,
    else lm_loss of the logits (F.cross_entropy on CPU). Inside the autocast of the forward."""
    if use_fused_logprobs(idx, unembedding(model).size(0)):
        targets = torch.where(mask.bool(), targets, 0)
        return -masked_mean(model_logprobs(model, idx, targets), mask)
    return lm_loss(model(idx).float(), targets, mask)


def rm_ranking_loss(rewards, k):
    """InstructGPT reward model loss:

        loss(theta) = -1/C(K,2) * E_{(x, y_w, y_l) ~ D} [ log sigmoid( r(x, y_w) - r(x, y_l) ) ]

    rewards (B, K): row b holds r(x_b, y) for the k[b] completions of prompt b, sorted
    best first; columns >= k[b] are padding (any value, even NaN). k (B,): 2 <= k[b] <= K.
    The C(k,2) pairs of one prompt form one batch element (mean over its pairs), then
    mean over prompts, so a prompt with 9 completions does not outweigh one with 4.
    Returns (loss, accuracy): accuracy = fraction of pairs with r_w > r_l, same weighting.
    """
    K = rewards.shape[1]
    idx = torch.arange(K, device=rewards.device)
    valid = idx < k[:, None]  # (B, K)
    # zero the padding first: garbage there would make NaN differences and NaN gradients
    r = torch.where(valid, rewards, 0.0)
    # pair (i, j) with i < j < k: completion i was ranked above j, so i is y_w and j is y_l
    pairs = (idx[:, None] < idx[None, :]) & valid[:, None, :]  # (B, K, K)
    diff = r[:, :, None] - r[:, None, :]  # (B, K, K) r_i - r_j
    # logsigmoid, not log(sigmoid(.)): sigmoid underflows to 0 for large negative margins
    per_prompt = masked_mean(-F.logsigmoid(diff), pairs, dim=(1, 2))  # (B,)
    acc = masked_mean((diff > 0).to(rewards.dtype), pairs, dim=(1, 2))  # (B,)
    return per_prompt.mean(), acc.mean()


def binary_loss(logits, labels, mask):
    """Binary discrimination (Askell et al. 2021, section 4): the labeler marks each response
    acceptable (y = 1) or not (y = 0); a classifier head s(x, y) on the RM trunk learns it with

        loss(theta) = -E_{(x, y, l) ~ D} [ l * log sigmoid(s) + (1 - l) * log sigmoid(-s) ]

    and the logit s is the response's preference score. logits, labels, mask (B, K): the
    responses of B prompts, padding outside the mask (any value). Mean over responses.
    Returns (loss, accuracy of the sign of s against the labels)."""
    s = torch.where(mask.bool(), logits, 0.0)
    nll = F.binary_cross_entropy_with_logits(s, labels.to(s.dtype), reduction="none")  # stable log sigmoid
    acc = ((s > 0) == labels.bool()).to(s.dtype)
    return masked_mean(nll, mask), masked_mean(acc, mask)


def imitation_score(logits, targets, mask, per_token=True):
    """The imitation-learning preference model (Askell et al. 2021): the LM fine-tuned with lm_loss
    on the labeler's top-ranked response of each prompt scores a response by its likelihood, per token:

        s(x, y) = 1/|y| * sum_t log pi(y_t | x, y_<t)

    Normalized by length because the sum, a sum of negatives, favours short responses whatever
    they say (per_token=False gives the sum; train_rm.py reports accuracy under both). logits
    (B, T, V) aligned with targets (B, T) as in lm_loss; mask (B, T) marks the response tokens.
    Returns s (B,)."""
    targets = torch.where(mask.bool(), targets, 0)
    logp = -F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction="none").view_as(targets)
    return masked_mean(logp, mask, dim=1) if per_token else torch.where(mask.bool(), logp, 0.0).sum(1)


def kl_shaped_rewards(scores, logprobs, ref_logprobs, mask, beta):
    """Per-token reward of Stiennon et al. 2020 / InstructGPT's PPO objective:

        r_t = -beta * (log pi_RL(y_t) - log pi_SFT(y_t))  + [t == last] * r_theta(x, y)

    Summed over t this is r_theta(x, y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)).
    scores (B,) from the RM; logprobs, ref_logprobs, mask (B, T), logprobs of the
    sampled tokens, taken at the sampling temperature or the KL is not the policy's.
    Returns (rewards (B, T), kl (B, T)), both zero outside the mask.
    """
    mask = mask.bool()
    kl = torch.where(mask, logprobs - ref_logprobs, 0.0)  # (B, T) per-token estimate, not >= 0
    rewards = -beta * kl
    # index of the last real token: for right-padded responses starting at 0 this is
    # mask.sum(1) - 1, and unlike that it stays right if prompt tokens precede the response
    T = mask.shape[1]
    pos = torch.arange(T, device=mask.device)
    last = torch.where(mask, pos, 0).amax(1)  # (B,)
    score = torch.where(mask.any(1), scores, 0.0)  # an empty response gets no score
    rewards = rewards + (pos == last[:, None]) * score[:, None]  # (B, T)
    return rewards, kl


def gae(rewards, values, mask, gamma, lam):
    """Generalized advantage estimation (Schulman et al. 2016), reversed loop over T:

        delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
        A_t     = delta_t + gamma * lam * m_{t+1} * A_{t+1}

    i.e. A_t = sum_l (gamma * lam)^l delta_{t+l} within the response. The bandit episode
    ends at the last real token, so the value after it is 0 (m_{t+1} = 0 there).
    rewards, values, mask (B, T). Returns (advantages, returns = advantages + values),
    zero outside the mask. No gradient: these are regression targets, not functions of theta.
    """
    rewards, values = rewards.detach(), values.detach()  # (not @torch.no_grad(): mutmut 3 skips decorated functions)
    m = mask.to(values.dtype)
    rewards = torch.where(mask.bool(), rewards, 0.0)
    values = torch.where(mask.bool(), values, 0.0)  # padding values must not bootstrap
    T = rewards.shape[1]
    advantages = torch.zeros_like(values)
    next_adv = next_value = next_m = torch.zeros_like(values[:, 0])  # (B,) past the end
    for t in reversed(range(T)):
        delta = rewards[:, t] + gamma * next_value * next_m - values[:, t]
        next_adv = delta + gamma * lam * next_m * next_adv
        advantages[:, t] = next_adv
        next_value, next_m = values[:, t], m[:, t]
    advantages = advantages * m
    return advantages, (advantages + values) * m


def ppo_policy_loss(logprobs, old_logprobs, advantages, mask, clip=0.2):
    """PPO clipped surrogate (Schulman et al. 2017), as a loss to minimize:

        ratio = pi(y_t) / pi_old(y_t) = exp(logp_t - old_logp_t)
        loss  = E_t[ max(-A_t * ratio, -A_t * clip(ratio, 1 - clip, 1 + clip)) ]

    The max of the negatives is the min of the paper's objective: the pessimistic bound,
    with zero gradient once the ratio has moved past 1 +- clip in the advantage's direction.
    All inputs (B, T); old_logprobs and advantages must carry no gradient.
    Returns (loss, stats) with stats detached: clipfrac, approx_kl, ratio_max, ratio_mean.
    """
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.max(pg_loss1, pg_loss2), mask)
    with torch.no_grad():
        stats = {
            "clipfrac": masked_mean((pg_loss2 > pg_loss1).to(ratio.dtype), mask),
            # 0.5 * (log ratio)^2: a low-variance estimate of KL(pi_old || pi) (Schulman's k2)
            "approx_kl": masked_mean(0.5 * log_ratio**2, mask),
            "ratio_max": torch.where(mask.bool(), ratio, 0.0).max(),  # ratio > 0, so 0 is a safe fill
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def ppo_value_loss(values, old_values, returns, mask, clip=0.2):
    """Clipped value loss (the PPO2 / lm-human-preferences recipe):

        v_clipped = V_old + clip(V - V_old, -clip, clip)
        loss      = 0.5 * E_t[ max((V - R)^2, (v_clipped - R)^2) ]

    `clip` is in reward units, so it only means something when rewards are of order 1.
    All inputs (B, T). Returns (loss, stats) with stats["vf_clipfrac"].
    """
    v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
    vf_loss1 = (values - returns) ** 2
    vf_loss2 = (v_clipped - returns) ** 2
    loss = 0.5 * masked_mean(torch.max(vf_loss1, vf_loss2), mask)
    with torch.no_grad():
        stats = {"vf_clipfrac": masked_mean((vf_loss2 > vf_loss1).to(values.dtype), mask)}
    return loss, stats


def adaptive_kl_update(beta, current_kl, target, n_steps, horizon):
    """Adaptive KL coefficient of Ziegler et al. 2019 (lm-human-preferences):

        e_t    = clip(KL_t / KL_target - 1, -0.2, 0.2)
        beta  <- beta * (1 + e_t * n_steps / horizon)

    KL above target raises beta, below lowers it; the clip bounds each step.
    A fixed beta is simply not calling this. Python floats in, float out.
    """
    proportional_error = min(max(float(current_kl) / target - 1.0, -0.2), 0.2)
    return beta * (1.0 + proportional_error * n_steps / horizon)


# -----------------------------------------------------------------------------
# Critic-free policy gradients: k samples per prompt, the group is the baseline

def rloo_advantages(rewards):
    """RLOO (Ahmadian et al. 2024, after Kool et al. 2019): each of the k samples of a prompt is
    baselined by the mean reward of the OTHER k - 1 samples, the whole response one action:

        A_i = R_i - 1/(k-1) * sum_{j != i} R_j  =  k/(k-1) * (R_i - mean_j R_j)

    The baseline does not depend on sample i, so the policy gradient stays unbiased (a mean that
    includes R_i would shrink every advantage by (k-1)/k and correlate it with its own sample).
    rewards (G, k): sequence rewards of G prompts, k >= 2 samples each. Returns (G, k); each
    group's advantages sum to zero."""
    k = rewards.shape[1]
    return (k * rewards - rewards.sum(1, keepdim=True)) / (k - 1)


def grpo_advantages(rewards, eps=1e-4):
    """GRPO (Shao et al. 2024, DeepSeekMath), the outcome-supervised form: the group's mean is the
    baseline and its standard deviation the scale,

        A_i = (R_i - mean_j R_j) / (std_j R_j + eps)

    given to every token of response i. std is the unbiased (k - 1) one, as trl's GRPOTrainer; eps
    keeps a group of equal rewards at 0 (and two identical responses scored a float rounding apart
    from getting advantages of +-0.7). Invariant to R -> a R + b for a > 0 but for eps, exactly:
    grpo_advantages(a R + b, eps) = grpo_advantages(R, eps / a). rewards (G, k), k >= 2 -> (G, k)."""
    mean, std = rewards.mean(1, keepdim=True), rewards.std(1, keepdim=True)
    return (rewards - mean) / (std + eps)


def k3_kl(logprobs, ref_logprobs, mask):
    """Schulman's k3 estimator of KL(pi || pi_ref) per sampled token, GRPO's KL term (Shao et al.):

        k3_t = pi_ref(y_t) / pi(y_t) - log(pi_ref(y_t) / pi(y_t)) - 1

    With y_t ~ pi, E[pi_ref / pi] = sum_y pi_ref(y) = 1, so E[k3] = E[log pi/pi_ref] = KL(pi || pi_ref):
    unbiased, like the plain log-ratio kl_shaped_rewards charges, but >= 0 sample by sample
    (x - 1 - log x >= 0). logprobs, ref_logprobs, mask (B, T); logprobs may carry the gradient.
    Returns (B, T), zero outside the mask: masked BEFORE the exp, since exp of a padding entry can
    overflow, and inf times the zero gradient of a masked entry is NaN in backward."""
    log_r = torch.where(mask.bool(), ref_logprobs - logprobs, 0.0)  # log(pi_ref / pi)
    return torch.exp(log_r) - log_r - 1


def distill_kl(logits, teacher_logits, mask):
    """Context distillation (Askell et al. 2021, section 3): the masked mean over positions of

        KL(p(. | C, x_<t) || p_theta(. | x_<t)) = sum_v p_C(v) (log p_C(v) - log p_theta(v))

    with p_C the teacher, the same model behind a context C, read at the same tokens x_<t.
    logits, teacher_logits (B, T, V) aligned position by position; mask (B, T). The teacher's
    logits are constants (no gradient reaches them). Computed in the logits' dtype: pass fp32."""
    log_t = F.log_softmax(teacher_logits.detach(), -1)
    kl = (log_t.exp() * (log_t - F.log_softmax(logits, -1))).sum(-1)  # (B, T)
    return masked_mean(kl, mask)


# -----------------------------------------------------------------------------
# Direct alignment: the policy is its own reward model

def dpo_loss(logratios, k, beta, ipo=False):
    """DPO (Rafailov et al. 2023) and IPO (Azar et al. 2023) over the C(K,2) pairs of rankings.
    With h the difference of the policy/reference log-ratios of the chosen and rejected responses,

        h    = (log pi(y_w|x) - log pi_ref(y_w|x)) - (log pi(y_l|x) - log pi_ref(y_l|x))
        DPO: loss = -E_{(x, y_w, y_l) ~ D} [ log sigmoid(beta * h) ]
        IPO: loss =  E_{(x, y_w, y_l) ~ D} [ (h - 1/(2 beta))^2 ]

    DPO is the reward model's loss (rm_ranking_loss) on the implicit reward beta * log pi/pi_ref,
    the optimum of the KL-penalized RL objective at this beta; IPO regresses h toward a finite margin
    1/(2 beta) instead, so the log-ratios stop growing once the pair is ordered, even when the
    preference is deterministic. logratios (B, K): row b holds log pi(y|x_b) - log pi_ref(y|x_b),
    summed over each response's tokens, for its k[b] responses sorted best first; columns >= k[b]
    are padding (any value, even NaN). k (B,): 2 <= k[b] <= K. Every pair i < j < k[b] is
    (y_w, y_l) = (y_i, y_j). Weighted as the RM's loss: mean over a prompt's pairs, then over
    prompts, so the same labels weigh the same in both. Returns (loss, accuracy): the fraction of
    pairs with h > 0, i.e. ordered right by the implicit reward."""
    K = logratios.shape[1]
    idx = torch.arange(K, device=logratios.device)
    valid = idx < k[:, None]  # (B, K)
    lr = torch.where(valid, logratios, 0.0)  # padding garbage must not reach a difference
    pairs = (idx[:, None] < idx[None, :]) & valid[:, None, :]  # (B, K, K) i ranked above j
    h = lr[:, :, None] - lr[:, None, :]  # (B, K, K) h of (y_w, y_l) = (y_i, y_j)
    per_pair = (h - 1 / (2 * beta)) ** 2 if ipo else -F.logsigmoid(beta * h)  # logsigmoid: no underflow
    acc = masked_mean((h > 0).to(lr.dtype), pairs, dim=(1, 2))  # (B,)
    return masked_mean(per_pair, pairs, dim=(1, 2)).mean(), acc.mean()
