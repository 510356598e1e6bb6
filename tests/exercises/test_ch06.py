"""Chapter 6's exercises: sampling the training mask, the masked-only loss with label
smoothing, caption dropout, and the training step that puts them together.

Forward only, against NumPy references written here. The schedules are passed as NumPy
functions, so these tests never run the library's own γ; the training step's test stands in
for the transformer and the text encoder with fixed NumPy functions.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import backend
from tinymuse.masking import sample_training_mask, training_mask_counts
from tinymuse.models import BaseTransformer, BaseTransformerConfig, TextContext, masked_token_loss
from tinymuse.tensor import Tensor
from tinymuse.text.encoder import TextEncoderConfig


def cosine_gamma(r):
    return np.cos(np.pi * np.asarray(r) / 2)


def smoothed_cross_entropy(logits, targets, where, eps):
    """Mean over ``where`` of −Σ_c q_c log p_c with q = (1 − ε)·onehot + ε/K."""
    k = logits.shape[-1]
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    q = (1 - eps) * np.eye(k)[targets] + eps / k
    return float((-(q * log_p).sum(axis=-1))[where].mean())


def ranked_mask(scores, how_many):
    """True at the ``how_many[b]`` smallest scores of each row b."""
    return np.argsort(np.argsort(scores, axis=1), axis=1) < np.asarray(how_many)[:, None]


# --------------------------------------------------------------------------- ch06_ex1
def test_ch06_ex1_counts_are_the_ceiling_clipped_to_one_and_n():
    fractions = np.array([0.0, 1e-9, 0.3, 0.5, 0.51, 0.99, 1.0])
    counts = training_mask_counts(fractions, 10)
    assert counts.dtype == np.int64
    assert counts.tolist() == [1, 1, 3, 5, 6, 10, 10]
    assert training_mask_counts(np.array([0.2]), 64).tolist() == [13]


@settings(max_examples=40, deadline=None)
@given(fractions=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=8), n=st.integers(1, 64))
def test_ch06_ex1_counts_lie_in_one_to_n_and_cover_the_fraction(fractions, n):
    counts = training_mask_counts(np.array(fractions), n)
    assert counts.shape == (len(fractions),)
    assert np.all((1 <= counts) & (counts <= n))
    assert np.all(counts >= np.array(fractions) * n - 1e-9)     # never fewer than f·N
    assert np.all((counts == 1) | (counts - 1 < np.array(fractions) * n))   # and the least such


def test_ch06_ex1_each_row_hides_ceil_gamma_r_n_tokens():
    batch, n = 400, 16
    mask = sample_training_mask(batch, n, backend.Generator(0), schedule=cosine_gamma)
    r = backend.Generator(0).random((batch,), dtype=np.float64)   # the first draw: r per row
    wanted = np.clip(np.ceil(cosine_gamma(r) * n), 1, n)
    assert mask.shape == (batch, n) and mask.dtype == bool
    assert np.array_equal(mask.sum(axis=1), wanted)
    # E[γ(r)] = 2/π for the cosine; the ceiling adds about half a token
    assert abs(mask.mean() - (2 / np.pi + 0.5 / n)) < 0.05


def test_ch06_ex1_positions_are_uniform_and_come_second():
    batch, n = 50, 12
    quarter = lambda r: 0.25 + 0 * r                             # noqa: E731
    mask = sample_training_mask(batch, n, backend.Generator(1), schedule=quarter)
    replay = backend.Generator(1)
    replay.random((batch,), dtype=np.float64)                    # the ratios come first
    scores = replay.random((batch, n), dtype=np.float64)         # then random_mask's scores
    assert np.array_equal(mask, ranked_mask(scores, np.full(batch, 3)))
    many = sample_training_mask(4000, n, backend.Generator(2), schedule=quarter)
    assert np.all(np.abs(many.mean(axis=0) - 0.25) < 0.03)


def test_ch06_ex1_every_row_hides_at_least_one_and_at_most_all():
    none = sample_training_mask(30, 9, backend.Generator(3), schedule=lambda r: 0 * r)
    every = sample_training_mask(30, 9, backend.Generator(3), schedule=lambda r: 1 + 0 * r)
    assert none.sum(axis=1).tolist() == [1] * 30
    assert every.all()


# --------------------------------------------------------------------------- ch06_ex2
@pytest.fixture
def logits_and_mask():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 8, 5)).astype(np.float32)
    targets = rng.integers(0, 5, (3, 8))
    mask = rng.random((3, 8)) < 0.5
    mask[:, 0] = True
    logits[0, 0, targets[0, 0]] += 4.0                 # one masked token predicted right
    return logits, targets, mask


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_ch06_ex2_the_mean_over_masked_positions_with_smoothing(logits_and_mask, eps):
    logits, targets, mask = logits_and_mask
    loss, accuracy = masked_token_loss(Tensor(logits), targets, mask, label_smoothing=eps)
    assert loss.item() == pytest.approx(smoothed_cross_entropy(logits, targets, mask, eps),
                                        rel=1e-5)
    right = logits.argmax(axis=-1) == targets
    assert isinstance(accuracy, float)
    assert accuracy == pytest.approx(right[mask].mean())


def test_ch06_ex2_visible_targets_do_not_matter(logits_and_mask):
    logits, targets, mask = logits_and_mask
    junk = np.where(mask, targets, (targets + 2) % 5)
    loss, accuracy = masked_token_loss(Tensor(logits), targets, mask, label_smoothing=0.1)
    loss_junk, accuracy_junk = masked_token_loss(Tensor(logits), junk, mask, label_smoothing=0.1)
    assert loss.item() == pytest.approx(loss_junk.item(), rel=1e-6)
    assert accuracy == accuracy_junk
    everywhere, _ = masked_token_loss(Tensor(logits), targets, np.ones_like(mask), 0.1)
    assert everywhere.item() != pytest.approx(loss.item(), rel=1e-3), \
        "the loss must not be taken over every position"


def test_ch06_ex2_smoothing_keeps_the_loss_above_zero():
    logits = np.zeros((1, 2, 4), np.float32)
    logits[0, :, 1] = 50.0                              # certain, and right
    targets = np.ones((1, 2), np.int64)
    mask = np.array([[True, False]])
    plain, accuracy = masked_token_loss(Tensor(logits), targets, mask, label_smoothing=0.0)
    smooth, _ = masked_token_loss(Tensor(logits), targets, mask, label_smoothing=0.1)
    assert plain.item() == pytest.approx(0.0, abs=1e-5) and accuracy == 1.0
    # q puts 0.1/4 on each of the three wrong codes, whose log p is −50
    assert smooth.item() == pytest.approx(3 * 0.025 * 50.0, rel=1e-3)


# --------------------------------------------------------------------------- ch06_ex3
def tiny_model(caption_dropout=0.1, **more):
    text = TextEncoderConfig(vocab_size=12, max_length=6, d_model=8, num_layers=0, num_heads=1)
    config = BaseTransformerConfig(codebook_size=5, grid_size=2, d_model=8, num_layers=0,
                                   num_heads=1, text=text, caption_dropout=caption_dropout, **more)
    return BaseTransformer(config, generator=backend.Generator(0))


def caption_batch(rows, seed=0):
    rng = np.random.default_rng(seed)
    real = np.arange(6)[None, :] < rng.integers(1, 7, rows)[:, None]
    ids = np.where(real, rng.integers(4, 12, (rows, 6)), 0).astype(np.int32)
    return ids, real


def test_ch06_ex3_a_dropped_caption_becomes_the_empty_prompt():
    model = tiny_model(0.3)
    ids, real = caption_batch(200)
    ids_before, real_before = ids.copy(), real.copy()
    new_ids, new_mask, dropped = model.drop_captions(ids, real, backend.Generator(5))
    u = backend.Generator(5).random((200,))            # one uniform number per caption
    assert np.array_equal(dropped, u < 0.3)
    assert not new_mask[dropped].any(), "a dropped caption keeps no text token"
    assert (new_ids[dropped] == model.config.text.pad_id).all()
    assert np.array_equal(new_ids[~dropped], ids[~dropped])
    assert np.array_equal(new_mask[~dropped], real[~dropped])
    assert new_ids.dtype == ids.dtype and new_mask.dtype == bool
    assert np.array_equal(ids, ids_before) and np.array_equal(real, real_before), \
        "the caller's arrays (a batch of the token cache) must not change"


def test_ch06_ex3_the_rate_is_caption_dropout():
    ids, real = caption_batch(5000, seed=1)
    _, _, dropped = tiny_model(0.1).drop_captions(ids, real, backend.Generator(6))
    assert abs(dropped.mean() - 0.1) < 0.015
    _, mask0, dropped0 = tiny_model(0.0).drop_captions(ids, real, backend.Generator(6))
    _, mask1, dropped1 = tiny_model(1.0).drop_captions(ids, real, backend.Generator(6))
    assert not dropped0.any() and np.array_equal(mask0, real)
    assert dropped1.all() and not mask1.any()


# --------------------------------------------------------------------------- ch06_ex4
class StandInModel(BaseTransformer):
    """The base model with its text encoder and transformer replaced by fixed NumPy
    functions that record what they were given."""

    def __init__(self, config):
        super().__init__(config, generator=backend.Generator(0))
        n, k = config.num_tokens, config.codebook_size
        self.table = np.random.default_rng(7).normal(size=(n, k + 1, k)).astype(np.float32)
        self.seen_text, self.seen_tokens = [], []

    def encode_text(self, ids, mask):
        self.seen_text.append((np.array(ids), np.array(mask)))
        return TextContext(Tensor(np.zeros(ids.shape + (self.config.d_model,), np.float32)), mask)

    def logits(self, tokens, context):
        tokens = np.asarray(tokens).reshape(len(tokens), -1)
        self.seen_tokens.append(tokens.copy())
        return Tensor(self.table[np.arange(tokens.shape[1]), tokens])   # (B, N, K)

    forward = logits


def test_ch06_ex4_a_training_step_feeds_mask_ids_and_grades_the_masked_tokens():
    text = TextEncoderConfig(vocab_size=12, max_length=6, d_model=8, num_layers=0, num_heads=1)
    config = BaseTransformerConfig(codebook_size=6, grid_size=3, d_model=8, num_layers=0,
                                   num_heads=1, text=text, caption_dropout=0.4,
                                   label_smoothing=0.1, mask_schedule=cosine_gamma)
    model = StandInModel(config)
    rng = np.random.default_rng(8)
    tokens = rng.integers(0, 6, (40, 3, 3))
    ids, real = caption_batch(40, seed=2)
    batch = {"tokens": tokens, "text_ids": ids, "text_mask": real}
    step = model.training_loss(batch, backend.Generator(9))

    replay = backend.Generator(9)                       # caption dropout first, then the mask
    want_ids, want_real, _ = model.drop_captions(ids, real, replay)
    masked = sample_training_mask(40, 9, replay, cosine_gamma)
    flat = tokens.reshape(40, 9)
    assert len(model.seen_text) == 1 and len(model.seen_tokens) == 1
    assert np.array_equal(model.seen_text[0][0], want_ids)
    assert np.array_equal(model.seen_text[0][1], want_real)
    fed = model.seen_tokens[0]
    assert (fed[masked] == config.mask_id).all(), "masked positions must read [MASK]"
    assert np.array_equal(fed[~masked], flat[~masked]), "the others keep their true id"
    assert step.num_masked == int(masked.sum())
    logits = model.table[np.arange(9), fed]
    assert step.loss.item() == pytest.approx(
        smoothed_cross_entropy(logits, flat, masked, 0.1), rel=1e-5)
    assert step.accuracy == pytest.approx((logits.argmax(axis=-1) == flat)[masked].mean())
