"""The super-resolution transformer: its context, its training step, and that it learns to
read the low-resolution tokens."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import Tensor, backend, decoding
from tinymuse.models import base as base_module
from tinymuse.models import superres as superres_module
from tinymuse.models.base import BaseTransformerConfig
from tinymuse.data import shapes_captions
from tinymuse.decoding import sample_stage
from tinymuse.evaluate import monitor as monitor_module
from tinymuse.evaluate import superres_sampler
from tinymuse.models.superres import SuperResTransformer, SuperResTransformerConfig
from tinymuse.sampling import SUPERRES
from tinymuse.text.encoder import TextEncoderConfig
from tinymuse.text.tokenizer import Tokenizer
from tinymuse.training import TrainConfig
from tinymuse.training.transformer import PairedTokens, pair_caches, train_transformer
from tinymuse.vq import ImageTokens, VQConfig

K_HIGH, HIGH, K_LOW, LOW = 12, 4, 6, 2  # 4×4 high tokens of 12 codes on 2×2 low tokens of 6


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


def tiny_config(vocab_size=40, **changes):
    text = TextEncoderConfig(vocab_size=vocab_size, max_length=24, d_model=16, num_layers=1,
                             num_heads=2)
    values = dict(codebook_size=K_HIGH, grid_size=HIGH, low_codebook_size=K_LOW,
                  low_grid_size=LOW, low_num_layers=1, d_model=32, num_layers=2, num_heads=4,
                  text=text)
    values.update(changes)
    return SuperResTransformerConfig(**values)


def tiny_model(tokenizer=None, seed=0, device="cpu", **changes):
    vocab = tokenizer.vocab_size if tokenizer is not None else 40
    model = SuperResTransformer(tiny_config(vocab, **changes), tokenizer=tokenizer,
                                generator=backend.Generator(seed))
    return model.to(device)


def random_batch(rng, batch=5, vocab=40):
    lengths = rng.integers(1, 7, batch)
    mask = np.arange(7)[None] < lengths[:, None]
    return {"tokens": rng.integers(0, K_HIGH, (batch, HIGH, HIGH)),
            "low_tokens": rng.integers(0, K_LOW, (batch, LOW, LOW)),
            "text_ids": np.where(mask, rng.integers(4, vocab, (batch, 7)), 0),
            "text_mask": mask}


def test_the_context_is_the_read_low_tokens_then_the_text(device):
    model = tiny_model(device=device).eval()
    rng = np.random.default_rng(0)
    batch = random_batch(rng, batch=3)
    text = model.encode_text(batch["text_ids"], batch["text_mask"])
    context = model.make_context(text, batch["low_tokens"])
    t, n = text.embeddings.shape[1], LOW * LOW
    assert context.embeddings.shape == (3, n + t, 32)
    mask = backend.to_numpy(context.mask)
    assert mask[:, :n].all(), "low-resolution tokens are never masked out"
    np.testing.assert_array_equal(mask[:, n:], backend.to_numpy(text.mask))
    embeddings = context.embeddings.numpy()
    np.testing.assert_array_equal(embeddings[:, n:], text.embeddings.numpy())
    low = model.encode_low_tokens(batch["low_tokens"]).numpy()
    np.testing.assert_allclose(embeddings[:, :n], low, rtol=1e-6, atol=1e-6)


@given(row=st.integers(0, LOW - 1), col=st.integers(0, LOW - 1))
@settings(max_examples=8, deadline=None)
def test_low_skip_adds_each_low_vector_under_its_own_2x2_block_only(row, col):
    model = tiny_model(low_skip=True).eval()
    rng = np.random.default_rng(2)
    batch = random_batch(rng, batch=2)
    text = model.encode_text(batch["text_ids"], batch["text_mask"])
    context = model.make_context(text, batch["low_tokens"])
    tokens = rng.integers(0, K_HIGH, (2, HIGH * HIGH))
    before = model.embed_inputs(tokens, context).numpy()
    changed = context.embeddings.numpy().copy()
    changed[:, row * LOW + col] += rng.normal(size=(2, 32)).astype(np.float32)
    after = model.embed_inputs(tokens, context._replace(embeddings=Tensor(changed))).numpy()
    moved = np.abs(after - before).max(axis=(0, 2)).reshape(HIGH, HIGH) > 1e-6
    expected = np.zeros((HIGH, HIGH), bool)
    expected[2 * row:2 * row + 2, 2 * col:2 * col + 2] = True
    np.testing.assert_array_equal(moved, expected)


def test_without_low_skip_the_inputs_are_the_base_models():
    model = tiny_model().eval()
    rng = np.random.default_rng(3)
    batch = random_batch(rng, batch=2)
    context = model.make_context(model.encode_text(batch["text_ids"], batch["text_mask"]),
                                 batch["low_tokens"])
    tokens = rng.integers(0, K_HIGH, (2, HIGH * HIGH))
    np.testing.assert_array_equal(
        model.embed_inputs(tokens, context).numpy(),
        (model.token_embedding(tokens) + model.positions).numpy())


def test_the_logits_depend_on_the_low_tokens_through_self_attention():
    model = tiny_model().eval()
    rng = np.random.default_rng(1)
    batch = random_batch(rng, batch=2)
    text = model.encode_text(batch["text_ids"], batch["text_mask"])
    tokens = np.full((2, HIGH * HIGH), model.mask_id)
    low = batch["low_tokens"].reshape(2, -1)
    changed = low.copy()
    changed[:, 0] = (low[:, 0] + 1) % K_LOW
    logits = model.logits(tokens, model.make_context(text, low)).numpy()
    other = model.logits(tokens, model.make_context(text, changed)).numpy()
    assert np.abs(logits - other).max() > 1e-4
    # self-attention mixes the grid: changing one low token moves the others' embeddings too
    a, b = model.encode_low_tokens(low).numpy(), model.encode_low_tokens(changed).numpy()
    assert np.abs(a[:, 1:] - b[:, 1:]).max() > 1e-6


def test_the_training_step_masks_the_high_tokens_and_backpropagates_into_the_reader(
        monkeypatch, device):
    model = tiny_model(device=device)
    calls = []
    original_logits = model.logits

    def spy(tokens, context):
        calls.append(backend.to_numpy(tokens))
        return original_logits(tokens, context)

    monkeypatch.setattr(model, "logits", spy)
    masks = []
    original_mask = base_module.sample_training_mask

    def mask_spy(*args, **kwargs):
        masks.append(backend.to_numpy(original_mask(*args, **kwargs)))
        return masks[-1] if device == "cpu" else backend.to_device(masks[-1], device)

    monkeypatch.setattr(base_module, "sample_training_mask", mask_spy)
    batch = random_batch(np.random.default_rng(2))
    step = model.training_loss(batch, backend.Generator(3))
    tokens = batch["tokens"].reshape(len(masks[-1]), -1)
    inputs, mask = calls[-1], masks[-1]
    assert mask.any(axis=1).all()
    assert (inputs[mask] == model.mask_id).all()
    np.testing.assert_array_equal(inputs[~mask], tokens[~mask])
    assert step.num_masked == mask.sum()
    step.loss.backward()
    assert np.abs(backend.to_numpy(model.low_embedding.weight.grad)).sum() > 0
    assert np.abs(backend.to_numpy(model.low_positions.grad)).sum() > 0
    assert all(p.grad is None for p in model.text_encoder.parameters()), "the encoder is frozen"


def test_the_training_step_draws_dropout_then_mask_then_corruption(monkeypatch):
    """The documented order of draws: caption dropout and the mask exactly as the base
    stage's step, then the corruption of the low-resolution tokens."""
    model = tiny_model(low_token_noise=0.5)
    seen = {}
    original_mask = base_module.sample_training_mask
    monkeypatch.setattr(base_module, "sample_training_mask",
                        lambda *a, **k: seen.setdefault("mask", original_mask(*a, **k)))
    original_context = model.make_context
    monkeypatch.setattr(model, "make_context",
                        lambda text, low: seen.setdefault("low", low) is not None
                        and original_context(text, low))
    batch = random_batch(np.random.default_rng(4))
    model.training_loss(batch, backend.Generator(9))

    generator = backend.Generator(9)
    model.drop_captions(batch["text_ids"], batch["text_mask"], generator)
    mask = base_module.sample_training_mask(5, HIGH * HIGH, generator, "cosine")
    low = model.corrupt_low_tokens(batch["low_tokens"].reshape(5, -1), generator)
    np.testing.assert_array_equal(seen["mask"], mask)
    np.testing.assert_array_equal(seen["low"], low)
    assert (low != batch["low_tokens"].reshape(5, -1)).any()


