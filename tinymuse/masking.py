"""Masking: how many image tokens to hide, and which ones.

Muse (like MaskGIT before it) learns to fill in hidden tokens. An image is a grid
of ``N`` discrete tokens; some are replaced by a special ``mask_id`` and the
transformer predicts the originals. How many are hidden is set by a *mask
schedule* ``γ``: a function from a ratio ``r ∈ [0, 1]`` to the fraction of
tokens that are masked, with

    γ(0) = 1  (everything masked),   γ(1) = 0  (nothing masked),

falling monotonically in between. The same ``γ`` is used twice:

- **training** draws ``r ~ U[0, 1)`` for each image and masks ``⌈γ(r)·N⌉`` of
  its tokens (at least one), chosen uniformly at random
  (:func:`sample_training_mask`);
- **decoding** runs ``T`` steps; after step ``t`` (counting from 0) about
  ``γ((t+1)/T)`` of the tokens are still masked, reaching none after the last
  step (:func:`decoding_schedule` gives the exact counts).

Schedules work on Python floats and on NumPy or CuPy arrays alike.
"""
from __future__ import annotations

import math

import numpy as np

from . import backend
from .backend import get_array_module

# --------------------------------------------------------------------------- #
# Schedules γ(r): ratio in [0, 1] -> fraction of tokens masked.
# --------------------------------------------------------------------------- #


def cosine(r):
    """γ(r) = cos(π r / 2): MaskGIT's choice (§3.2), also Muse's (§2.3).

    Concave: it stays near 1 for small ``r``, so decoding reveals only a few
    tokens in its first steps, while the model still knows least.
    """
    xp = get_array_module(r)
    # cos(π r / 2) written as sin(π (1 - r) / 2): the same curve, but exactly 0 at
    # r = 1 (cos(π / 2) rounds to a tiny nonzero, in float32 even a negative one).
    return xp.sin((0.5 * math.pi) * (1 - r))


def linear(r):
    """γ(r) = 1 − r: the same number of tokens revealed at every step."""
    return 1 - r


def square(r):
    """γ(r) = 1 − r²: concave, a gentler cousin of the cosine."""
    return 1 - r * r


def cubic(r):
    """γ(r) = 1 − r³: concave, reveals even fewer tokens early than ``square``."""
    return 1 - r * r * r


def square_root(r):
    """γ(r) = 1 − √r: convex, reveals many tokens in the first steps."""
    return 1 - get_array_module(r).sqrt(r)


def logarithmic(r):
    """γ(r) = 1 − log₂(1 + r): convex, like ``square_root`` but milder.

    MaskGIT's code writes its "log" schedule as ``-log2(r) / log2(N)`` clipped
    to 1, which depends on the token count ``N``; this form has the same convex
    shape with no extra argument, and exact end points γ(0) = 1, γ(1) = 0.
    """
    return 1 - get_array_module(r).log2(1 + r)


SCHEDULES = {
    "cosine": cosine,
    "linear": linear,
    "square": square,
    "cubic": cubic,
    "sqrt": square_root,
    "log": logarithmic,
}


def get_schedule(schedule):
    """The schedule function for a name in :data:`SCHEDULES` (a function passes through).

    >>> get_schedule("linear")(0.25)
    0.75
    """
    if callable(schedule):
        return schedule
    try:
        return SCHEDULES[schedule]
    except (KeyError, TypeError):
        raise ValueError(f"unknown mask schedule {schedule!r}; choose one of "
                         f"{sorted(SCHEDULES)} or pass a function r -> fraction masked") from None


# --------------------------------------------------------------------------- #
# Training: random masks.
# --------------------------------------------------------------------------- #


def training_mask_counts(fraction, num_tokens: int):
    """How many of ``num_tokens`` to mask for a masked fraction: ``⌈fraction·N⌉``,
    clipped to ``[1, N]`` so that every example has something to predict."""
    # BEGIN EXERCISE ch06_ex1
    xp = get_array_module(fraction)
    counts = xp.ceil(xp.asarray(fraction) * num_tokens)
    return xp.clip(counts, 1, num_tokens).astype(np.int64)
    # END EXERCISE


def random_mask(counts, num_tokens: int, generator: backend.Generator | None = None, *,
                allowed=None, device: str | None = None):
    """A boolean mask ``(B, N)`` with exactly ``counts[b]`` True entries in row ``b``,
    placed uniformly at random (among the ``allowed`` positions, if given).

    Every position gets a random score; the ``counts[b]`` smallest scores of a
    row are masked. Ranking (rather than thresholding the scores) makes the
    count exact even when two scores tie. Draws one ``generator.random((B, N))``.
    """
    generator = generator or backend.default_generator
    if not hasattr(counts, "shape"):
        counts = np.asarray(counts)
    if allowed is not None:
        device = backend.device_of(allowed)
    elif device is None:
        device = backend.device_of(counts)
    xp = backend.xp_for(device)
    counts = backend.to_device(counts, device).astype(np.int64, copy=False)
    if counts.ndim != 1:
        raise ValueError(f"counts must be one number per row, shape (B,); got shape {counts.shape}")
    batch = counts.shape[0]
    available = num_tokens if allowed is None else allowed.sum(axis=1)
    if allowed is not None and allowed.shape != (batch, num_tokens):
        raise ValueError(f"allowed must have shape {(batch, num_tokens)}; got {allowed.shape}")
    if bool(xp.any(counts < 0)) or bool(xp.any(counts > available)):
        raise ValueError(f"counts must lie between 0 and the number of "
                         f"{'allowed ' if allowed is not None else ''}positions per row; "
                         f"got counts {backend.to_numpy(counts).tolist()}")
    scores = generator.random((batch, num_tokens), dtype=np.float64, device=device)
    if allowed is not None:
        scores = xp.where(allowed, scores, 2.0)  # above every random score: chosen last
    ranks = xp.argsort(xp.argsort(scores, axis=1), axis=1)  # rank of each position in its row
    return ranks < counts[:, None]


