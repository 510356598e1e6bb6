"""Chapter 10's exercises (tutorials/10-evaluation.md): the relation read from two centres,
the oracle's per-attribute averaging, a score's error bars (the standard error and the Wilson
interval), and the paired difference of two scores on the same prompts. Every test checks
against a reference written here (simulation, brute force, a quadratic's roots, angles) and
touches no picture."""
import math
from types import SimpleNamespace

import numpy as np
from hypothesis import assume, given, settings, strategies as st

from tinymuse.evaluate.oracle import ATTRIBUTES, OracleReport, _relation_holds, \
    attribute_accuracy
from tinymuse.evaluate.stats import paired_difference, standard_error, wilson_interval

PROPERTY = settings(max_examples=60, deadline=None)


# --------------------------------------------------------------------------- #
# ch10_ex1: a relation from two centres.
# --------------------------------------------------------------------------- #

SIDES = {"left of": 0.0, "above": 90.0, "right of": 180.0, "below": -90.0}


def by_angle(first, second, relation):
    """first is `relation` second when the direction from first to second lies within 45° of
    the relation's direction (x to the right, y down the picture, as pixel rows go)."""
    angle = math.degrees(math.atan2(second.y - first.y, second.x - first.x))
    off = (angle - SIDES[relation] + 180.0) % 360.0 - 180.0
    return abs(off) < 45.0


centre = st.integers(0, 64).map(lambda v: v / 64)


@PROPERTY
@given(centre, centre, centre, centre)
def test_ch10_ex1_the_relation_follows_the_direction_between_the_centres(x1, y1, x2, y2):
    first, second = SimpleNamespace(x=x1, y=y1), SimpleNamespace(x=x2, y=y2)
    assume(abs(abs(x2 - x1) - abs(y2 - y1)) > 1e-9)     # not exactly on a diagonal
    verdicts = {r: _relation_holds(first, second, r) for r in SIDES}
    assert verdicts == {r: by_angle(first, second, r) for r in SIDES}
    assert sum(verdicts.values()) == (0 if (x1, y1) == (x2, y2) else 1)   # exactly one side
    assert verdicts["left of"] == _relation_holds(second, first, "right of")
    assert verdicts["above"] == _relation_holds(second, first, "below")


def test_ch10_ex1_rows_grow_down_the_picture_and_diagonals_hold_no_relation():
    top, bottom = SimpleNamespace(x=0.5, y=0.2), SimpleNamespace(x=0.55, y=0.8)
    assert _relation_holds(top, bottom, "above") and _relation_holds(bottom, top, "below")
    assert not _relation_holds(top, bottom, "below")
    left, right = SimpleNamespace(x=0.1, y=0.5), SimpleNamespace(x=0.9, y=0.3)
    assert _relation_holds(left, right, "left of") and not _relation_holds(left, right, "above")
    corner = SimpleNamespace(x=0.75, y=0.75)
    assert not any(_relation_holds(SimpleNamespace(x=0.25, y=0.25), corner, r) for r in SIDES)


# --------------------------------------------------------------------------- #
# ch10_ex2: one accuracy per attribute.
# --------------------------------------------------------------------------- #

verdicts = st.sampled_from([True, False, None])


@PROPERTY
@given(st.lists(st.fixed_dictionaries({name: verdicts for name in ATTRIBUTES}), min_size=1,
                max_size=12))
def test_ch10_ex2_each_attribute_is_averaged_over_the_prompts_that_state_it(rows):
    reports = [OracleReport(**row) for row in rows]
    table = np.array([[np.nan if row[a] is None else float(row[a]) for a in ATTRIBUTES]
                      for row in rows])                 # NaN: not stated
    every = np.array([all(v for v in row.values() if v is not None) for row in rows])
    want = {a: np.nanmean(table[:, i]) for i, a in enumerate(ATTRIBUTES)
            if not np.isnan(table[:, i]).all()}
    want["all"] = every.mean()
    got = attribute_accuracy(iter(reports))             # any iterable, read once
    assert list(got) == list(want)                      # ATTRIBUTES' order, then "all"
    for name, value in want.items():
        assert math.isclose(got[name], value, rel_tol=1e-12), name


