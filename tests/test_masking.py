"""Mask schedules, training masks and the decode-time counts (tinymuse.masking)."""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import backend
from tinymuse.masking import (SCHEDULES, apply_mask, decoding_schedule, get_schedule, masked_count,
                              random_mask, sample_training_mask, training_mask_counts)

FAST = settings(max_examples=30, deadline=None)
schedule_names = st.sampled_from(sorted(SCHEDULES))


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_end_points(name):
    gamma = get_schedule(name)
    assert gamma(0.0) == pytest.approx(1.0, abs=1e-12)
    assert gamma(1.0) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_is_monotone_in_unit_range_and_keeps_dtype(name, dtype):
    r = np.linspace(0, 1, 1001, dtype=dtype)
    gamma = get_schedule(name)(r)
    assert gamma.dtype == dtype
    assert np.all(np.diff(gamma) <= 0)
    assert gamma.min() >= 0 and gamma.max() <= 1


@FAST
@given(name=schedule_names, a=st.floats(0, 1), b=st.floats(0, 1))
def test_schedule_monotone_on_any_pair(name, a, b):
    gamma = get_schedule(name)
    low, high = min(a, b), max(a, b)
    assert float(gamma(low)) >= float(gamma(high))


@pytest.mark.parametrize("name, r, expected", [
    ("cosine", 1 / 3, math.sqrt(3) / 2),   # cos(π/6)
    ("cosine", 0.5, math.sqrt(0.5)),       # cos(π/4)
    ("linear", 0.25, 0.75),
    ("square", 0.5, 0.75),
    ("cubic", 0.5, 0.875),
    ("sqrt", 0.25, 0.5),
    ("log", 1.0, 0.0),
    ("log", 0.5, 1 - math.log2(1.5)),
])
def test_schedule_known_values(name, r, expected):
    assert float(get_schedule(name)(r)) == pytest.approx(expected, rel=1e-12)


def test_concave_and_convex_schedules_are_on_the_right_side_of_linear():
    r = np.linspace(0.01, 0.99, 99)
    for name in ("cosine", "square", "cubic"):
        assert np.all(get_schedule(name)(r) > 1 - r), name
    for name in ("sqrt", "log"):
        assert np.all(get_schedule(name)(r) < 1 - r), name


def test_get_schedule_passes_functions_through_and_rejects_unknown_names():
    custom = lambda r: 1 - r  # noqa: E731
    assert get_schedule(custom) is custom
    with pytest.raises(ValueError, match="unknown mask schedule 'cosin'.*cosine"):
        get_schedule("cosin")


# ---------------------------------------------------------------- training masks


@FAST
@given(batch=st.integers(1, 6), num_tokens=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       name=schedule_names)
def test_training_mask_has_the_scheduled_count(batch, num_tokens, seed, name):
    mask = sample_training_mask(batch, num_tokens, backend.Generator(seed), schedule=name)
    assert mask.shape == (batch, num_tokens) and mask.dtype == bool
    counts = mask.sum(axis=1)
    assert np.all(counts >= 1) and np.all(counts <= num_tokens)
    # Replay the documented draws: first the ratios r, one per row.
    ratios = backend.Generator(seed).random((batch,), dtype=np.float64)
    fractions = get_schedule(name)(ratios)
    expected = np.clip(np.ceil(fractions * num_tokens), 1, num_tokens)
    np.testing.assert_array_equal(counts, expected)


@pytest.mark.parametrize("name, mean_fraction", [("cosine", 2 / math.pi), ("linear", 0.5),
                                                 ("square", 2 / 3), ("sqrt", 1 / 3)])
def test_training_mask_fraction_averages_to_the_schedule_integral(name, mean_fraction):
    # E[γ(r)] for r ~ U[0, 1) is ∫₀¹ γ; ⌈·⌉ adds at most one token per row.
    num_tokens = 200
    counts = sample_training_mask(4000, num_tokens, backend.Generator(1), schedule=name).sum(axis=1)
    assert mean_fraction <= counts.mean() / num_tokens <= mean_fraction + 1 / num_tokens + 0.015


def test_training_mask_positions_are_uniform():
    mask = sample_training_mask(6000, 8, backend.Generator(2), schedule="linear")
    per_position = mask.mean(axis=0)
    assert np.all(np.abs(per_position - per_position.mean()) < 0.03)


