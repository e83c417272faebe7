"""nanorlhf/batching.py against hand-built ids: the SFT loss mask (response tokens and the
end-of-text, never a prompt token or padding), right padding, the pretraining windows and the
held-out split of the corpus."""
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from nanorlhf.batching import (encode_example, encode_prompt, heldout_stream, pad_right, pretrain_batch, pretrain_loss,
                               response_batch, response_nll)
from nanorlhf.errors import UserError
from nanorlhf.losses import lm_loss
from nanorlhf.model import GPT, GPTConfig
from nanorlhf.tokenizer import PROMPT, RESPONSE, encode, get_tokenizer

pytestmark = pytest.mark.usefixtures("reference_kernels")  # lm_loss on CPU as the scripts run it
ENC = get_tokenizer()
PAD = 7  # any id: the mask must drop it


def test_encode_example_is_prompt_response_eot():
    ids, n_prompt = encode_example(ENC, "Sort these numbers: 3 1 2", "1 2 3")
    assert ids[:n_prompt] == encode_prompt(ENC, "Sort these numbers: 3 1 2")
    assert ids[0] == encode(ENC, PROMPT)[0] and ids[n_prompt - 1] == encode(ENC, RESPONSE)[0]
    assert ids[n_prompt:] == encode(ENC, "1 2 3") + [ENC.eot_token]


@st.composite
def examples(draw):
    """(ids, n_prompt) pairs of random ids: a prompt of >= 1 token, then a response of >= 1 token
    (the last one stands for the end-of-text)."""
    out = []
    for _ in range(draw(st.integers(1, 6))):
        n_prompt, n_response = draw(st.integers(1, 8)), draw(st.integers(1, 8))
        out.append((draw(st.lists(st.integers(0, 99), min_size=n_prompt + n_response, max_size=n_prompt + n_response)),
                    n_prompt))
    return out


@given(examples())
def test_response_mask_is_exactly_the_response_targets(batch):
    """mask[b, t] says whether target ids[b, t + 1] is learned: every response token and the final
    end-of-text, in order; no prompt token, no padding."""
    ids, mask = response_batch(batch, PAD, torch.device("cpu"))
    T = max(len(x) for x, _ in batch)
    assert ids.shape == (len(batch), T) and mask.shape == (len(batch), T - 1) and mask.dtype == torch.bool
    for b, (x, n_prompt) in enumerate(batch):
        assert ids[b].tolist() == x + [PAD] * (T - len(x))
        assert ids[b, 1:][mask[b]].tolist() == x[n_prompt:]
        assert mask[b].tolist() == [n_prompt <= t + 1 < len(x) for t in range(T - 1)]


def test_response_mask_on_tokenized_examples():
    """The same on real text: the learned targets decode to the response, then <|endoftext|>."""
    pairs = [("Describe the owl in at most 3 words.", "Wise night bird."), ("Say hi.", "Hi!"),
             ("List exactly 2 fruits.", "Apple, pear.")]
    batch = [encode_example(ENC, p, r) for p, r in pairs]
    ids, mask = response_batch(batch, ENC.eot_token, torch.device("cpu"))
    for b, (_, r) in enumerate(pairs):
        targets = ids[b, 1:][mask[b]].tolist()
        assert ENC.decode(targets) == r + "<|endoftext|>"
        assert int(mask[b].sum()) == len(encode(ENC, r)) + 1


def tiny_lm(seed=0, dropout=0.0):
    torch.manual_seed(seed)
    return GPT(GPTConfig(block_size=64, vocab_size=100, n_layer=1, n_head=2, n_embd=16, dropout=dropout))


def test_response_nll_sums_the_response_targets_of_each_example_alone():
    """(sum of -log p over response targets, their count) equals each example scored alone, with no
    padding: padding and prompt tokens add nothing."""
    model = tiny_lm().eval()
    batch = [([5, 6, 7, 8, 9, 10], 2), ([11, 12, 13], 1), ([14, 15, 16, 17, 18, 19, 20, 21, 22], 6)]
    nll, n = response_nll(model, batch, PAD, torch.device("cpu"))
    total = 0.0
    for x, n_prompt in batch:
        logp = torch.log_softmax(model(torch.tensor([x[:-1]])), -1)[0]  # (T-1, V)
        total -= sum(logp[t - 1, x[t]].item() for t in range(n_prompt, len(x)))
    assert n == sum(len(x) - p for x, p in batch) == 9
    assert nll.item() == pytest.approx(total, rel=1e-5)