def test_ch10_ex2_a_glyph_set_and_a_relation_set():
    glyphs = [OracleReport(colour=True, glyph=False), OracleReport(colour=True, glyph=True),
              OracleReport(background=False, colour=False, glyph=True)]
    assert attribute_accuracy(glyphs) == {"background": 0.0, "colour": 2 / 3, "glyph": 2 / 3,
                                          "all": 1 / 3}
    pair = [OracleReport(count=True, colour=True, shape=True, relation=False),
            OracleReport(count=True, colour=True, shape=True, relation=True, size=True)]
    assert attribute_accuracy(pair) == {"count": 1.0, "colour": 1.0, "shape": 1.0, "size": 1.0,
                                        "relation": 0.5, "all": 0.5}


# --------------------------------------------------------------------------- #
# ch10_ex3: a score's error bar.
# --------------------------------------------------------------------------- #


def test_ch10_ex3_the_standard_error_is_the_scatter_of_simulated_scores():
    rng = np.random.default_rng(0)
    for p, n in [(0.85, 32), (0.5, 8), (0.1, 100), (0.97, 25)]:
        scores = rng.binomial(n, p, size=200_000) / n   # many prompt sets of n prompts
        assert math.isclose(standard_error(p, n), scores.std(), rel_tol=0.01), (p, n)
    assert standard_error(1.0, 8) == 0.0 and standard_error(0.0, 5) == 0.0
    assert math.isclose(standard_error(0.875, 32), 0.05846339666834283, rel_tol=1e-12)


def wilson_by_roots(k, n, z):
    """The Wilson interval as its definition: the p with (p̂ − p)² = z²·p(1 − p)/n."""
    p = k / n
    a = 1 + z * z / n
    roots = np.roots([a, -(2 * p + z * z / n), p * p]).real
    return roots.min(), roots.max()


@PROPERTY
@given(n=st.integers(1, 500), data=st.data(), z=st.sampled_from([1.0, 1.645, 1.96, 2.576]))
def test_ch10_ex3_the_wilson_interval_holds_the_p_within_z_errors(n, data, z):
    k = data.draw(st.integers(0, n))
    low, high = wilson_interval(k, n, z)
    want_low, want_high = wilson_by_roots(k, n, z)
    assert math.isclose(low, want_low, abs_tol=1e-6) and math.isclose(high, want_high,
                                                                      abs_tol=1e-6)
    assert 0.0 <= low and high <= 1.0                   # never outside [0, 1]
    assert low <= k / n + 1e-12 and k / n - 1e-12 <= high
    assert high - low > 0                               # a width even at 0 or n of n


def test_ch10_ex3_the_chapters_examples():
    low, high = wilson_interval(8, 8)                   # held-out single objects: 8 of 8
    assert round(low, 2) == 0.68 and math.isclose(high, 1.0, rel_tol=1e-12)
    low, high = wilson_interval(28, 32)                 # narrower on the side near 1
    assert 0.70 < low < 0.72 and 0.95 < high < 0.96
    low, high = wilson_interval(0, 10)                  # 0 of 10 mirrors 10 of 10
    assert math.isclose(low, 0.0, abs_tol=1e-12)
    assert math.isclose(high, 1 - wilson_interval(10, 10)[0], rel_tol=1e-12)


# --------------------------------------------------------------------------- #
# ch10_ex4: the paired difference.
# --------------------------------------------------------------------------- #


@PROPERTY
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=60))
def test_ch10_ex4_the_mean_difference_and_its_standard_error(pairs):
    first, second = (np.array(column, bool) for column in zip(*pairs))
    per_prompt = first.astype(float) - second.astype(float)         # +1, 0 or −1
    difference, error = paired_difference(list(first), list(second))
    assert math.isclose(difference, per_prompt.mean(), abs_tol=1e-12)
    assert math.isclose(error, per_prompt.std() / math.sqrt(len(pairs)), abs_tol=1e-9)
    flipped, flipped_error = paired_difference(second, first)
    assert math.isclose(flipped, -difference, abs_tol=1e-12) and flipped_error == error


def test_ch10_ex4_the_chapters_numbers_and_agreement():
    # section 4, seed 0: 25 right in both, 3 wrong in both, 1 only the base, 3 only the cascade
    cascade = np.array([True] * 25 + [False] * 3 + [False] + [True] * 3)
    base = np.array([True] * 25 + [False] * 3 + [True] + [False] * 3)
    difference, error = paired_difference(cascade, base)
    assert f"{difference:+.3f} {error:.3f}" == "+0.062 0.062"
    same = np.array([True, False, True, True])
    assert paired_difference(same, same) == (0.0, 0.0)   # agreement carries no uncertainty
