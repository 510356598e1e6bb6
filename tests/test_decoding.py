"""MaskGIT/Muse parallel decoding and editing (tinymuse.decoding), with toy models."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import Tensor, backend
from tinymuse.decoding import (decode, generate, guidance_scale_at, log_softmax, mask_free_edit,
                               mask_free_edit_step, sample_tokens)
from tinymuse.masking import SCHEDULES, decoding_schedule
from tinymuse.sampling import EDIT, Sampling

FAST = settings(max_examples=25, deadline=None)
# MaskGIT's decoding settings (§3.2, §4.1), unguided, as the starting point of these tests.
MASKGIT = Sampling(steps=12, temperature=1.0, choice_temperature=4.5, guidance_scale=0.0)


def sampled(**changes) -> Sampling:
    return MASKGIT.replace(**changes)


class ToyModel:
    """``logits_fn`` whose condition *is* the logits, ``(B, N, K)``: the model
    ignores the tokens, so tests control every prediction. Records each call."""

    def __init__(self):
        self.calls = []  # (tokens seen, condition seen)

    def __call__(self, tokens, condition):
        self.calls.append((tokens.copy(), condition))
        assert condition.shape[:2] == tokens.shape
        return condition


def random_logits(seed, batch, num_tokens, num_classes, scale=3.0):
    return (scale * np.random.default_rng(seed).normal(size=(batch, num_tokens, num_classes))
            ).astype(np.float32)


def stack(c, u):
    return np.concatenate([c, u])


# ---------------------------------------------------------------- decoding invariants


@FAST
@given(batch=st.integers(1, 3), num_tokens=st.integers(1, 40), num_classes=st.integers(2, 9),
       steps=st.integers(1, 10), schedule=st.sampled_from(sorted(SCHEDULES)),
       seed=st.integers(0, 10**6), temperature=st.sampled_from([0.0, 0.5, 1.0]),
       top_k=st.sampled_from([None, 1, 3]), choice_temperature=st.sampled_from([0.0, 4.5]))
def test_decoding_follows_the_schedule_and_never_changes_revealed_tokens(
        batch, num_tokens, num_classes, steps, schedule, seed, temperature, top_k,
        choice_temperature):
    mask_id = num_classes  # outside the logits' range, as in Muse
    model = ToyModel()
    result = generate(model, random_logits(seed, batch, num_tokens, num_classes),
                      batch_size=batch, num_tokens=num_tokens, mask_id=mask_id,
                      generator=backend.Generator(seed), return_intermediates=True,
                      settings=sampled(steps=steps, mask_schedule=schedule,
                                       temperature=temperature, top_k=top_k,
                                       choice_temperature=choice_temperature))
    expected_counts = decoding_schedule(steps, num_tokens, schedule)
    assert len(model.calls) == steps
    assert len(result.intermediates) == steps
    previous_tokens = np.full((batch, num_tokens), mask_id)
    previous_mask = np.ones((batch, num_tokens), dtype=bool)
    for t, (tokens, mask) in enumerate(result.intermediates):
        np.testing.assert_array_equal(model.calls[t][0], previous_tokens)  # the model saw the grid
        np.testing.assert_array_equal(mask.sum(axis=1), expected_counts[t])
        np.testing.assert_array_equal(tokens == mask_id, mask)
        assert not np.any(mask & ~previous_mask)  # masked set only shrinks
        revealed = ~previous_mask
        np.testing.assert_array_equal(tokens[revealed], previous_tokens[revealed])
        previous_tokens, previous_mask = tokens, mask
    np.testing.assert_array_equal(result.tokens, result.intermediates[-1].tokens)
    assert result.tokens.min() >= 0 and result.tokens.max() < num_classes


def test_intermediates_are_only_kept_on_request():
    result = generate(ToyModel(), random_logits(0, 2, 5, 3), batch_size=2, num_tokens=5,
                      mask_id=3, generator=backend.Generator(0), settings=sampled(steps=3))
    assert result.intermediates is None and result.tokens.shape == (2, 5)


def test_same_seed_same_tokens_different_seed_different_tokens():
    logits = random_logits(1, 2, 64, 16, scale=0.5)

    def run(seed):
        return generate(ToyModel(), logits, batch_size=2, num_tokens=64, mask_id=16,
                        settings=sampled(steps=6), generator=backend.Generator(seed),
                        return_intermediates=True)

    a, b, c = run(5), run(5), run(6)
    np.testing.assert_array_equal(a.tokens, b.tokens)
    for step_a, step_b in zip(a.intermediates, b.intermediates):
        np.testing.assert_array_equal(step_a.mask, step_b.mask)
    assert not np.array_equal(a.tokens, c.tokens)


def test_most_confident_predictions_are_kept():
    # Position n predicts token 0 with logit h_n against zeros: higher h_n, higher log p.
    num_tokens, num_classes = 12, 5
    heights = np.random.default_rng(3).permutation(num_tokens).astype(np.float32)
    logits = np.zeros((1, num_tokens, num_classes), dtype=np.float32)
    logits[0, :, 0] = heights
    result = generate(ToyModel(), logits, batch_size=1, num_tokens=num_tokens, mask_id=num_classes,
                      generator=backend.Generator(0), return_intermediates=True,
                      settings=sampled(steps=3, temperature=0.0, choice_temperature=0.0))
    still_masked = decoding_schedule(3, num_tokens, "cosine")[0]
    kept = ~result.intermediates[0].mask[0]
    np.testing.assert_array_equal(kept, heights >= np.sort(heights)[still_masked])


def test_choice_temperature_randomises_which_tokens_are_kept():
    logits = random_logits(0, 1, 32, 8)

    def kept(seed, choice_temperature):
        result = generate(ToyModel(), logits, batch_size=1, num_tokens=32, mask_id=8,
                          settings=sampled(steps=4, temperature=0.0,
                                           choice_temperature=choice_temperature),
                          generator=backend.Generator(seed), return_intermediates=True)
        return ~result.intermediates[0].mask

    np.testing.assert_array_equal(kept(0, 0.0), kept(1, 0.0))  # greedy and no noise: determined
    assert not np.array_equal(kept(0, 50.0), kept(1, 50.0))


@pytest.mark.parametrize("steps", [2, 4])
def test_choice_noise_is_gumbel_scaled_by_the_falling_choice_temperature(steps):
    # Greedy decoding draws no sampling noise, so step 0 draws only the choice noise g
    # (one Gumbel per masked position): confidence = log p + 4.5·(1 − 1/T)·g.
    num_tokens, seed = 1024, 11
    logits = random_logits(seed, 1, num_tokens, 5, scale=6.0)  # log p spread like the noise
    result = generate(ToyModel(), logits, batch_size=1, num_tokens=num_tokens, mask_id=5,
                      generator=backend.Generator(seed), return_intermediates=True,
                      settings=sampled(steps=steps, temperature=0.0, choice_temperature=4.5))
    noise = backend.Generator(seed).gumbel((num_tokens,), dtype=np.float32)
    log_p = log_softmax(logits[0].astype(np.float64)).max(axis=-1)
    confidence = log_p + 4.5 * (1 - 1 / steps) * noise
    still_masked = decoding_schedule(steps, num_tokens)[0]
    expected_kept = confidence >= np.sort(confidence)[still_masked]
    np.testing.assert_array_equal(~result.intermediates[0].mask[0], expected_kept)


def test_mask_id_inside_the_logits_is_never_sampled():
    num_classes = 6
    logits = random_logits(0, 2, 20, num_classes)
    logits[..., num_classes - 1] = 100.0  # the model "wants" the mask token everywhere
    result = generate(ToyModel(), logits, batch_size=2, num_tokens=20, mask_id=num_classes - 1,
                      generator=backend.Generator(0), settings=sampled(steps=4))
    assert not np.any(result.tokens == num_classes - 1)


def test_logits_may_be_a_tensor():
    logits = random_logits(0, 2, 10, 4)
    a = generate(lambda tokens, c: Tensor(c), logits, batch_size=2, num_tokens=10, mask_id=4,
                 generator=backend.Generator(0), settings=sampled(steps=3))
    b = generate(lambda tokens, c: c, logits, batch_size=2, num_tokens=10, mask_id=4,
                 generator=backend.Generator(0), settings=sampled(steps=3))
    np.testing.assert_array_equal(a.tokens, b.tokens)


def test_clear_errors_for_bad_input():
    logits = random_logits(0, 1, 4, 3)
    with pytest.raises(ValueError, match=r"logits of shape \(B, N, K\)"):
        generate(lambda tokens, c: c[:, :2], logits, batch_size=1, num_tokens=4, mask_id=3,
                 settings=MASKGIT)
    with pytest.raises(ValueError, match="needs uncond_condition"):
        generate(ToyModel(), logits, batch_size=1, num_tokens=4, mask_id=3,
                 settings=sampled(guidance_scale=2.0))
    with pytest.raises(ValueError, match="integer array"):
        decode(ToyModel(), np.zeros((1, 4)), logits, mask_id=3, settings=MASKGIT)


# ---------------------------------------------------------------- sampling


def test_log_softmax_is_stable_and_normalised():
    x = np.array([[1000.0, 999.0, -1000.0], [0.1, 0.2, 0.3]], dtype=np.float32)
    out = log_softmax(x)
    assert out.dtype == np.float32 and np.all(np.isfinite(out))
    np.testing.assert_allclose(np.exp(out).sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(out[1], np.log(np.exp(x[1]) / np.exp(x[1]).sum()), rtol=1e-6)
    np.testing.assert_allclose(out[0, :2], [-math.log(1 + math.exp(-1)), -math.log(1 + math.e)],
                               rtol=1e-6)


@pytest.mark.parametrize("temperature, top_k", [(1.0, None), (0.6, None), (2.0, 2)])
def test_sample_tokens_draws_from_the_tempered_top_k_softmax(temperature, top_k):
    row = np.array([0.5, -1.0, 1.5, 0.0], dtype=np.float32)
    logits = np.tile(row, (20000, 1))
    ids = sample_tokens(logits, backend.Generator(0), temperature=temperature, top_k=top_k)
    weights = np.exp(row / temperature)
    if top_k is not None:
        weights[np.argsort(row)[:-top_k]] = 0
    frequencies = np.bincount(ids, minlength=4) / len(ids)
    np.testing.assert_allclose(frequencies, weights / weights.sum(), atol=0.015)


def test_sample_tokens_greedy_and_top_one_are_argmax():
    logits = random_logits(0, 3, 7, 11)
    np.testing.assert_array_equal(sample_tokens(logits, temperature=0.0), logits.argmax(-1))
    np.testing.assert_array_equal(
        sample_tokens(logits, backend.Generator(0), temperature=5.0, top_k=1), logits.argmax(-1))


@FAST
@given(seed=st.integers(0, 10**6), top_k=st.integers(1, 6))
def test_decoded_tokens_are_among_the_top_k(seed, top_k):
    logits = random_logits(seed, 2, 15, 8)
    result = generate(ToyModel(), logits, batch_size=2, num_tokens=15, mask_id=8,
                      settings=sampled(steps=3, top_k=top_k, temperature=3.0),
                      generator=backend.Generator(seed))
    rank = (logits > np.take_along_axis(logits, result.tokens[..., None], -1)).sum(-1)
    assert np.all(rank < top_k)


# ---------------------------------------------------------------- guidance


def guided_generate(model, c, u, seed=0, concat_conditions=None, return_intermediates=False,
                    **settings):
    batch, num_tokens, num_classes = c.shape
    return generate(model, c, batch_size=batch, num_tokens=num_tokens, mask_id=num_classes,
                    settings=sampled(**settings), uncond_condition=u,
                    concat_conditions=concat_conditions, generator=backend.Generator(seed),
                    return_intermediates=return_intermediates)


@pytest.mark.parametrize("steps", [1, 5])
def test_model_call_counts(steps):
    c, u = random_logits(0, 3, 16, 5), random_logits(1, 3, 16, 5)
    unguided, two_calls, batched, off = ToyModel(), ToyModel(), ToyModel(), ToyModel()
    guided_generate(unguided, c, None, steps=steps)
    guided_generate(two_calls, c, u, steps=steps, guidance_scale=3.0)
    guided_generate(batched, c, u, steps=steps, guidance_scale=3.0, concat_conditions=stack)
    guided_generate(off, c, u, steps=steps, guidance_scale=0.0)
    assert len(unguided.calls) == steps
    assert len(two_calls.calls) == 2 * steps
    assert [cond is c for _, cond in two_calls.calls] == [True, False] * steps
    assert [cond is u for _, cond in two_calls.calls] == [False, True] * steps
    assert len(batched.calls) == steps
    for tokens, cond in batched.calls:  # one call on 2B rows: the grid twice, cond rows first
        assert tokens.shape == (6, 16)
        np.testing.assert_array_equal(tokens[:3], tokens[3:])
        np.testing.assert_array_equal(cond, stack(c, u))
    assert len(off.calls) == steps


@FAST
@given(seed=st.integers(0, 10**6), scale=st.floats(0.5, 8), top_k=st.sampled_from([None, 2]),
       schedule=st.sampled_from(["constant", "linear"]))
def test_batched_guidance_equals_two_call_guidance(seed, scale, top_k, schedule):
    c, u = random_logits(seed, 2, 12, 6), random_logits(seed + 1, 2, 12, 6)
    options = dict(seed=seed, steps=4, guidance_scale=scale, guidance_schedule=schedule,
                   top_k=top_k)
    two_calls = guided_generate(ToyModel(), c, u, **options)
    batched = guided_generate(ToyModel(), c, u, concat_conditions=stack, **options)
    np.testing.assert_array_equal(two_calls.tokens, batched.tokens)


@FAST
@given(seed=st.integers(0, 10**6), steps=st.integers(1, 6))
def test_guidance_scale_zero_equals_unguided_sampling(seed, steps):
    c, u = random_logits(seed, 2, 20, 7), random_logits(seed + 1, 2, 20, 7)
    unguided = guided_generate(ToyModel(), c, None, seed=seed, steps=steps)
    zero = guided_generate(ToyModel(), c, u, seed=seed, steps=steps, guidance_scale=0.0)
    np.testing.assert_array_equal(unguided.tokens, zero.tokens)


@pytest.mark.parametrize("scale", [0.0, 0.7, 3.0])
def test_guided_logits_follow_muse_formula_with_a_negative_prompt(scale):
    # Greedy, one step: each token is argmax((1 + s)·cond − s·negative).
    c, negative = random_logits(0, 2, 30, 6), random_logits(1, 2, 30, 6)
    model = ToyModel()
    result = guided_generate(model, c, negative, steps=1, temperature=0.0, guidance_scale=scale)
    expected = ((1 + scale) * c.astype(np.float64) - scale * negative).argmax(-1)
    np.testing.assert_array_equal(result.tokens, expected)
    if scale:
        assert model.calls[1][1] is negative  # the negative prompt replaced the unconditional
    if scale == 3.0:  # guidance changed the picture
        assert not np.array_equal(result.tokens, c.argmax(-1))


def test_guidance_scale_schedules():
    assert [guidance_scale_at(t, 4, 2.0, "constant") for t in range(4)] == [2.0] * 4
    assert [guidance_scale_at(t, 4, 2.0, "linear") for t in range(4)] == [0.5, 1.0, 1.5, 2.0]


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_linear_guidance_rises_over_the_steps(schedule):
    # Guided logits are [0, 1 − s]: token 1 wins while s < 1, token 0 once s > 1.
    # With s = 1.5 and T = 2, "linear" uses s = 0.75 at step 0 and 1.5 at step 1.
    num_tokens = 10
    c = np.zeros((1, num_tokens, 2), dtype=np.float32)
    u = np.zeros_like(c)
    c[..., 1], u[..., 1] = 1.0, 2.0
    result = guided_generate(ToyModel(), c, u, steps=2, temperature=0.0, choice_temperature=0.0,
                             guidance_scale=1.5, guidance_schedule=schedule,
                             return_intermediates=True)
    revealed_at_step_0 = ~result.intermediates[0].mask
    expected = np.where(revealed_at_step_0, 1, 0) if schedule == "linear" else np.zeros((1, 10))
    np.testing.assert_array_equal(result.tokens, expected)
    assert revealed_at_step_0.sum() == num_tokens - decoding_schedule(2, num_tokens)[0] > 0


# ---------------------------------------------------------------- editing


@FAST
@given(data=st.data(), seed=st.integers(0, 10**6), steps=st.integers(1, 8))
def test_inpainting_regenerates_only_the_region_on_schedule(data, seed, steps):
    batch, num_tokens, num_classes = 3, 16, 5
    rng = np.random.default_rng(seed)
    original = rng.integers(0, num_classes, size=(batch, num_tokens))
    region = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=num_tokens,
                                                  max_size=num_tokens),
                                         min_size=batch, max_size=batch)))
    model = ToyModel()
    result = decode(model, original, random_logits(seed, batch, num_tokens, num_classes),
                    mask_id=num_classes, mask=region, settings=sampled(steps=steps),
                    generator=backend.Generator(seed), return_intermediates=True)
    np.testing.assert_array_equal(result.tokens[~region], original[~region])
    np.testing.assert_array_equal(model.calls[0][0], np.where(region, num_classes, original))
    expected_counts = decoding_schedule(steps, region.sum(axis=1))
    for t, step in enumerate(result.intermediates):
        np.testing.assert_array_equal(step.mask.sum(axis=1), expected_counts[t])
        assert not np.any(step.mask & ~region)
    assert result.tokens.max() < num_classes
    assert original.shape == (batch, num_tokens)  # the caller's grid is not modified
    np.testing.assert_array_equal(original, np.random.default_rng(seed).integers(
        0, num_classes, size=(batch, num_tokens)))


def test_decode_masks_positions_holding_mask_id_when_no_mask_is_given():
    tokens = np.array([[0, 4, 1, 4], [4, 4, 4, 4]])
    result = decode(ToyModel(), tokens, random_logits(0, 2, 4, 4), mask_id=4,
                    settings=sampled(steps=2), generator=backend.Generator(0))
    np.testing.assert_array_equal(result.tokens[0, [0, 2]], [0, 1])
    assert np.all(result.tokens < 4)


@pytest.mark.parametrize("concat", [None, stack])
def test_mask_free_edit_resamples_small_subsets_inside_the_region(concat):
    batch, num_tokens, num_classes, iterations = 2, 50, 6, 7
    rng = np.random.default_rng(0)
    original = rng.integers(0, num_classes, size=(batch, num_tokens))
    region = np.zeros((batch, num_tokens), dtype=bool)
    region[0, :30], region[1, 10:] = True, True
    c, u = random_logits(0, batch, num_tokens, num_classes), random_logits(1, batch, num_tokens,
                                                                           num_classes)
    model = ToyModel()
    result = mask_free_edit(model, original, c, mask_id=num_classes, region=region,
                            uncond_condition=u, concat_conditions=concat,
                            generator=backend.Generator(0),
                            return_intermediates=True,
                            settings=EDIT.replace(iterations=iterations, fraction=0.08))
    assert len(model.calls) == iterations * (1 if concat else 2)  # guidance 4 by default
    np.testing.assert_array_equal(result.tokens[~region], original[~region])
    previous = original
    for tokens, resampled in result.intermediates:
        np.testing.assert_array_equal(resampled.sum(axis=1), [math.ceil(0.08 * 30),
                                                              math.ceil(0.08 * 40)])
        assert not np.any(resampled & ~region)
        np.testing.assert_array_equal(tokens[~resampled], previous[~resampled])
        previous = tokens
    np.testing.assert_array_equal(result.tokens, previous)
    assert not np.array_equal(result.tokens, original)


def test_mask_free_edit_is_seeded_and_needs_uncond_for_default_guidance():
    original = np.random.default_rng(0).integers(0, 5, size=(1, 40))
    c = random_logits(0, 1, 40, 5)
    unguided = EDIT.replace(iterations=5, guidance_scale=0.0)
    a = mask_free_edit(ToyModel(), original, c, mask_id=5, settings=unguided,
                       generator=backend.Generator(3))
    b = mask_free_edit(ToyModel(), original, c, mask_id=5, settings=unguided,
                       generator=backend.Generator(3))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    with pytest.raises(ValueError, match="needs uncond_condition"):
        mask_free_edit(ToyModel(), original, c, mask_id=5, settings=EDIT)
    with pytest.raises(ValueError, match="fraction"):
        mask_free_edit_step(ToyModel(), original, c, mask_id=5,
                            settings=EDIT.replace(fraction=0.0, guidance_scale=0.0))


# ---------------------------------------------------------------- devices


def test_decoding_on_device(device):
    xp = backend.xp_for(device)
    logits = random_logits(0, 2, 24, 6)
    model = lambda tokens, c: c  # noqa: E731
    result = generate(model, xp.asarray(logits), batch_size=2, num_tokens=24, mask_id=6,
                      device=device, generator=backend.Generator(0), return_intermediates=True,
                      settings=sampled(steps=4, top_k=3))
    assert backend.device_of(result.tokens) == device
    counts = [backend.to_numpy(step.mask.sum(axis=1)) for step in result.intermediates]
    np.testing.assert_array_equal(np.stack(counts), decoding_schedule(4, np.array([24, 24])))
    # One step involves no confidence ranking: the same seed gives the same tokens everywhere.
    one_step = [generate(model, backend.to_device(logits, d), batch_size=2, num_tokens=24,
                         mask_id=6, device=d, generator=backend.Generator(1),
                         settings=sampled(steps=1)).tokens
                for d in (device, "cpu")]
    np.testing.assert_array_equal(backend.to_numpy(one_step[0]), one_step[1])
