"""The base transformer: masking, the masked-token loss, caption dropout, empty prompts."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import Tensor, backend, optim
from tinymuse.models import base as base_module
from tinymuse.models import BaseTransformer, BaseTransformerConfig, TextContext, masked_token_loss
from tinymuse.text.encoder import TextEncoder, TextEncoderConfig
from tinymuse.data import shapes_captions
from tinymuse.decoding import sample_stage
from tinymuse.sampling import BASE
from tinymuse.text.tokenizer import OutOfVocabularyError, Tokenizer

K, GRID = 16, 4  # a 16-code codebook, 4×4 = 16 image tokens: [MASK] = 16


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


def tiny_config(vocab_size=40, **changes):
    text = TextEncoderConfig(vocab_size=vocab_size, max_length=24, d_model=16, num_layers=1,
                             num_heads=2)
    values = dict(codebook_size=K, grid_size=GRID, d_model=32, num_layers=2, num_heads=4,
                  text=text)
    values.update(changes)
    return BaseTransformerConfig(**values)


def tiny_model(tokenizer=None, seed=0, device="cpu", **changes):
    vocab = tokenizer.vocab_size if tokenizer is not None else 40
    model = BaseTransformer(tiny_config(vocab, **changes), tokenizer=tokenizer,
                            generator=backend.Generator(seed))
    return model.to(device)


def random_batch(rng, batch=6, vocab=40):
    lengths = rng.integers(1, 7, batch)
    mask = np.arange(7)[None] < lengths[:, None]
    return {"tokens": rng.integers(0, K, (batch, GRID, GRID)),
            "text_ids": np.where(mask, rng.integers(4, vocab, (batch, 7)), 0),
            "text_mask": mask}


class Spy:
    """Wraps a function and remembers what it was called with and what it returned."""

    def __init__(self, function):
        self.function, self.calls = function, []

    def __call__(self, *args, **kwargs):
        result = self.function(*args, **kwargs)
        self.calls.append((args, kwargs, result))
        return result


def test_masked_positions_read_the_mask_id_and_the_rest_the_true_ids(monkeypatch, device):
    model = tiny_model(device=device)
    mask_spy = Spy(base_module.sample_training_mask)
    monkeypatch.setattr(base_module, "sample_training_mask", mask_spy)
    logits_spy = Spy(model.logits)
    monkeypatch.setattr(model, "logits", logits_spy)
    rng = np.random.default_rng(1)
    for seed in range(5):
        batch = random_batch(rng)
        step = model.training_loss(batch, backend.Generator(seed))
        mask = backend.to_numpy(mask_spy.calls[-1][2])
        inputs = backend.to_numpy(logits_spy.calls[-1][0][0])
        tokens = batch["tokens"].reshape(len(mask), -1)
        assert mask.any(axis=1).all(), "every example has something to predict"
        assert (inputs[mask] == model.mask_id).all(), "a masked position shows its true id"
        np.testing.assert_array_equal(inputs[~mask], tokens[~mask])
        assert not (tokens == model.mask_id).any()
        assert step.num_masked == mask.sum()
        # and the loss is the masked-token loss of exactly these logits, targets and mask
        logits = logits_spy.calls[-1][2]
        expected, accuracy = masked_token_loss(logits, backend.to_device(tokens, device),
                                               backend.to_device(mask, device), 0.1)
        assert step.loss.item() == pytest.approx(expected.item(), rel=1e-6)
        assert step.accuracy == accuracy


@settings(max_examples=30, deadline=None)
@given(batch=st.integers(1, 4), tokens=st.integers(2, 12), smoothing=st.sampled_from([0.0, 0.1]),
       seed=st.integers(0, 2**16))
def test_targets_at_unmasked_positions_do_not_change_the_loss(batch, tokens, smoothing, seed):
    rng = np.random.default_rng(seed)
    mask = rng.random((batch, tokens)) < 0.5
    mask[:, 0] = True
    targets = rng.integers(0, K, (batch, tokens))
    other = np.where(mask, targets, rng.integers(0, K, (batch, tokens)))
    logits = rng.standard_normal((batch, tokens, K)).astype(np.float32)

    def loss_and_grad(targets):
        x = Tensor(logits, requires_grad=True)
        loss, _ = masked_token_loss(x, targets, mask, smoothing)
        loss.backward()
        return loss.item(), x.grad

    loss, grad = loss_and_grad(targets)
    loss_other, grad_other = loss_and_grad(other)
    assert loss == loss_other
    np.testing.assert_array_equal(grad, grad_other)
    assert not grad[~mask].any(), "unmasked positions get no gradient"
    # ...while a target at a masked position does count (so the check above can fail)
    changed = targets.copy()
    changed[0, 0] = (targets[0, 0] + 1) % K
    assert loss_and_grad(changed)[0] != loss


def test_the_loss_is_the_mean_over_masked_positions_with_label_smoothing():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((2, 5, K))
    targets = rng.integers(0, K, (2, 5))
    mask = np.array([[1, 0, 1, 0, 0], [0, 0, 0, 1, 1]], bool)
    loss, _ = masked_token_loss(Tensor(logits), targets, mask, label_smoothing=0.1)
    log_p = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target = np.full((2, 5, K), 0.1 / K)
    np.put_along_axis(target, targets[..., None], 0.9 + 0.1 / K, -1)
    per_position = -(target * log_p).sum(-1)
    assert loss.item() == pytest.approx(per_position[mask].mean(), rel=1e-6)


def test_caption_dropout_rate_and_what_a_dropped_caption_becomes():
    model = tiny_model()
    rng = np.random.default_rng(0)
    ids = rng.integers(4, 40, (4000, 5))
    mask = rng.random((4000, 5)) < 0.8
    new_ids, new_mask, dropped = model.drop_captions(ids, mask, backend.Generator(3))
    # Binomial(4000, 0.1): standard deviation 0.0047, so ±0.025 is more than 5σ.
    assert abs(dropped.mean() - 0.1) < 0.025
    assert not new_mask[dropped].any(), "a dropped caption keeps no text token"
    assert (new_ids[dropped] == model.config.text.pad_id).all()
    np.testing.assert_array_equal(new_ids[~dropped], ids[~dropped])
    np.testing.assert_array_equal(new_mask[~dropped], mask[~dropped])
    # seeded: the same generator state drops the same captions
    assert (model.drop_captions(ids, mask, backend.Generator(3))[2] == dropped).all()
    never = tiny_model(caption_dropout=0.0).drop_captions(ids, mask, backend.Generator(3))[2]
    always = tiny_model(caption_dropout=1.0).drop_captions(ids, mask, backend.Generator(3))[2]
    assert not never.any() and always.all()


def test_a_dropped_caption_is_exactly_the_empty_prompt(tokenizer):
    model = tiny_model(tokenizer, caption_dropout=1.0)
    ids, mask = model.tokenize(["a red circle", "two blue squares"])
    ids, mask, _ = model.drop_captions(ids, mask, backend.Generator(0))
    dropped = model.encode_text(ids, mask)
    empty = model.encode_prompts(["", ""])
    np.testing.assert_allclose(dropped.embeddings.numpy()[:, 0], empty.embeddings.numpy()[:, 0],
                               rtol=1e-5, atol=1e-6)
    tokens = np.full((2, GRID * GRID), model.mask_id)
    np.testing.assert_allclose(model.logits(tokens, dropped).numpy(),
                               model.logits(tokens, empty).numpy(), rtol=1e-5, atol=1e-5)


def test_empty_prompts_give_finite_logits(tokenizer, device):
    model = tiny_model(tokenizer, device=device)
    context = model.encode_prompts(["", "a red circle", "   "])
    mask = backend.to_numpy(context.mask)
    assert mask[0].tolist() == [True] + [False] * (mask.shape[1] - 1), "[CLS] alone"
    assert mask[1].sum() > 1
    tokens = np.full((3, GRID * GRID), model.mask_id)
    logits = model.logits(tokens, context)
    assert logits.shape == (3, GRID * GRID, K)
    assert np.isfinite(logits.numpy()).all()
    only_empty = model.encode_prompts(["", ""])
    assert only_empty.embeddings.shape[1] == 1
    assert np.isfinite(model.logits(tokens[:2], only_empty).numpy()).all()


def test_an_unknown_word_gets_an_error_naming_it(tokenizer):
    model = tiny_model(tokenizer)
    with pytest.raises(OutOfVocabularyError, match="hexagon") as error:
        model.encode_prompts(["a red circle", "a red hexagon"])
    assert "circle" in str(error.value), "the error lists the known words"
    with pytest.raises(ValueError, match="no tokenizer"):
        tiny_model().encode_prompts(["a red circle"])
    with pytest.raises(ValueError, match="max_length"):
        model.encode_prompts([" ".join(["a red circle left of a blue square"] * 4)])


def test_frozen_text_encoder_gets_no_update_and_joint_training_does(tokenizer):
    rng = np.random.default_rng(0)
    batch = random_batch(rng, vocab=tokenizer.vocab_size)
    for joint in (False, True):
        model = tiny_model(tokenizer, train_text_encoder=joint)
        before = {k: v.copy() for k, v in model.text_encoder.state_dict().items()}
        opt = optim.AdamW(optim.weight_decay_groups(model, 0.01), lr=1e-2)
        step = model.training_loss(batch, backend.Generator(0))
        step.loss.backward()
        opt.step()
        changed = [not np.array_equal(before[k], v)
                   for k, v in model.text_encoder.state_dict().items()]
        assert all(changed) if joint else not any(changed)
        assert model.text_projection.weight.grad is not None  # the projection always learns
    frozen = tiny_model(tokenizer)
    frozen.train()
    assert not frozen.text_encoder.training, "a frozen encoder stays in eval mode"


def test_an_encoder_taken_from_a_frozen_model_thaws_for_joint_training(tokenizer):
    frozen = tiny_model(tokenizer)  # its encoder's parameters now say requires_grad=False
    joint = BaseTransformer(dataclasses.replace(frozen.config, train_text_encoder=True),
                            text_encoder=frozen.text_encoder, tokenizer=tokenizer,
                            generator=backend.Generator(0))
    step = joint.training_loss(random_batch(np.random.default_rng(0), vocab=tokenizer.vocab_size),
                               backend.Generator(0))
    step.loss.backward()
    assert all(p.requires_grad and p.grad is not None for p in joint.text_encoder.parameters())


def test_logits_never_offer_the_mask_token_and_shapes_are_checked():
    model = tiny_model()
    context = model.encode_text(np.array([[5, 6]]), np.array([[True, True]]))
    logits = model.logits(np.full((1, GRID, GRID), model.mask_id), context)  # (B, h, w) works
    assert logits.shape == (1, GRID * GRID, K), "K codes, no logit for [MASK]"
    with pytest.raises(ValueError, match="16 image tokens"):
        model.logits(np.zeros((1, 9), np.int64), context)
    with pytest.raises(ValueError, match="text contexts"):
        model.logits(np.zeros((2, 16), np.int64), context)


def test_text_contexts_concatenate_with_masked_padding():
    model = tiny_model()
    short = model.encode_text(np.array([[5]]), np.array([[True]]))
    long = model.encode_text(np.array([[5, 6, 7]]), np.array([[True, True, True]]))
    both = TextContext.concat(short, long)
    assert both.embeddings.shape == (2, 4, 32)
    assert both.mask.tolist() == [[True, True, False, False], [True, True, True, True]]
    tokens = np.full((1, 16), model.mask_id)
    stacked = model.logits(np.concatenate([tokens, tokens]), both).numpy()
    np.testing.assert_allclose(stacked[0], model.logits(tokens, short).numpy()[0], atol=1e-5)
    np.testing.assert_allclose(stacked[1], model.logits(tokens, long).numpy()[0], atol=1e-5)


def test_a_tiny_model_overfits_a_few_token_grids(tokenizer):
    """Four captions, four fixed grids: after training, decoding each caption from an
    all-masked grid must give back its grid."""
    captions = ["a red circle", "two blue squares", "a green triangle on black",
                "the letter K in yellow"]
    rng = np.random.default_rng(0)
    grids = rng.integers(0, K, (4, GRID, GRID))
    model = tiny_model(tokenizer, caption_dropout=0.0)
    ids, mask = model.tokenize(captions)
    batch = {"tokens": grids, "text_ids": ids, "text_mask": mask}
    opt = optim.AdamW(optim.weight_decay_groups(model, 0.0), lr=3e-3)
    losses = []
    for step in range(200):
        out = model.training_loss(batch, backend.Generator(step))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(out.loss.item())
    # With label smoothing 0.1 over 16 codes the loss cannot go below the entropy of the
    # smoothed target, 0.57; a model that has memorised the grids sits close above it, a
    # model that has not is above ln 16 = 2.8 (measured at the end: about 0.8).
    assert np.mean(losses[-20:]) < 1.2, np.mean(losses[-20:])
    greedy = BASE.replace(steps=4, temperature=0.0, guidance_scale=0.0)
    result = sample_stage(model, captions, greedy, generator=backend.Generator(0))
    assert result.tokens.shape == (4, GRID, GRID)
    assert np.mean(result.tokens == grids) >= 0.95


def test_sampling_with_guidance_is_seeded_and_valid(tokenizer):
    model = tiny_model(tokenizer)
    guided = BASE.replace(steps=3, guidance_scale=2.0)
    first = sample_stage(model, ["a red circle", ""], guided, generator=backend.Generator(5))
    again = sample_stage(model, ["a red circle", ""], guided, generator=backend.Generator(5))
    np.testing.assert_array_equal(first.tokens, again.tokens)
    assert ((first.tokens >= 0) & (first.tokens < K)).all()
    negative = sample_stage(model, ["a red circle"], guided, negative_prompts=["a blue circle"],
                            generator=backend.Generator(5))
    assert negative.tokens.shape == (1, GRID, GRID)
    assert model.training, "sampling puts the model back in training mode"
    with pytest.raises(ValueError, match="low-resolution tokens are for the super-resolution"):
        sample_stage(model, ["a red circle"], guided, low_tokens=np.zeros((1, 2, 2), int))


def test_save_and_load_round_trip(tmp_path, tokenizer):
    model = tiny_model(tokenizer, seed=4)
    tokenizer.save(tmp_path / "tokenizer.model")
    path = model.save(tmp_path / "base.safetensors")
    loaded = BaseTransformer.load(path)  # finds tokenizer.model beside it
    assert loaded.config == model.config
    context = model.encode_prompts(["a red circle"])
    tokens = np.full((1, 16), model.mask_id)
    np.testing.assert_array_equal(loaded.logits(tokens, loaded.encode_prompts(["a red circle"]))
                                  .numpy(), model.logits(tokens, context).numpy())


def test_a_text_encoder_that_does_not_fit_the_config_is_refused():
    other = TextEncoder(TextEncoderConfig(vocab_size=40, d_model=8, num_heads=2, num_layers=1))
    with pytest.raises(ValueError, match="config.text"):
        BaseTransformer(tiny_config(), text_encoder=other)