@settings(max_examples=25, deadline=None)
@given(rate=st.sampled_from([0.0, 0.2, 0.6]), seed=st.integers(0, 2**16))
def test_low_token_noise_replaces_tokens_at_its_rate(rate, seed):
    model = tiny_model(low_token_noise=rate, low_codebook_size=1000)
    low = np.random.default_rng(seed).integers(0, 1000, (40, 25))
    corrupted = model.corrupt_low_tokens(low, backend.Generator(seed))
    assert corrupted.shape == low.shape and corrupted.dtype == low.dtype
    assert ((0 <= corrupted) & (corrupted < 1000)).all()
    share = (corrupted != low).mean()
    if rate == 0:
        assert corrupted is low
    else:  # 1000 tokens; a replacement hits the same code with probability 1/1000
        assert abs(share - rate * 0.999) < 4 * np.sqrt(rate * (1 - rate) / low.size)


def test_guidance_keeps_the_low_tokens_in_the_unconditional_branch(tokenizer, monkeypatch):
    model = tiny_model(tokenizer)
    captured = {}
    original = decoding.decode

    def spy(*args, **kwargs):
        captured.update(kwargs, condition=args[2])
        return original(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode", spy)
    low = np.random.default_rng(5).integers(0, K_LOW, (2, LOW, LOW))
    result = sample_stage(model, ["a red circle", "two blue squares"],
                          SUPERRES.replace(steps=3, guidance_scale=2.0), low_tokens=low,
                          negative_prompts=["a green circle", ""], generator=backend.Generator(0))
    assert result.tokens.shape == (2, HIGH, HIGH)
    condition, uncond = captured["condition"], captured["uncond_condition"]
    n = LOW * LOW
    np.testing.assert_array_equal(condition.embeddings.numpy()[:, :n],
                                  uncond.embeddings.numpy()[:, :n])
    assert uncond.mask[:, :n].all()
    empty = model.encode_prompts([""])
    assert uncond.mask[1, n:].sum() == empty.mask.sum() == 1  # [CLS] alone


def test_sampling_is_seeded_and_redraws_only_the_given_mask(tokenizer):
    model = tiny_model(tokenizer)
    low = np.random.default_rng(6).integers(0, K_LOW, (2, LOW, LOW))
    prompts = ["a red circle", "a blue square"]
    settings = SUPERRES.replace(steps=4, guidance_scale=1.0, temperature=1.0)

    def draw(seed, **options):
        return sample_stage(model, prompts, settings, low_tokens=low,
                            generator=backend.Generator(seed), **options).tokens

    np.testing.assert_array_equal(draw(1), draw(1))
    assert (draw(1) != draw(2)).any()
    start = np.random.default_rng(7).integers(0, K_HIGH, (2, HIGH * HIGH))
    mask = np.zeros((2, HIGH * HIGH), bool)
    mask[:, :5] = True
    edited = draw(3, tokens=start, mask=mask).reshape(2, -1)
    np.testing.assert_array_equal(edited[~mask], start[~mask])


def test_bad_low_tokens_and_configs_get_clear_errors(tokenizer):
    model = tiny_model(tokenizer)

    def draw(prompts, low_tokens):
        return sample_stage(model, prompts, SUPERRES, low_tokens=low_tokens)

    with pytest.raises(ValueError, match="low-resolution tokens per example"):
        draw(["a red circle"], np.zeros((1, 3, 3), int))
    with pytest.raises(ValueError, match=r"must lie in \[0, 6\)"):
        draw(["a red circle"], np.full((1, LOW, LOW), K_LOW))
    with pytest.raises(ValueError, match="2 prompts but 1 low-resolution"):
        draw(["a red circle", "a red circle"], np.zeros((1, LOW, LOW), int))
    with pytest.raises(ValueError, match="pass low_tokens"):
        draw(["a red circle"], None)
    with pytest.raises(ValueError, match="integer array"):
        model.encode_low_tokens(np.zeros((1, LOW, LOW)))
    with pytest.raises(ValueError, match="low_token_noise"):
        tiny_config(low_token_noise=1.0)
    with pytest.raises(TypeError, match="SuperResTransformerConfig"):
        SuperResTransformer(BaseTransformerConfig())


def test_config_from_the_base_config_and_the_two_tokenizers():
    base = BaseTransformerConfig(d_model=64, num_layers=3, num_heads=4, caption_dropout=0.2)
    config = SuperResTransformerConfig.from_base(base, VQConfig(image_size=32, codebook_size=100),
                                                 VQConfig(image_size=64, codebook_size=300),
                                                 low_num_layers=3)
    assert (config.codebook_size, config.grid_size) == (300, 16)
    assert (config.low_codebook_size, config.low_grid_size) == (100, 8)
    assert (config.d_model, config.num_layers, config.caption_dropout) == (64, 3, 0.2)
    assert config.low_num_layers == 3 and config.text == base.text
    assert SuperResTransformerConfig.from_dict(config.to_dict()) == config


def test_pairing_two_caches_checks_they_hold_the_same_images():
    rng = np.random.default_rng(8)
    captions = ["a red circle", "a blue square", "two green triangles"]
    low = ImageTokens(rng.integers(0, K_LOW, (3, LOW, LOW)).astype(np.int32), np.arange(3),
                      captions, {})
    high = ImageTokens(rng.integers(0, K_HIGH, (3, HIGH, HIGH)).astype(np.int32), np.arange(3),
                       captions, {})
    paired = pair_caches(low, high)
    assert len(paired) == 3
    np.testing.assert_array_equal(paired.low_tokens, low.tokens)
    np.testing.assert_array_equal(paired.tokens, high.tokens)
    other = ImageTokens(high.tokens, np.arange(3), ["a red circle", "x", "y"], {})
    with pytest.raises(ValueError, match="caption of row 1"):
        pair_caches(low, other)
    with pytest.raises(ValueError, match="different dataset examples"):
        pair_caches(low, ImageTokens(high.tokens, np.arange(1, 4), captions, {}))
    with pytest.raises(ValueError, match="3 and 2 grids"):
        pair_caches(low, ImageTokens(high.tokens[:2], np.arange(2), captions[:2], {}))


def test_the_stage_learns_to_read_the_low_tokens(tokenizer, tmp_path):
    """High tokens that copy the low token (and nothing else: the caption is always the
    same): with every high token masked, only the low-resolution context tells the answer,
    so drawing them right means the stage reads it."""
    rng = np.random.default_rng(0)
    count = 64
    low = rng.integers(0, K_LOW, (count, 1, 1))
    high = np.broadcast_to(2 * low, (count, HIGH, HIGH))  # codes 0, 2, …, 10
    cache = PairedTokens(high, low, ["a red circle"] * count)
    model = tiny_model(tokenizer, caption_dropout=0.0, num_layers=1, low_grid_size=1)
    config = TrainConfig(steps=30, batch_size=16, lr=1e-2, warmup_steps=5, progress=False,
                         checkpoint_every=1000, sample_every=1000)
    result = train_transformer(model, cache, config, tmp_path)
    assert np.mean([h["loss"] for h in result.history[-5:]]) < \
        0.5 * np.mean([h["loss"] for h in result.history[:5]])
    fresh = rng.integers(0, K_LOW, (8, 1, 1))
    greedy = SUPERRES.replace(steps=2)

    def drawn_by(stage):
        return sample_stage(stage, ["a red circle"] * 8, greedy, low_tokens=fresh).tokens

    drawn = drawn_by(model)
    assert (drawn == 2 * fresh).mean() > 0.9
    loaded = SuperResTransformer.load(tmp_path / "model.safetensors", tokenizer=tokenizer)
    np.testing.assert_array_equal(drawn_by(loaded), drawn)
    with pytest.raises(TypeError, match="pair_caches"):
        train_transformer(model, ImageTokens(high, np.arange(count), cache.captions, {}), config,
                          tmp_path / "other")


def test_the_sampler_draws_each_prompt_on_its_own_low_tokens(tokenizer, monkeypatch):
    model = tiny_model(tokenizer)
    calls = []
    original = monitor_module.sample_stage

    def spy(stage, prompts, settings, low_tokens=None, **options):
        calls.append((list(prompts), np.array(low_tokens)))
        return original(stage, prompts, settings, low_tokens=low_tokens, **options)

    monkeypatch.setattr(monitor_module, "sample_stage", spy)

    class FakeVQ:  # an image per grid whose pixels all hold the grid's first token / K
        def decode(self, tokens):
            first = tokens.reshape(len(tokens), -1)[:, :1, None, None] / K_HIGH
            return Tensor(np.broadcast_to(first, (len(tokens), 3, 8, 8)).astype(np.float32))

    low = np.random.default_rng(9).integers(0, K_LOW, (3, LOW, LOW))
    prompts = ["a red circle", "a blue square", "a green circle"]
    images = superres_sampler(FakeVQ(), low, SUPERRES.replace(steps=2),
                              batch_size=2)(model, prompts)
    assert images.shape == (3, 3, 8, 8)
    assert [p for batch, _ in calls for p in batch] == prompts
    np.testing.assert_array_equal(np.concatenate([grids for _, grids in calls]), low)
    with pytest.raises(ValueError, match="4 prompts but only 3"):
        superres_sampler(FakeVQ(), low)(model, prompts + ["a red circle"])
