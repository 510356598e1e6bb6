"""Behaviours a mutation run found unguarded: caption dropout must reach the training loss of
both transformers, and the super-resolution stage must condition on the base stage's real
tokens, with guidance and without.

The references here are computed from the documented parts (the draws in the documented
order, the model's ``logits``, ``make_context`` and :func:`tinymuse.decoding.decode`), never
from the code path under test, so a step that computes the right thing and then drops it on the
floor fails."""
import dataclasses

import numpy as np
import pytest

import tinymuse
from tinymuse import backend, decoding, sampling
from tinymuse.data import shapes_captions
from tinymuse.masking import apply_mask, sample_training_mask
from tinymuse.models import (
    BaseTransformer,
    BaseTransformerConfig,
    SuperResTransformer,
    SuperResTransformerConfig,
    TextContext,
    masked_token_loss,
)
from tinymuse.pipeline_files import BUNDLED
from tinymuse.tensor import no_grad
from tinymuse.text.encoder import TextEncoderConfig
from tinymuse.text.tokenizer import Tokenizer

CAPTIONS = ["a red circle", "two blue squares", "a green triangle on black",
            "the letter K in yellow"]
K, GRID, K_LOW, LOW = 16, 4, 6, 2  # 4×4 tokens of 16 codes; super-resolution reads 2×2 of 6
# Two computations of one loss agree to about 2e-7 (float32); a caption moves a tiny model's
# loss by 4e-5 of it or more (on these seeds), so the two outcomes cannot be confused.
TOL = 2e-6


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


# --------------------------------------------------------------------------- #
# Caption dropout reaches the training loss (base and super-resolution).
# --------------------------------------------------------------------------- #


def build(kind, tokenizer):
    """A tiny model of ``kind`` ("base" or "superres") with dropout layers off."""
    text = TextEncoderConfig(vocab_size=tokenizer.vocab_size, max_length=24, d_model=16,
                             num_layers=1, num_heads=2)
    sizes = {"codebook_size": K, "grid_size": GRID, "d_model": 32, "num_layers": 2,
             "num_heads": 4, "text": text}
    if kind == "base":
        return BaseTransformer(BaseTransformerConfig(**sizes), tokenizer=tokenizer,
                               generator=backend.Generator(0))
    config = SuperResTransformerConfig(low_codebook_size=K_LOW, low_grid_size=LOW,
                                       low_num_layers=1, **sizes)
    return SuperResTransformer(config, tokenizer=tokenizer, generator=backend.Generator(0))


def with_dropout(model, rate):
    model.config = dataclasses.replace(model.config, caption_dropout=rate)
    return model


def training_batch(model, captions, seed=0):
    rng = np.random.default_rng(seed)
    ids, mask = model.tokenize(captions)
    batch = {"tokens": rng.integers(0, K, (len(captions), GRID, GRID)),
             "text_ids": ids, "text_mask": mask}
    if isinstance(model, SuperResTransformer):
        batch["low_tokens"] = rng.integers(0, K_LOW, (len(captions), LOW, LOW))
    return batch


def reference_loss(model, batch, prompts, seed):
    """The training loss recomputed by hand with ``prompts``' context: the documented draws
    (the caption-dropout draw, then the training mask; no low-token noise at rate 0), the
    model's logits and the masked-token loss."""
    generator = backend.Generator(seed)
    tokens = batch["tokens"].reshape(len(prompts), -1).astype(np.int64)
    generator.random((len(prompts),))  # caption dropout's draw, whatever it decides
    mask = sample_training_mask(*tokens.shape, generator, model.config.mask_schedule)
    context = model.encode_prompts(prompts)
    if isinstance(model, SuperResTransformer):
        context = model.make_context(context, batch["low_tokens"])
    logits = model.logits(apply_mask(tokens, mask, model.mask_id), context)
    return masked_token_loss(logits, tokens, mask, model.config.label_smoothing)[0].item()


def training_loss(model, batch, seed):
    return model.training_loss(batch, backend.Generator(seed)).loss.item()


