"""Chapter 5's exercises: the text encoder's [CLS] slot and padding mask, BERT's 80/10/10
corruption, and the masked-language-model loss with its identity term.

Each test calls the exercised function directly, forward only, against a NumPy reference
written here. The encoder's test swaps its layers for small NumPy stand-ins, so that it
checks what ``TextEncoder.forward`` itself does (where [CLS] goes, which mask every block
gets) and nothing of chapter 2's layers.
"""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import backend, nn
from tinymuse.tensor import Tensor
from tinymuse.text import mlm
from tinymuse.text.encoder import TextEncoder, TextEncoderConfig
from tinymuse.text.mlm import mask_caption_tokens, mlm_loss

VOCAB = 20


# --------------------------------------------------------------------------- ch05_ex1
class TableEmbedding(nn.Module):
    """An embedding that is a fixed NumPy table."""

    def __init__(self, table):
        super().__init__()
        self.table = table

    def forward(self, ids):
        return Tensor(self.table[np.asarray(ids)])


def mean_over_allowed_keys(x, mask):
    """x + the mean of the vectors each query may attend to: a stand-in for attention."""
    allowed = np.ones(x.shape[:2], bool) if mask is None else np.asarray(mask)
    if allowed.ndim == 4:            # (B, 1, Tq or 1, Tk): one head's worth
        allowed = allowed[:, 0]
    if allowed.ndim == 2:            # (B, Tk): a key padding mask
        allowed = allowed[:, None, :]
    allowed = np.broadcast_to(allowed, (x.shape[0], x.shape[1], x.shape[1])).astype(x.dtype)
    return x + (allowed / allowed.sum(axis=-1, keepdims=True)) @ x


class MixingBlock(nn.Module):
    """Stands in for a transformer block; records the mask it was given."""

    def __init__(self):
        super().__init__()
        self.masks = []

    def forward(self, x, context=None, mask=None, context_mask=None):
        self.masks.append(None if mask is None else np.array(mask))
        return Tensor(mean_over_allowed_keys(x.numpy(), mask))


class Squash(nn.Module):
    """Stands in for the final LayerNorm."""

    def forward(self, x):
        return Tensor(np.tanh(x.numpy()))


def encoder_with_stand_ins(num_layers=2, d=6, max_length=10):
    config = TextEncoderConfig(vocab_size=VOCAB, max_length=max_length, d_model=d,
                               num_layers=num_layers, num_heads=1)
    encoder = TextEncoder(config, generator=backend.Generator(0))
    table = np.random.default_rng(1).normal(size=(VOCAB + 2, d)).astype(np.float32)
    encoder.token_embedding = TableEmbedding(table)
    encoder.blocks = nn.ModuleList([MixingBlock() for _ in range(num_layers)])
    encoder.norm = Squash()
    return encoder, table


def reference_encoding(ids, mask, table, positions, num_layers, cls_id):
    """[CLS] in front, embeddings + positions, every block under the padding mask."""
    rows = len(ids)
    with_cls = np.concatenate([np.full((rows, 1), cls_id), ids], axis=1)
    real = np.concatenate([np.ones((rows, 1), bool), mask], axis=1)
    h = table[with_cls] + positions[: with_cls.shape[1]]
    for _ in range(num_layers):
        h = mean_over_allowed_keys(h, real)
    return np.tanh(h), real