def test_training_mask_is_seeded():
    a = sample_training_mask(3, 50, backend.Generator(7))
    b = sample_training_mask(3, 50, backend.Generator(7))
    c = sample_training_mask(3, 50, backend.Generator(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_training_mask_counts_clamps_to_one_and_n():
    counts = training_mask_counts(np.array([0.0, 1e-9, 0.5, 0.51, 1.0]), 10)
    np.testing.assert_array_equal(counts, [1, 1, 5, 6, 10])


def test_training_mask_on_device(device):
    mask = sample_training_mask(4, 30, backend.Generator(0), device=device)
    assert backend.device_of(mask) == device
    counts = backend.to_numpy(mask.sum(axis=1))
    np.testing.assert_array_equal(counts, backend.to_numpy(
        sample_training_mask(4, 30, backend.Generator(0), device="cpu").sum(axis=1)))


@FAST
@given(data=st.data(), batch=st.integers(1, 5), num_tokens=st.integers(1, 30),
       seed=st.integers(0, 1000))
def test_random_mask_exact_counts_inside_allowed(data, batch, num_tokens, seed):
    allowed = np.array(data.draw(st.lists(st.lists(st.booleans(), min_size=num_tokens,
                                                   max_size=num_tokens),
                                          min_size=batch, max_size=batch)))
    counts = [data.draw(st.integers(0, int(n))) for n in allowed.sum(axis=1)]
    mask = random_mask(counts, num_tokens, backend.Generator(seed), allowed=allowed)
    np.testing.assert_array_equal(mask.sum(axis=1), counts)
    assert not np.any(mask & ~allowed)


def test_random_mask_rejects_impossible_counts():
    with pytest.raises(ValueError, match="counts must lie between 0"):
        random_mask([3], 2, backend.Generator(0))
    with pytest.raises(ValueError, match="allowed"):
        random_mask([2], 4, backend.Generator(0), allowed=np.array([[True, False, False, False]]))


def test_apply_mask_copies_and_puts_mask_id_only_where_masked():
    tokens = np.arange(6, dtype=np.int32).reshape(2, 3)
    mask = np.array([[True, False, False], [False, True, True]])
    out = apply_mask(tokens, mask, 99)
    np.testing.assert_array_equal(out, [[99, 1, 2], [3, 99, 99]])
    assert out.dtype == np.int32
    np.testing.assert_array_equal(tokens, np.arange(6).reshape(2, 3))  # input untouched
    with pytest.raises(ValueError, match="mask shape"):
        apply_mask(tokens, mask[:, :2], 99)


# ---------------------------------------------------------------- decode-time counts


@FAST
@given(steps=st.integers(1, 30), start=st.integers(0, 300), name=schedule_names)
def test_decoding_schedule_invariants(steps, start, name):
    counts = decoding_schedule(steps, start, name)
    assert counts.shape == (steps,)
    previous = np.concatenate([[start], counts[:-1]])
    assert counts[-1] == 0
    assert np.all(counts <= previous)                          # never increases
    if start >= 1:
        assert np.all(counts[:-1] >= 1)                        # one left for the last step
    # At least one revealed per step, except that one is kept for the last step.
    assert np.all((counts < previous) | (previous <= 1))
    if start >= 1:
        assert counts[-1] < previous[-1]
    # Where the clamps do not bite, the count is ⌊M·γ((t+1)/T)⌋, up to rounding at integers.
    gamma = get_schedule(name)
    for t in range(steps - 1):
        proposed = start * float(gamma((t + 1) / steps))
        if 1 <= proposed - 1e-6 and proposed + 1e-6 < previous[t]:
            assert math.floor(proposed - 1e-6) <= counts[t] <= math.floor(proposed + 1e-6)


@FAST
@given(steps=st.integers(1, 20), start=st.integers(0, 200))
def test_linear_decoding_schedule_matches_integer_arithmetic(steps, start):
    # ⌊M·(1 − (t+1)/T)⌋ = M·(T−t−1) // T exactly, then MaskGIT's clamps.
    expected, previous = [], start
    for t in range(steps - 1):
        current = min(previous, max(1, min(previous - 1, start * (steps - t - 1) // steps)))
        expected.append(current)
        previous = current
    expected.append(0)
    np.testing.assert_array_equal(decoding_schedule(steps, start, "linear"), expected)


def test_decoding_schedule_rounds_exact_products_down_correctly():
    # γ(2/3) = cos(π/3) = 1/2 exactly, but in floating point 4 · γ(2/3) = 1.999…: it must
    # still count as 2 (and 4 · cos(π/6) = 3.46 as 3).
    np.testing.assert_array_equal(decoding_schedule(3, 4, "cosine"), [3, 2, 0])
    np.testing.assert_array_equal(decoding_schedule(10, 10, "linear"), np.arange(9, -1, -1))
    np.testing.assert_array_equal(decoding_schedule(1, 17, "cosine"), [0])


def test_decoding_schedule_per_row_and_masked_count_agree():
    starts = np.array([64, 5, 0, 1])
    table = decoding_schedule(6, starts, "cosine")
    assert table.shape == (6, 4)
    for row, start in enumerate(starts):
        np.testing.assert_array_equal(table[:, row], decoding_schedule(6, int(start), "cosine"))
        for t in range(6):
            assert masked_count(t, 6, int(start), "cosine") == table[t, row]
    assert isinstance(masked_count(0, 6, 64), int)
    with pytest.raises(ValueError, match="step must be in"):
        masked_count(6, 6, 64)
    with pytest.raises(ValueError, match="total_steps"):
        decoding_schedule(0, 64)