@pytest.mark.parametrize("kind", ["base", "superres"])
def test_caption_dropout_1_trains_every_row_on_the_empty_prompt(kind, tokenizer):
    """caption_dropout=1: the training loss is the loss under the empty prompt, not under
    the real captions (the same generator seed, so the same training mask)."""
    model = with_dropout(build(kind, tokenizer), 1.0)
    batch = training_batch(model, CAPTIONS)
    empty = [""] * len(CAPTIONS)
    for seed in range(3):
        dropped = reference_loss(model, batch, empty, seed)
        real = reference_loss(model, batch, CAPTIONS, seed)
        assert abs(dropped - real) > 10 * TOL * abs(real), "the caption must matter to the loss"
        assert training_loss(model, batch, seed) == pytest.approx(dropped, rel=TOL, abs=1e-7)
        assert training_loss(model, batch, seed) != pytest.approx(real, rel=TOL, abs=1e-7)


@pytest.mark.parametrize("kind", ["base", "superres"])
def test_caption_dropout_0_trains_every_row_on_its_own_caption(kind, tokenizer):
    """caption_dropout=0: no caption is dropped; the loss is the loss under the captions."""
    model = with_dropout(build(kind, tokenizer), 0.0)
    batch = training_batch(model, CAPTIONS)
    for seed in range(3):
        real = reference_loss(model, batch, CAPTIONS, seed)
        assert training_loss(model, batch, seed) == pytest.approx(real, rel=TOL, abs=1e-7)
        empty = reference_loss(model, batch, [""] * len(CAPTIONS), seed)
        assert training_loss(model, batch, seed) != pytest.approx(empty, rel=TOL, abs=1e-7)


@pytest.mark.parametrize("kind", ["base", "superres"])
def test_caption_dropout_half_trains_about_half_the_rows_on_the_empty_prompt(kind, tokenizer):
    """caption_dropout=0.5, one caption per batch, 160 seeds: each step's loss is either the
    caption's or the empty prompt's, and the empty prompt's about half of the time."""
    model = with_dropout(build(kind, tokenizer), 0.5)
    draws, dropped = 160, 0
    for seed in range(draws):
        caption = [CAPTIONS[seed % len(CAPTIONS)]]
        batch = training_batch(model, caption, seed)
        loss = training_loss(model, batch, seed)
        real = reference_loss(model, batch, caption, seed)
        empty = reference_loss(model, batch, [""], seed)
        assert abs(real - empty) > 10 * TOL * abs(real), "the two outcomes must be told apart"
        is_real = loss == pytest.approx(real, rel=TOL, abs=1e-7)
        is_empty = loss == pytest.approx(empty, rel=TOL, abs=1e-7)
        assert is_real != is_empty, f"seed {seed}: the loss is neither outcome's"
        dropped += is_empty
    # Binomial(160, 0.5): standard deviation 6.3, so ±40 is more than 6σ (and seeded).
    assert abs(dropped - draws / 2) < 40, f"{dropped} of {draws} captions dropped"


# --------------------------------------------------------------------------- #
# The super-resolution stage reads the base stage's real tokens.
# --------------------------------------------------------------------------- #

PROMPTS = ["a red circle", "two blue squares"]
BASE_FAST = sampling.BASE.replace(steps=4)
UNGUIDED = sampling.SUPERRES.replace(steps=3, guidance_scale=0.0)
GUIDED = sampling.SUPERRES.replace(steps=3, guidance_scale=2.0)


@pytest.fixture(scope="module")
def bundled():
    return tinymuse.Pipeline.load(BUNDLED)


@pytest.fixture(scope="module")
def low_grids(bundled):
    """Two different base-stage token grids for PROMPTS, drawn by the bundled base model."""
    first = decoding.sample_stage(bundled.base, PROMPTS, BASE_FAST,
                                  generator=backend.Generator(1)).tokens
    second = decoding.sample_stage(bundled.base, PROMPTS[::-1], BASE_FAST,
                                   generator=backend.Generator(2)).tokens
    assert (first != second).any()
    return first, second


def direct_superres(model, prompts, settings, low_tokens, generator):
    """Super-resolution tokens decoded by hand: ``decode`` with the model's logits and the
    context built from ``low_tokens`` (both branches with guidance)."""
    with no_grad():
        condition = model.make_context(model.encode_prompts(prompts), low_tokens)
        uncond = None
        if settings.guidance_scale:
            uncond = model.make_context(model.encode_prompts([""] * len(prompts)), low_tokens)
        start = np.full((len(prompts), model.config.num_tokens), model.mask_id, np.int64)
        result = decoding.decode(model.logits, start, condition, mask_id=model.mask_id,
                                 settings=settings, uncond_condition=uncond,
                                 concat_conditions=TextContext.concat, generator=generator)
    grid = model.config.grid_size
    return backend.to_numpy(result.tokens).reshape(len(prompts), grid, grid)