def test_ch05_ex1_cls_goes_first_and_every_block_gets_the_padding_mask():
    encoder, table = encoder_with_stand_ins()
    ids = np.array([[5, 6, 7, 3, 0, 0], [8, 3, 0, 0, 0, 0], [9, 10, 11, 12, 13, 3]])
    mask = ids != 0
    out = encoder(ids, mask)
    expected, real = reference_encoding(ids, mask, table, encoder.positions.numpy(), 2,
                                        encoder.config.cls_id)
    assert out.embeddings.shape == (3, 7, 6)
    np.testing.assert_allclose(out.embeddings.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert np.array_equal(np.asarray(out.mask), real)
    for block in encoder.blocks:
        assert len(block.masks) == 1 and block.masks[0] is not None, \
            "each block must be called once, with the padding mask"


def test_ch05_ex1_junk_in_the_padding_changes_no_real_vector():
    encoder, _ = encoder_with_stand_ins(max_length=12)
    ids = np.array([[5, 6, 3, 0, 0, 0, 0, 0, 0, 0]])
    mask = ids != 0
    clean = encoder(ids, mask).embeddings.numpy()
    junk = ids.copy()
    junk[0, 5:] = 7                                        # padding that holds something
    dirty = encoder(junk, mask).embeddings.numpy()
    wider = encoder(np.pad(ids, ((0, 0), (0, 2))), np.pad(mask, ((0, 0), (0, 2))))
    real = 1 + 3                                           # [CLS] and the three real tokens
    np.testing.assert_allclose(dirty[0, :real], clean[0, :real], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(wider.embeddings.numpy()[0, :real], clean[0, :real],
                               rtol=1e-5, atol=1e-6)


def test_ch05_ex1_the_empty_prompt_is_cls_alone():
    encoder, table = encoder_with_stand_ins()
    out = encoder(np.zeros((2, 0), np.int64), np.zeros((2, 0), bool))
    assert out.embeddings.shape == (2, 1, 6)
    assert np.asarray(out.mask).tolist() == [[True], [True]]
    expected, _ = reference_encoding(np.zeros((2, 0), np.int64), np.zeros((2, 0), bool), table,
                                     encoder.positions.numpy(), 2, encoder.config.cls_id)
    np.testing.assert_allclose(out.embeddings.numpy(), expected, rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- ch05_ex2
def padded_batch(rows, length, seed=0, longest=None):
    """Random caption ids in [4, VOCAB) with random lengths (some 0), padded with 0."""
    rng = np.random.default_rng(seed)
    real_lengths = rng.integers(0, (longest or length) + 1, rows)
    real = np.arange(length)[None, :] < real_lengths[:, None]
    ids = np.where(real, rng.integers(4, VOCAB, (rows, length)), 0).astype(np.int64)
    return ids, real


def test_ch05_ex2_hides_the_right_number_of_real_tokens_and_leaves_the_rest():
    config = TextEncoderConfig(vocab_size=VOCAB)
    ids, real = padded_batch(300, 12)
    inputs, chosen = mask_caption_tokens(ids, real, config, 0.2, backend.Generator(0))
    lengths = real.sum(axis=1)
    wanted = np.where(lengths > 0, np.maximum(1, np.ceil(0.2 * lengths)), 0)
    assert chosen.shape == ids.shape and chosen.dtype == bool
    assert np.array_equal(chosen.sum(axis=1), wanted)
    assert not (chosen & ~real).any(), "only real tokens may be hidden, never padding"
    assert np.array_equal(inputs[~chosen], ids[~chosen])
    assert inputs.dtype == ids.dtype and inputs.shape == ids.shape
    assert inputs.min() >= 0 and inputs.max() <= config.mask_id


@settings(max_examples=40, deadline=None)
@given(lengths=st.lists(st.integers(0, 9), min_size=1, max_size=6),
       fraction=st.floats(0.01, 1.0), seed=st.integers(0, 2**16))
def test_ch05_ex2_any_batch_keeps_its_padding_and_its_unchosen_tokens(lengths, fraction, seed):
    config = TextEncoderConfig(vocab_size=VOCAB)
    real = np.arange(9)[None, :] < np.array(lengths)[:, None]
    ids = np.where(real, np.random.default_rng(seed).integers(4, VOCAB, real.shape), 0)
    inputs, chosen = mask_caption_tokens(ids, real, config, fraction, backend.Generator(seed))
    for row, length in enumerate(lengths):
        assert chosen[row].sum() == (max(1, int(np.ceil(fraction * length))) if length else 0)
    assert not (chosen & ~real).any()
    assert np.array_equal(inputs[~chosen], ids[~chosen])


def test_ch05_ex2_eighty_ten_ten():
    config = TextEncoderConfig(vocab_size=VOCAB)
    ids, real = padded_batch(4000, 10, seed=1)
    inputs, chosen = mask_caption_tokens(ids, real, config, 0.5, backend.Generator(1))
    n = int(chosen.sum())
    to_mask = float((inputs[chosen] == config.mask_id).sum()) / n
    kept = float((inputs[chosen] == ids[chosen]).sum()) / n
    to_random = 1 - to_mask - kept
    assert n > 10000
    assert abs(to_mask - 0.8) < 0.02, to_mask
    # a random token is the original one 1 time in VOCAB
    assert abs(kept - (0.1 + 0.1 / VOCAB)) < 0.015, kept
    assert abs(to_random - 0.1 * (1 - 1 / VOCAB)) < 0.015, to_random
    swapped = inputs[chosen & (inputs != config.mask_id) & (inputs != ids)]
    assert len(np.unique(swapped)) > VOCAB // 2, "random tokens come from the whole vocabulary"


def test_ch05_ex2_hidden_positions_are_uniform_and_the_seed_decides():
    config = TextEncoderConfig(vocab_size=VOCAB)
    ids = np.full((3000, 10), 5, np.int64)
    real = np.ones((3000, 10), bool)
    inputs, chosen = mask_caption_tokens(ids, real, config, 0.3, backend.Generator(2))
    share = chosen.mean(axis=0)
    assert np.all(np.abs(share - 0.3) < 0.04), share
    again = mask_caption_tokens(ids, real, config, 0.3, backend.Generator(2))
    assert np.array_equal(again[0], inputs) and np.array_equal(again[1], chosen)


def test_ch05_ex2_draws_in_the_documented_order():
    """Positions (random_mask's scores), then one uniform number per position, then one
    random token per position, all from the one generator."""
    config = TextEncoderConfig(vocab_size=VOCAB)
    ids, real = padded_batch(50, 8, seed=3)
    inputs, chosen = mask_caption_tokens(ids, real, config, 0.25, backend.Generator(4))
    replay = backend.Generator(4)
    scores = np.where(real, replay.random(ids.shape, dtype=np.float64), 2.0)
    rank = np.argsort(np.argsort(scores, axis=1), axis=1)
    how_many = np.where(real.any(axis=1), np.maximum(1, np.ceil(0.25 * real.sum(axis=1))), 0)
    expected_chosen = rank < how_many[:, None]
    u = replay.random(ids.shape)
    other = replay.integers(0, VOCAB, ids.shape)
    expected = ids.copy()
    expected[expected_chosen & (u < 0.8)] = config.mask_id
    swap = expected_chosen & (u >= 0.8) & (u < 0.9)
    expected[swap] = other[swap]
    assert np.array_equal(chosen, expected_chosen)
    assert np.array_equal(inputs, expected)


# --------------------------------------------------------------------------- ch05_ex3
class FixedLogits:
    """A stand-in for MaskedLanguageModel: fixed logits, and a record of what it read."""

    def __init__(self, logits):
        self.logits = logits
        self.encoder = type("Encoder", (), {"config": TextEncoderConfig(vocab_size=VOCAB)})()
        self.read = []

    def __call__(self, ids, mask):
        self.read.append(np.array(ids))
        return Tensor(self.logits)

    forward = __call__


def cross_entropy_mean(logits, targets, where):
    z = logits - logits.max(axis=-1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=-1, keepdims=True))
    nll = -np.take_along_axis(log_p, targets[..., None], axis=-1)[..., 0]
    return float(nll[where].mean())


@pytest.fixture
def corrupted(monkeypatch):
    """Fixed ids, padding, chosen positions and corrupted inputs, patched into mlm_loss."""
    rng = np.random.default_rng(5)
    ids = rng.integers(4, VOCAB, (4, 7))
    real = np.arange(7)[None, :] < np.array([[7], [5], [3], [1]])
    ids[~real] = 0
    chosen = np.zeros_like(real)
    chosen[0, [1, 4]] = chosen[1, 0] = chosen[2, 2] = chosen[3, 0] = True
    inputs = np.where(chosen, VOCAB, ids)                  # every chosen token reads [MASK]
    logits = rng.normal(size=(4, 7, VOCAB)).astype(np.float32)
    logits[~real] = 0.0
    logits[~real, 0] = -30.0                               # padding's target 0: hopeless
    logits[0, 1, ids[0, 1]] += 5.0                          # one chosen token named right
    calls = []

    def fake_corruption(ids_, mask_, config, fraction, generator):
        calls.append(fraction)
        return inputs, chosen

    monkeypatch.setattr(mlm, "mask_caption_tokens", fake_corruption)
    return ids, real, chosen, inputs, logits


def test_ch05_ex3_grades_the_hidden_tokens_from_the_corrupted_inputs(corrupted):
    ids, real, chosen, inputs, logits = corrupted
    model = FixedLogits(logits)
    loss, accuracy = mlm_loss(model, ids, real, 0.2, backend.Generator(0))
    assert len(model.read) == 1 and np.array_equal(model.read[0], inputs), \
        "the model must read the corrupted inputs, never the true ids"
    assert loss.item() == pytest.approx(cross_entropy_mean(logits, ids, chosen), rel=1e-5)
    named = (logits.argmax(axis=-1) == ids)[chosen]
    assert isinstance(accuracy, float) and accuracy == pytest.approx(named.mean())


def test_ch05_ex3_the_identity_term_grades_visible_real_tokens_only(corrupted):
    ids, real, chosen, inputs, logits = corrupted
    loss, _ = mlm_loss(FixedLogits(logits), ids, real, 0.2, backend.Generator(0),
                       identity_weight=0.5)
    hidden = cross_entropy_mean(logits, ids, chosen)
    visible = cross_entropy_mean(logits, ids, real & ~chosen)   # padding never counts
    assert loss.item() == pytest.approx(hidden + 0.5 * visible, rel=1e-5)


def test_ch05_ex3_no_visible_token_leaves_the_hidden_term_alone(monkeypatch):
    ids = np.array([[5, 6, 0], [7, 0, 0]])
    real = ids != 0
    logits = np.random.default_rng(6).normal(size=(2, 3, VOCAB)).astype(np.float32)
    monkeypatch.setattr(mlm, "mask_caption_tokens",
                        lambda i, m, c, f, g: (np.where(real, VOCAB, i), real.copy()))
    loss, _ = mlm_loss(FixedLogits(logits), ids, real, 1.0, backend.Generator(0),
                       identity_weight=1.0)
    assert np.isfinite(loss.item())
    assert loss.item() == pytest.approx(cross_entropy_mean(logits, ids, real), rel=1e-5)
