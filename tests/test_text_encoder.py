"""The text encoder and its masked-language-model pretraining."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import backend
from tinymuse.checkpoint import CheckpointError
from tinymuse.text.encoder import TextEncoder, TextEncoderConfig
from tinymuse.data import shapes_captions
from tinymuse.text.mlm import MaskedLanguageModel, mask_caption_tokens, mlm_loss
from tinymuse.text.tokenizer import Tokenizer
from tinymuse.training import TrainConfig
from tinymuse.training.text import pretrain_text_encoder

TINY = TextEncoderConfig(vocab_size=40, max_length=10, d_model=16, num_layers=2, num_heads=2)


def tiny_encoder(config=TINY, seed=0, device="cpu"):
    return TextEncoder(config, generator=backend.Generator(seed)).to(device)


def padded_batch(lengths, width, rng, vocab=TINY.vocab_size):
    """Random ids with ``lengths[b]`` real tokens per row; the padding holds junk ids."""
    ids = rng.integers(0, vocab, (len(lengths), width))
    mask = np.arange(width)[None, :] < np.asarray(lengths)[:, None]
    return ids, mask


@pytest.fixture(scope="module")
def corpus():
    captions = shapes_captions(300, seed=0)
    return captions, Tokenizer.train(captions, vocab_size=200)  # whole words


def test_one_vector_per_token_with_cls_first(device, rng):
    ids, mask = padded_batch([3, 5, 1], 6, rng)
    out = tiny_encoder(device=device)(ids, mask)
    assert out.embeddings.shape == (3, 7, TINY.d_model)
    assert out.embeddings.device == device
    mask_out = backend.to_numpy(out.mask)
    assert mask_out[:, 0].all(), "[CLS] is always a real token"
    np.testing.assert_array_equal(mask_out[:, 1:], mask)
    assert np.isfinite(out.embeddings.numpy()).all()


def test_empty_prompts_give_a_valid_context(device, rng):
    encoder = tiny_encoder(device=device)
    empty = encoder(np.zeros((2, 0), np.int64), np.zeros((2, 0), bool))
    assert empty.embeddings.shape == (2, 1, TINY.d_model)
    assert backend.to_numpy(empty.mask).tolist() == [[True], [True]]
    # An all-padding row is the same empty prompt: [CLS] sees only itself either way.
    ids, _ = padded_batch([0, 0], 5, rng)
    padded = encoder(ids, np.zeros((2, 5), bool))
    assert np.isfinite(padded.embeddings.numpy()).all()
    np.testing.assert_allclose(padded.embeddings.numpy()[:, 0], empty.embeddings.numpy()[:, 0],
                               rtol=1e-5, atol=1e-6)


@settings(max_examples=20, deadline=None)
@given(lengths=st.lists(st.integers(0, 6), min_size=1, max_size=4), extra=st.integers(1, 3),
       seed=st.integers(0, 2**16))
def test_padding_never_changes_the_real_tokens(lengths, extra, seed):
    """Real tokens attend only to real tokens: widening the padding, or changing the ids
    inside it, leaves their vectors as they were."""
    rng = np.random.default_rng(seed)
    encoder = tiny_encoder()
    ids, mask = padded_batch(lengths, 6, rng)
    wider = np.concatenate([ids, rng.integers(0, TINY.vocab_size, (len(lengths), extra))], 1)
    wider[:, :6] = np.where(mask, ids, rng.integers(0, TINY.vocab_size, ids.shape))
    wider_mask = np.concatenate([mask, np.zeros((len(lengths), extra), bool)], 1)
    narrow_out = encoder(ids, mask).embeddings.numpy()
    wide_out = encoder(wider, wider_mask).embeddings.numpy()
    real = np.concatenate([np.ones((len(lengths), 1), bool), mask], 1)
    np.testing.assert_allclose(wide_out[:, :7][real], narrow_out[real], rtol=1e-4, atol=1e-5)


def test_bad_inputs_get_clear_errors(rng):
    encoder = tiny_encoder()
    ids, mask = padded_batch([2], 3, rng)
    with pytest.raises(ValueError, match="vocabulary"):
        encoder(np.array([[TINY.vocab_size]]), np.array([[True]]))
    encoder(np.array([[TINY.mask_id]]), np.array([[True]]), allow_mask_token=True)  # MLM only
    with pytest.raises(ValueError, match="max_length"):
        encoder(np.zeros((1, TINY.max_length + 1), np.int64),
                np.ones((1, TINY.max_length + 1), bool))
    with pytest.raises(ValueError, match="bool mask"):
        encoder(ids, mask.astype(np.int64))
    with pytest.raises(ValueError, match="shape"):
        encoder(ids[0], mask[0])


def test_save_and_load_give_the_same_encoder(tmp_path, rng):
    encoder = tiny_encoder(seed=3)
    ids, mask = padded_batch([4, 2], 5, rng)
    path = encoder.save(tmp_path / "text.safetensors")
    loaded = TextEncoder.load(path)
    assert loaded.config == encoder.config
    np.testing.assert_array_equal(loaded(ids, mask).embeddings.numpy(),
                                  encoder(ids, mask).embeddings.numpy())
    with pytest.raises(CheckpointError, match="text encoder"):
        from tinymuse import checkpoint
        checkpoint.save(tmp_path / "other.safetensors", {}, {}, {"kind": "something else"})
        TextEncoder.load(tmp_path / "other.safetensors")


@settings(max_examples=30, deadline=None)
@given(lengths=st.lists(st.integers(0, 8), min_size=1, max_size=6),
       fraction=st.floats(0.05, 1.0), seed=st.integers(0, 2**16))
def test_mlm_masks_real_tokens_only_at_the_stated_count(lengths, fraction, seed):
    rng = np.random.default_rng(seed)
    ids, mask = padded_batch(lengths, 8, rng)
    inputs, chosen = mask_caption_tokens(ids, mask, TINY, fraction, backend.Generator(seed))
    assert not (chosen & ~mask).any(), "padding is never chosen"
    expected = [0 if n == 0 else max(1, math.ceil(fraction * n)) for n in lengths]
    assert chosen.sum(axis=1).tolist() == expected
    np.testing.assert_array_equal(inputs[~chosen], ids[~chosen])
    assert ((inputs >= 0) & (inputs <= TINY.mask_id)).all()


def test_mlm_corruption_is_80_10_10():
    rng = np.random.default_rng(0)
    ids, mask = padded_batch([8] * 2000, 8, rng)
    inputs, chosen = mask_caption_tokens(ids, mask, TINY, 0.5, backend.Generator(1))
    picked, original = inputs[chosen], ids[chosen]
    n = picked.size  # 8000 chosen tokens: each share is within ±0.02 with overwhelming odds
    as_mask = np.mean(picked == TINY.mask_id)
    kept = np.mean(picked == original)
    assert abs(as_mask - 0.8) < 0.02, as_mask
    # "kept" also holds the random replacements that drew the original id (1 in 40 of 10%)
    assert abs(kept - (0.1 + 0.1 / TINY.vocab_size)) < 0.02, kept
    assert n == 8000


def test_mlm_loss_is_the_cross_entropy_of_the_original_ids_at_the_chosen_tokens():
    rng = np.random.default_rng(0)
    ids, mask = padded_batch([5, 3, 6], 6, rng)
    model = MaskedLanguageModel(tiny_encoder(), generator=backend.Generator(0))
    loss, accuracy = mlm_loss(model, ids, mask, 0.4, backend.Generator(7))
    # The same generator draws give the same corrupted inputs (the documented draw order).
    inputs, chosen = mask_caption_tokens(ids, mask, TINY, 0.4, backend.Generator(7))
    logits = model(inputs, mask).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -np.take_along_axis(log_p, ids[..., None], -1)[..., 0][chosen].mean()
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert accuracy == pytest.approx(np.mean(logits.argmax(-1)[chosen] == ids[chosen]))


def test_identity_weight_adds_the_cross_entropy_of_the_visible_tokens():
    rng = np.random.default_rng(0)
    ids, mask = padded_batch([5, 3, 6], 6, rng)
    model = MaskedLanguageModel(tiny_encoder(), generator=backend.Generator(0))
    plain, _ = mlm_loss(model, ids, mask, 0.4, backend.Generator(7))
    loss, _ = mlm_loss(model, ids, mask, 0.4, backend.Generator(7), identity_weight=0.5)
    inputs, chosen = mask_caption_tokens(ids, mask, TINY, 0.4, backend.Generator(7))
    logits = model(inputs, mask).numpy().astype(np.float64)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    nll = -np.take_along_axis(log_p, ids[..., None], -1)[..., 0]
    visible = mask & ~chosen  # real tokens left as they were, padding excluded
    assert loss.item() == pytest.approx(nll[chosen].mean() + 0.5 * nll[visible].mean(), rel=1e-5)
    assert plain.item() == pytest.approx(nll[chosen].mean(), rel=1e-5)
    with pytest.raises(ValueError, match="identity_weight must be >= 0"):
        pretrain_text_encoder(tiny_encoder(), None, [], identity_weight=-1.0)


def test_mlm_pretraining_lowers_the_loss(corpus, tmp_path):
    captions, tokenizer = corpus
    config = TextEncoderConfig(vocab_size=tokenizer.vocab_size, max_length=24, d_model=32,
                               num_layers=1, num_heads=2)
    encoder = TextEncoder(config, generator=backend.Generator(0))
    result = pretrain_text_encoder(encoder, tokenizer, captions,
                                   TrainConfig(steps=200, batch_size=32, lr=3e-3,
                                               warmup_steps=10, progress=False), tmp_path)
    losses = [entry["loss"] for entry in result.history]
    first, last = np.mean(losses[:10]), np.mean(losses[-10:])
    # The first steps guess among 200 ids (ln 200 ≈ 5.3). Captions follow a small grammar,
    # so many hidden words are nearly forced by their neighbours ("to the ___ of"); only the
    # free choices (which colour, which shape) stay uncertain. Halving the loss is a
    # conservative sign that the grammar is being learnt.
    assert first > 4.0
    assert last < 0.5 * first, (first, last)
    saved = TextEncoder.load(tmp_path / "text_encoder.safetensors")
    ids, mask = tokenizer.encode_batch(["a red circle"], max_length=config.max_length)
    np.testing.assert_array_equal(saved(ids.astype(np.int64), mask).embeddings.numpy(),
                                  encoder(ids.astype(np.int64), mask).embeddings.numpy())


def test_an_interrupted_pretraining_resumes_exactly(corpus, tmp_path):
    captions, tokenizer = corpus
    config = TextEncoderConfig(vocab_size=tokenizer.vocab_size, max_length=24, d_model=16,
                               num_layers=1, num_heads=2)
    train = TrainConfig(steps=6, batch_size=8, warmup_steps=2, checkpoint_every=2,
                        progress=False)

    def fresh():
        return TextEncoder(config, generator=backend.Generator(0))

    unbroken = pretrain_text_encoder(fresh(), tokenizer, captions, train, tmp_path / "a")
    stopped = pretrain_text_encoder(fresh(), tokenizer, captions, train, tmp_path / "b",
                                    stop_at=3)
    resumed = pretrain_text_encoder(fresh(), tokenizer, captions, train, tmp_path / "b")
    assert (stopped.step, resumed.start_step, resumed.step) == (3, 3, 6)
    assert [h["loss"] for h in stopped.history + resumed.history] == \
        [h["loss"] for h in unbroken.history]