def test_superres_logits_follow_the_low_tokens(bundled, low_grids):
    """The super-resolution model's context for a prompt holds the given low tokens: other
    low tokens, other logits."""
    model, (first, second) = bundled.superres, low_grids
    masked = np.full((len(PROMPTS), model.config.num_tokens), model.mask_id)
    with no_grad():
        a = model.logits(masked, model.prompt_context(PROMPTS, first)).numpy()
        b = model.logits(masked, model.prompt_context(PROMPTS, second)).numpy()
    assert np.abs(a - b).max() > 1e-2


@pytest.mark.parametrize("settings", [UNGUIDED, GUIDED], ids=["unguided", "guided"])
def test_sample_stage_conditions_superres_on_the_given_low_tokens(bundled, low_grids,
                                                                  settings):
    """sample_stage, with guidance 0 and with guidance: other low tokens give other
    super-resolution tokens, and each result is what the model gives when decoded by hand
    on those very low tokens (equal generators)."""
    model = bundled.superres
    drawn = [decoding.sample_stage(model, PROMPTS, settings, low_tokens=low,
                                   generator=backend.Generator(5)).tokens for low in low_grids]
    assert (drawn[0] != drawn[1]).any(), "the low tokens must change the picture"
    for low, tokens in zip(low_grids, drawn):
        np.testing.assert_array_equal(
            tokens, direct_superres(model, PROMPTS, settings, low, backend.Generator(5)))


@pytest.mark.parametrize("settings", [UNGUIDED, GUIDED], ids=["unguided", "guided"])
def test_the_pipeline_superres_stage_reads_the_base_stage_tokens(bundled, settings):
    """The pipeline's super-resolution tokens are the model's, decoded by hand on the base
    stage's own tokens with the same generator, with guidance 0 and with guidance; decoded on
    zeroed low tokens they would differ."""
    out = bundled.generate(PROMPTS, base=BASE_FAST, superres=settings, seed=3,
                           return_tokens=True)
    generator = backend.Generator(3)  # replay the pipeline's draws: the base stage first
    base_tokens = decoding.sample_stage(bundled.base, PROMPTS, BASE_FAST,
                                        generator=generator).tokens
    np.testing.assert_array_equal(out.base_tokens, base_tokens)
    state = generator.state_dict()
    expected = direct_superres(bundled.superres, PROMPTS, settings, base_tokens, generator)
    np.testing.assert_array_equal(out.superres_tokens, expected)
    replay = backend.Generator(0)
    replay.load_state_dict(state)
    zeroed = direct_superres(bundled.superres, PROMPTS, settings, np.zeros_like(base_tokens),
                             replay)
    assert (zeroed != expected).any(), "zeroed low tokens must give another picture"


def test_guided_superres_puts_the_real_low_tokens_in_both_branches(bundled, monkeypatch):
    """With guidance, the conditional and the unconditional context both start with the
    base stage's real tokens, read by the model (only the text differs)."""
    calls = []
    original = decoding.decode

    def spy(*args, **kwargs):
        calls.append(dict(kwargs, condition=args[2]))
        return original(*args, **kwargs)

    monkeypatch.setattr(decoding, "decode", spy)
    out = bundled.generate(PROMPTS, base=BASE_FAST, superres=GUIDED, seed=4,
                           return_tokens=True)
    model = bundled.superres
    with no_grad():
        low = model.encode_low_tokens(out.base_tokens).numpy()
        zero = model.encode_low_tokens(np.zeros_like(out.base_tokens)).numpy()
    assert np.abs(low - zero).max() > 1e-2
    superres_call = calls[-1]
    n = model.config.num_low_tokens
    for name in ("condition", "uncond_condition"):
        context = superres_call[name]
        assert backend.to_numpy(context.mask)[:, :n].all(), f"{name}: low tokens are real"
        np.testing.assert_allclose(context.embeddings.numpy()[:, :n], low, rtol=1e-5,
                                   atol=1e-5, err_msg=name)
