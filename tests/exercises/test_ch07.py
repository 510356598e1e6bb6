"""Chapter 7's exercises: parallel decoding (tutorials/07-parallel-decoding.md).

Each test calls the exercised function directly on small NumPy arrays and checks it against
a reference written here, so the exercises stay independent of each other and of the
autograd engine: nothing here builds a graph or runs a model.
"""
import math

import numpy as np
import pytest

from tinymuse import backend
from tinymuse.decoding import (_choice_scale, _guided_logits, _least_confident,
                               guidance_scale_at, sample_tokens)
from tinymuse.masking import decoding_schedule


# --------------------------------------------------------------------------- #
# ch07_ex1 — the decoding counts
# --------------------------------------------------------------------------- #

def cosine_gamma(r):   # the test's own γ, so that chapter 6's schedules are not needed
    return math.sin(math.pi / 2 * (1 - r))


def linear_gamma(r):
    return 1 - r


def root_gamma(r):     # convex: proposes to reveal many tokens at once early on
    return 1 - math.sqrt(r)


def expected_counts(steps, masked, gamma):
    """m_t = max(1, min(m_{t-1} − 1, ⌊M·γ((t+1)/T)⌋)), never above m_{t-1}; 0 at the end."""
    left, out = masked, []
    for t in range(steps - 1):
        proposal = math.floor(masked * gamma((t + 1) / steps) + 1e-9)
        left = min(left, max(1, min(left - 1, proposal)))
        out.append(left)
    return out + [0]


def test_ch07_ex1_counts_follow_the_schedule_and_its_clamps():
    assert decoding_schedule(8, 64, cosine_gamma).tolist() == [62, 59, 53, 45, 35, 24, 12, 0]
    for gamma in (cosine_gamma, linear_gamma, root_gamma):
        for steps in (1, 2, 3, 5, 8, 12, 24):
            for masked in (0, 1, 2, 3, 7, 16, 64, 256):
                got = decoding_schedule(steps, masked, gamma)
                assert got.shape == (steps,) and got.dtype == np.int64
                assert got.tolist() == expected_counts(steps, masked, gamma), (gamma, steps,
                                                                               masked)


def test_ch07_ex1_a_count_per_row_and_the_rules_hold():
    masked = np.array([0, 1, 5, 40, 64, 200])
    counts = decoding_schedule(10, masked, cosine_gamma)
    assert counts.shape == (10, 6)
    for row, start in enumerate(masked.tolist()):
        column = counts[:, row].tolist()
        assert column == expected_counts(10, start, cosine_gamma)
        assert column[-1] == 0 and all(a >= b for a, b in zip([start] + column, column))
        if start >= 10:   # enough tokens: every step reveals at least one, the last all
            assert all(a > b for a, b in zip([start] + column, column))
    # 10·(1 − 4/5) is 2 in exact arithmetic but 1.999… in floating point: still 2.
    assert decoding_schedule(5, 10, linear_gamma).tolist() == [8, 6, 4, 2, 0]


# --------------------------------------------------------------------------- #
# ch07_ex2 — sampling a token: temperature and top-k
# --------------------------------------------------------------------------- #

def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def test_ch07_ex2_greedy_takes_the_likeliest_and_draws_nothing():
    logits = np.random.default_rng(0).normal(size=(3, 5, 7)).astype(np.float32)
    generator = backend.Generator(1)
    got = sample_tokens(logits, generator, temperature=0.0)
    assert np.array_equal(got, np.argmax(logits, axis=-1))
    assert generator.random((4,)).tolist() == backend.Generator(1).random((4,)).tolist()


def test_ch07_ex2_gumbel_max_with_the_temperature():
    logits = np.random.default_rng(2).normal(size=(4, 6, 9)).astype(np.float32)
    for tau in (0.3, 1.0, 2.5):
        got = sample_tokens(logits, backend.Generator(7), temperature=tau)
        noise = backend.Generator(7).gumbel(logits.shape, dtype=np.float32)
        assert got.shape == (4, 6)
        assert np.array_equal(got, np.argmax(logits + tau * noise, axis=-1))


def test_ch07_ex2_samples_follow_softmax_of_logits_over_temperature():
    row = np.array([1.0, 0.2, -0.5, 0.8], np.float32)
    logits = np.tile(row, (40000, 1))
    for tau in (0.5, 2.0):
        got = sample_tokens(logits, backend.Generator(3), temperature=tau)
        share = np.bincount(got, minlength=4) / len(got)
        np.testing.assert_allclose(share, softmax(row / tau), atol=0.015)


def test_ch07_ex2_top_k_samples_among_the_k_likeliest_only():
    row = np.array([0.3, 2.0, -1.0, 1.5, 0.9, -0.2], np.float32)
    logits = np.tile(row, (30000, 1))
    got = sample_tokens(logits, backend.Generator(4), temperature=1.0, top_k=3)
    assert set(np.unique(got).tolist()) <= {1, 3, 4}
    kept = np.where(np.isin(np.arange(6), [1, 3, 4]), row, -np.inf)
    np.testing.assert_allclose(np.bincount(got, minlength=6) / len(got), softmax(kept),
                               atol=0.015)
    varied = np.random.default_rng(5).normal(size=(50, 8)).astype(np.float32)
    assert np.array_equal(sample_tokens(varied, backend.Generator(6), temperature=3.0, top_k=1),
                          varied.argmax(-1))
    # k at least K: all codes are candidates, as without top-k.
    noise = backend.Generator(8).gumbel(varied.shape, dtype=np.float32)
    assert np.array_equal(sample_tokens(varied, backend.Generator(8), temperature=1.0, top_k=8),
                          np.argmax(varied + noise, axis=-1))


