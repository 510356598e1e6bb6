"""Error bars for oracle scores: a score measured on ``n`` prompts is an estimate.

Each prompt's picture is right or wrong, so a score is a proportion ``p̂ = k/n``. If the
prompts are independent and the model gets each right with probability ``p``, ``k`` is
binomial and ``p̂`` scatters around ``p`` with the standard error ``√(p(1 − p)/n)``
(:func:`standard_error`). For small ``n`` or a score near 0 or 1 the normal interval
``p̂ ± 1.96·SE`` misbehaves (it leaves [0, 1]; at ``p̂ = 1`` it has no width), and the
Wilson interval (:func:`wilson_interval`) is the one to report. Two scores measured on the
*same* prompts are compared by their paired difference (:func:`paired_difference`), whose
standard error only the prompts on which they disagree enter. Chapter 10, section 3 and 4,
tells the whole story.
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["standard_error", "wilson_interval", "paired_difference"]


def _check_prompts(n) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n is the number of prompts a score was measured on, a whole number "
                         f">= 1; got {n!r}")


def standard_error(p: float, n: int) -> float:
    """The standard error ``√(p(1 − p)/n)`` of a proportion ``p`` (a score in [0, 1])
    measured on ``n`` independent prompts; ``p ± 1.96·SE`` is the normal approximation's 95%
    interval."""
    _check_prompts(n)
    if not 0 <= p <= 1:
        raise ValueError(f"p is a score, a proportion in [0, 1]; got {p!r}")
    # BEGIN EXERCISE ch10_ex3
    variance = p * (1 - p)  # of one prompt's verdict, a Bernoulli variable
    return math.sqrt(variance / n)
    # END EXERCISE


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of a proportion: ``successes`` of ``n``
    prompts right, ``z`` standard errors wide (1.96: 95%).

    It holds every ``p`` from which the observed ``p̂ = successes/n`` is at most ``z``
    standard errors *computed at p* away, ``(p̂ − p)² ≤ z²·p(1 − p)/n``; solving that
    quadratic in ``p`` gives

        centre = (p̂ + z²/2n) / (1 + z²/n),
        half-width = z/(1 + z²/n) · √( p̂(1 − p̂)/n + z²/4n² ).

    Unlike ``p̂ ± z·SE`` it never leaves [0, 1], and it has a width even at ``p̂ = 0`` or 1
    (8 of 8 right: about 0.68 to 1).
    """
    _check_prompts(n)
    if isinstance(successes, bool) or not isinstance(successes, (int, np.integer)) \
            or not 0 <= successes <= n:
        raise ValueError(f"successes is how many of the n={n} prompts were right, a whole "
                         f"number from 0 to {n}; got {successes!r}")
    if not z > 0:
        raise ValueError(f"z is a number of standard errors, > 0 (1.96 for 95%); got {z!r}")
    # BEGIN EXERCISE ch10_ex3
    p = successes / n
    spread = z * z / n
    centre = (p + spread / 2) / (1 + spread)
    half_width = z / (1 + spread) * math.sqrt(p * (1 - p) / n + spread / (4 * n))
    return max(0.0, centre - half_width), min(1.0, centre + half_width)
    # END EXERCISE


def paired_difference(first, second) -> tuple[float, float]:
    """The difference ``d̂ = p̂₁ − p̂₂`` of two scores measured on the same prompts, and its
    standard error.

    ``first`` and ``second`` are verdicts, one bool per prompt in the same order (the
    cascade's pictures and the base stage's of the same samples, say). Per prompt the
    difference is +1, 0 or −1; with ``c`` prompts right in ``first`` only and ``b`` in
    ``second`` only, ``d̂ = (c − b)/n`` and its standard error, that of a mean of ``n``
    differences, is

        SE = √( (b + c) − (c − b)²/n ) / n,

    smaller than the unpaired ``√(SE₁² + SE₂²)`` when most prompts are right (or wrong) in
    both: those add nothing to it.
    """
    first, second = np.asarray(first), np.asarray(second)
    if first.ndim != 1 or first.shape != second.shape or not len(first):
        raise ValueError(f"give two verdicts per prompt, two equally long lists of bools; got "
                         f"shapes {first.shape} and {second.shape}")
    if first.dtype != bool or second.dtype != bool:
        raise TypeError(f"verdicts are bools (right or wrong per prompt); got dtypes "
                        f"{first.dtype} and {second.dtype}")
    # BEGIN EXERCISE ch10_ex4
    n = len(first)
    only_first = int(np.count_nonzero(first & ~second))
    only_second = int(np.count_nonzero(second & ~first))
    net = only_first - only_second
    return net / n, math.sqrt(only_first + only_second - net * net / n) / n
    # END EXERCISE