def sample_training_mask(batch: int, num_tokens: int, generator: backend.Generator | None = None,
                         schedule="cosine", *, device: str | None = None):
    """Masks for one training batch: a boolean array ``(batch, num_tokens)``, True = masked.

    For each row, draw ``r ~ U[0, 1)`` and mask ``⌈γ(r)·N⌉`` tokens (at least 1,
    at most ``N``) chosen uniformly at random. The random draws are, in order,
    ``generator.random((batch,))`` for the ratios ``r`` and then
    ``generator.random((batch, N))`` for the positions (see :func:`random_mask`).
    """
    generator = generator or backend.default_generator
    # BEGIN EXERCISE ch06_ex1
    ratios = generator.random((batch,), dtype=np.float64, device=device)
    counts = training_mask_counts(get_schedule(schedule)(ratios), num_tokens)
    return random_mask(counts, num_tokens, generator, device=backend.device_of(ratios))
    # END EXERCISE


def apply_mask(tokens, mask, mask_id: int):
    """A copy of ``tokens`` with ``mask_id`` wherever ``mask`` is True."""
    if mask.shape != tokens.shape:
        raise ValueError(f"mask shape {mask.shape} must equal tokens shape {tokens.shape}")
    return get_array_module(tokens).where(mask, mask_id, tokens).astype(tokens.dtype, copy=False)


# --------------------------------------------------------------------------- #
# Decoding: how many tokens stay masked after each step.
# --------------------------------------------------------------------------- #


def decoding_schedule(total_steps: int, num_masked, schedule="cosine") -> np.ndarray:
    """Tokens still masked after each of ``T = total_steps`` decoding steps.

    With ``M`` tokens masked at the start, the schedule proposes
    ``f_t = ⌊M · γ((t+1)/T)⌋`` after step ``t`` (t = 0 … T−1), and MaskGIT's
    clamps turn that into the count ``m_t`` actually kept masked:

        m_{−1} = M,
        m_t    = max(1, min(m_{t−1} − 1, f_t))   for t < T − 1 (and m_{t−1} ≥ 1),
        m_{T−1} = 0.

    So every step reveals at least one token, and at least one token is left
    for the final step, which reveals all that remain. When the two rules clash
    (one token left before the last step: always when ``M < T``, sometimes with
    a convex schedule that reveals many tokens early) keeping one wins: the
    count stays at 1 until the last step. A row with ``M = 0`` stays at 0.
    Counts never increase.

    ``num_masked`` is a number or an integer array (one ``M`` per row); the
    result has shape ``(T,) + shape(num_masked)``, as a NumPy int64 array
    (counts are bookkeeping, computed on the host).
    """
    if int(total_steps) != total_steps or total_steps < 1:
        raise ValueError(f"total_steps must be a positive integer; got {total_steps!r}")
    gamma = get_schedule(schedule)
    start = np.asarray(backend.to_numpy(num_masked), dtype=np.int64)
    if np.any(start < 0):
        raise ValueError(f"num_masked must be >= 0; got {start.tolist()}")
    # BEGIN EXERCISE ch07_ex1
    counts = np.zeros((total_steps,) + start.shape, dtype=np.int64)
    previous = start
    for t in range(total_steps - 1):
        # + 1e-9 absorbs rounding: 2 · γ(2/3) must count as 1, not 0.999… -> 0.
        proposed = np.floor(start * float(gamma((t + 1) / total_steps)) + 1e-9).astype(np.int64)
        current = np.maximum(1, np.minimum(previous - 1, proposed))
        previous = counts[t] = np.minimum(previous, current)  # a row at 0 stays at 0
    return counts
    # END EXERCISE


def masked_count(step: int, total_steps: int, num_masked_initially, schedule="cosine"):
    """Tokens still masked after decoding step ``step`` (0-based) of ``total_steps``.

    One entry of :func:`decoding_schedule`, whose docstring gives the formula:
    roughly ``⌊M · γ((step+1)/T)⌋``, at least one revealed per step, none left
    after the last. An int for a scalar ``num_masked_initially``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step must be in [0, {total_steps}); got {step}")
    count = decoding_schedule(total_steps, num_masked_initially, schedule)[step]
    return int(count) if count.ndim == 0 else count