# --------------------------------------------------------------------------- #
# ch07_ex3 — the confidence, with annealed Gumbel noise
# --------------------------------------------------------------------------- #

def test_ch07_ex3_the_choice_noise_falls_linearly_to_zero():
    for steps, choice in ((8, 4.5), (12, 1.0), (1, 3.0)):
        got = [_choice_scale(t, steps, choice) for t in range(steps)]
        want = [choice * (steps - 1 - t) / steps for t in range(steps)]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
        assert got[-1] == 0
    assert _choice_scale(0, 4, 0.0) == 0


def setting(seed=0):
    """A grid of 3 rows × 10 positions with some still masked, and a step's samples there."""
    rng = np.random.default_rng(seed)
    masked = rng.random((3, 10)) < 0.6
    masked[:, :6] = True                                 # at least six masked per row
    rows, cols = np.nonzero(masked)
    logits = rng.normal(0, 2, (len(rows), 5))
    sampled = rng.integers(0, 5, len(rows))
    counts = np.array([1, 3, 5])
    return masked, rows, cols, logits, sampled, counts


def expected_mask(confidence_at, masked, rows, cols, counts):
    """Per row, the counts[b] lowest confidences among the positions just sampled."""
    confidence = np.full(masked.shape, np.inf)
    confidence[rows, cols] = confidence_at
    want = np.zeros(masked.shape, bool)
    for b, count in enumerate(counts):
        want[b, np.argsort(confidence[b], kind="stable")[:count]] = True
    return want


def log_prob(logits, ids):
    shifted = logits - logits.max(-1, keepdims=True)
    log_p = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    return log_p[np.arange(len(ids)), ids]


def test_ch07_ex3_without_noise_the_least_likely_samples_are_masked_again():
    masked, rows, cols, logits, sampled, counts = setting()
    generator = backend.Generator(0)
    got = _least_confident(logits, sampled, rows, cols, masked.shape, counts, 0.0, generator)
    assert got.shape == masked.shape and got.dtype == bool
    assert np.array_equal(got, expected_mask(log_prob(logits, sampled), masked, rows, cols,
                                             counts))
    assert (got.sum(axis=1) == counts).all() and not (got & ~masked).any()
    assert generator.random((3,)).tolist() == backend.Generator(0).random((3,)).tolist()


def test_ch07_ex3_gumbel_noise_scaled_by_the_choice_temperature():
    for seed in range(4):
        masked, rows, cols, logits, sampled, counts = setting(seed)
        for scale in (0.5, 4.5):
            got = _least_confident(logits, sampled, rows, cols, masked.shape, counts, scale,
                                   backend.Generator(seed))
            noise = backend.Generator(seed).gumbel((len(rows),), dtype=np.float64)
            want = expected_mask(log_prob(logits, sampled) + scale * noise, masked, rows, cols,
                                 counts)
            assert np.array_equal(got, want), (seed, scale)
            assert (got.sum(axis=1) == counts).all() and not (got & ~masked).any()


# --------------------------------------------------------------------------- #
# ch07_ex4 — classifier-free guidance and its ramp
# --------------------------------------------------------------------------- #

def test_ch07_ex4_the_guidance_scale_constant_or_rising_linearly():
    assert [guidance_scale_at(t, 8, 2.0, "linear") for t in range(8)] == \
        [0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    for steps, scale in ((5, 3.0), (24, 2.0), (1, 1.5)):
        ramp = [guidance_scale_at(t, steps, scale, "linear") for t in range(steps)]
        np.testing.assert_allclose(ramp, scale * np.arange(1, steps + 1) / steps, rtol=1e-12)
        assert [guidance_scale_at(t, steps, scale, "constant") for t in range(steps)] == \
            [scale] * steps
    assert isinstance(guidance_scale_at(0, 4, 2, "constant"), float)
    with pytest.raises(ValueError, match="guidance schedule"):
        guidance_scale_at(0, 4, 2.0, "cosine")


def guidance_case(seed=0):
    rng = np.random.default_rng(seed)
    cond, uncond = rng.normal(size=(2, 3, 6, 5)).astype(np.float32)
    tokens = np.zeros((3, 6), np.int64)
    rows, cols = np.nonzero(rng.random((3, 6)) < 0.5)
    return tokens, rows, cols, cond, uncond


def test_ch07_ex4_guided_logits_push_away_from_the_unconditional():
    tokens, rows, cols, cond, uncond = guidance_case()
    calls = []

    def logits_fn(tokens, condition):   # the "condition" is the logits themselves
        calls.append(condition)
        return condition.copy()

    for scale in (0.5, 2.0, 7.0):
        calls.clear()
        got = _guided_logits(logits_fn, tokens, rows, cols, cond, uncond, scale, None)
        want = (1 + scale) * cond[rows, cols] - scale * uncond[rows, cols]
        assert got.shape == (len(rows), 5)
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
        assert len(calls) == 2
    # A negative prompt is just another unconditional branch: swapping the roles flips it.
    swapped = _guided_logits(logits_fn, tokens, rows, cols, uncond, cond, 1.0, None)
    np.testing.assert_allclose(swapped, 2 * uncond[rows, cols] - cond[rows, cols], atol=1e-5)


def test_ch07_ex4_guidance_on_one_batch_of_two_b_rows():
    tokens, rows, cols, cond, uncond = guidance_case(1)
    calls = []

    def logits_fn(tokens, condition):
        calls.append(tokens.shape)
        return condition.copy()

    got = _guided_logits(logits_fn, tokens, rows, cols, cond, uncond, 3.0,
                         lambda c, u: np.concatenate([c, u]))
    assert calls == [(6, 6)]
    np.testing.assert_allclose(got, 4 * cond[rows, cols] - 3 * uncond[rows, cols],
                               rtol=1e-5, atol=1e-5)