def test_pad_right_pads_and_truncates():
    ids, lengths = pad_right([[1, 2, 3], [4], [5, 6]], pad=0)
    assert ids.tolist() == [[1, 2, 3], [4, 0, 0], [5, 6, 0]] and lengths.tolist() == [3, 1, 2]
    ids, lengths = pad_right([[1, 2, 3], [4]], pad=9, T=2)
    assert ids.tolist() == [[1, 2], [4, 9]] and lengths.tolist() == [2, 1] and ids.dtype == torch.long


def test_heldout_stream_holds_out_every_20th_document():
    docs = [f"document number {i} says hello" for i in range(45)]
    train, held = heldout_stream(ENC, docs)
    join = lambda ds: [t for d in ds for t in encode(ENC, d) + [ENC.eot_token]]
    assert held.tolist() == join(docs[0::20]) and held.dtype == np.int64  # documents 0, 20, 40
    assert train.tolist() == join([d for i, d in enumerate(docs) if i % 20]) and train.dtype == np.int64


def test_pretrain_batch_windows_are_slices_of_the_stream():
    stream = np.arange(1000, 1050)  # a window's first id gives its start
    xy = pretrain_batch(stream, 64, 8, np.random.default_rng(0))
    assert xy.shape == (64, 9) and xy.dtype == torch.int64
    starts = xy[:, 0] - 1000
    assert torch.equal(xy, 1000 + starts[:, None] + torch.arange(9)[None])
    assert starts.min() >= 0 and starts.max() + 9 <= 50 and len(set(starts.tolist())) > 20
    assert torch.equal(xy, pretrain_batch(stream, 64, 8, np.random.default_rng(0)))  # a function of the rng
    assert pretrain_batch(np.arange(10), 3, 8, np.random.default_rng(0)).tolist() == [list(range(9))] * 3  # one window fits
    with pytest.raises(UserError, match="pretraining text has 9 tokens, fewer than one window of 9: add text to pretrain.jsonl$"):
        pretrain_batch(np.arange(9), 3, 8, np.random.default_rng(0))


@pytest.mark.parametrize("training", [True, False])
def test_pretrain_loss_is_the_eval_mode_loss_and_restores_the_mode(training):
    """On a constant stream every window is the same, so the loss is that of one window, computed
    without dropout (eval mode), with min(T, len - 2) inputs; the model's mode is left as it was."""
    model = tiny_lm(dropout=0.5).train(training)
    stream = np.full(40, 42)
    got = pretrain_loss(model, stream, torch.device("cpu"), n_windows=32, T=128)  # T falls to 38
    assert model.training == training
    with torch.no_grad():
        x = torch.full((1, 39), 42)
        expected = lm_loss(model.eval()(x[:, :-1]), x[:, 1:], torch.ones(1, 38, dtype=torch.bool)).item()
    assert got == pytest.approx(expected, rel=1e-6)
    model.train()
    assert pretrain_loss(model, np.full(200, 42), torch.device("cpu"), T=16) == pytest.approx(
        lm_loss(model.eval()(torch.full((1, 16), 42)), torch.full((1, 16), 42), torch.ones(1, 16, dtype=torch.bool)).item(),
        rel=1e-6)


def test_pretrain_loss_is_the_mean_over_every_one_of_its_fixed_windows():
    """On a varied stream: the mean next-token loss over all n_windows windows of
    pretrain_batch(stream, n, T, default_rng(1234)), each window counted once whatever the chunking,
    and the same on every call (the windows are fixed, so the alignment tax compares like with like)."""
    model = tiny_lm().eval()
    stream = np.random.default_rng(5).integers(1, 50, 3000)
    xy = pretrain_batch(stream, 40, 32, np.random.default_rng(1234))
    with torch.no_grad():
        per_window = [lm_loss(model(w[None, :-1]), w[None, 1:], torch.ones(1, 32, dtype=torch.bool)).item() for w in xy]
    got = pretrain_loss(model, stream, torch.device("cpu"), n_windows=40, T=32)  # chunks of 16, 16, 8
    assert got == pytest.approx(np.mean(per_window), rel=1e-5)
    assert pretrain_loss(model, stream, torch.device("cpu"), n_windows=40, T=32) == got
    assert got != pytest.approx(np.mean(per_window[1:]), rel=1e-5)  # the test can tell a missing window
