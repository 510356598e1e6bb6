"""Chapter 3's exercises: the shapes world (tutorials/03-the-shapes-world.md).

Each test calls the exercised function directly and checks it against a reference written
here (lists of the phrasings the grammar allows, a loop over pixels, a flood fill), so the
exercises stay independent of each other: the writer's tests never parse, the parser's never
write, and the oracle's steps are tested one at a time on small arrays. Nothing here needs
the autograd engine.
"""
from collections import Counter, deque
from itertools import product

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinymuse.data import CaptionSyntaxError, ObjectSpec, SceneSpec, parse_caption
from tinymuse.data.grammar import _write_group
from tinymuse.data.perception import connected_components, foreground, mixing_lines
from tinymuse.data.vocabulary import BACKGROUNDS, COLOURS, SHAPES

NUMBER_WORDS = ("one", "two", "three", "four")   # the test's own, not the vocabulary's
VOWELS = set("aeiou")


# --------------------------------------------------------------------------- #
# ch03_ex1 — writing a group's caption
# --------------------------------------------------------------------------- #

def group_phrasings(obj, count):
    """Every caption the group rule may write, keyed by its form."""
    noun = obj.shape + ("s" if count > 1 else "")
    adjectives = f"{obj.size} " if obj.size else ""
    bodies = {"colour first": f"{adjectives}{obj.colour} {noun}",
              "colour after": f"{adjectives}{noun} in {obj.colour}"}
    out = {}
    for form, body in bodies.items():
        out[(form, "number")] = f"{NUMBER_WORDS[count - 1]} {body}"
        if count == 1:
            article = "an" if body[0] in VOWELS else "a"
            out[(form, "article")] = f"{article} {body}"
    return out


SIZES_OR_NONE = (None, "small", "large")


def test_ch03_ex1_every_group_caption_is_one_the_rule_allows():
    rng = np.random.default_rng(0)
    for shape, colour, size, count in product(SHAPES, COLOURS, SIZES_OR_NONE, range(1, 5)):
        obj = ObjectSpec(shape, colour, size)
        allowed = set(group_phrasings(obj, count).values())
        seen = {_write_group(obj, count, rng) for _ in range(200)}
        assert seen <= allowed, (obj, count, seen - allowed)
        # a single object may be written four ways, several objects two ways: all of them occur
        assert seen == allowed, (obj, count, allowed - seen)


def test_ch03_ex1_plural_and_article_agree():
    rng = np.random.default_rng(1)
    for _ in range(50):
        single = _write_group(ObjectSpec("circle", "orange"), 1, rng)
        assert single in {"an orange circle", "one orange circle", "a circle in orange",
                          "one circle in orange"}
        several = _write_group(ObjectSpec("triangle", "blue", "large"), 3, rng)
        assert several in {"three large blue triangles", "three large triangles in blue"}


def test_ch03_ex1_wording_frequencies_follow_the_grammar():
    """The colour comes after the shape a quarter of the time; a single object is counted
    with "one" (rather than an article) three times in ten."""
    rng = np.random.default_rng(2)
    obj = ObjectSpec("square", "red", "small")
    forms = {caption: form for form, caption in group_phrasings(obj, 1).items()}
    drawn = Counter(forms[_write_group(obj, 1, rng)] for _ in range(4000))
    after = sum(n for (order, _), n in drawn.items() if order == "colour after") / 4000
    numbered = sum(n for (_, counted), n in drawn.items() if counted == "number") / 4000
    assert abs(after - 0.25) < 0.03, after
    assert abs(numbered - 0.3) < 0.03, numbered
    plural = ObjectSpec("square", "red")
    forms = {caption: form for form, caption in group_phrasings(plural, 2).items()}
    drawn = Counter(forms[_write_group(plural, 2, rng)][0] for _ in range(4000))
    assert abs(drawn["colour after"] / 4000 - 0.25) < 0.03


def test_ch03_ex1_same_generator_same_caption():
    obj = ObjectSpec("triangle", "green", "small")
    first = [_write_group(obj, n, np.random.default_rng(7)) for n in range(1, 5)]
    again = [_write_group(obj, n, np.random.default_rng(7)) for n in range(1, 5)]
    assert first == again


# --------------------------------------------------------------------------- #
# ch03_ex2 — parsing an object phrase
# --------------------------------------------------------------------------- #

def test_ch03_ex2_parses_every_group_phrasing():
    """All group captions, written out here from the grammar's card, parse to their spec."""
    for shape, colour, size, count in product(SHAPES, COLOURS, SIZES_OR_NONE, range(1, 5)):
        obj = ObjectSpec(shape, colour, size)
        for caption in group_phrasings(obj, count).values():
            assert parse_caption(caption) == SceneSpec(objects=(obj,) * count), caption


@pytest.mark.parametrize("caption, objects, relation, background", [
    ("two small blue squares on a gray background",
     (ObjectSpec("square", "blue", "small"),) * 2, None, "gray"),
    ("A circle in red.", (ObjectSpec("circle", "red"),), None, None),
    ("an image of four large triangles in purple on black",
     (ObjectSpec("triangle", "purple", "large"),) * 4, None, "black"),
    ("a green triangle to the left side of a large yellow circle",
     (ObjectSpec("triangle", "green"), ObjectSpec("circle", "yellow", "large")), "left of", None),
    ("a small orange square under an orange circle against a white background",
     (ObjectSpec("square", "orange", "small"), ObjectSpec("circle", "orange")), "below", "white"),
])
def test_ch03_ex2_parses_objects_inside_whole_captions(caption, objects, relation, background):
    assert parse_caption(caption) == SceneSpec(objects, relation, None, background)


@pytest.mark.parametrize("caption", [
    "two red circle",                           # the noun must agree with the count
    "a red circles",
    "one small red",                            # no shape
    "three large",
    "a circle",                                 # no colour at all
    "a circle in",
    "a red in circle",
    "two circles in blue in red",
    "a red circle left of a circle in blue",    # after a relation: colour first only
    "a circle in red left of a blue square",    # before a relation too
])
def test_ch03_ex2_rejects_broken_object_phrases(caption):
    with pytest.raises(CaptionSyntaxError):
        parse_caption(caption)


# --------------------------------------------------------------------------- #
# ch03_ex3 — mixing lines and the foreground mask
# --------------------------------------------------------------------------- #

PALETTE = np.array(list(COLOURS.values()), dtype=np.float32)


def mixing_reference(offsets, directions):
    """One pixel and one line at a time: project, clip to the segment, measure the distance."""
    alpha = np.zeros((len(offsets), len(directions)))
    distance = np.zeros_like(alpha)
    for i, o in enumerate(offsets.astype(np.float64)):
        for k, d in enumerate(directions.astype(np.float64)):
            t = min(max(float(np.dot(o, d) / np.dot(d, d)), 0.0), 1.0)
            alpha[i, k] = t
            distance[i, k] = np.sqrt(((o - t * d) ** 2).sum())
    return alpha, distance


def test_ch03_ex3_mixing_lines_match_a_pixel_by_pixel_reference():
    rng = np.random.default_rng(0)
    for background in BACKGROUNDS.values():
        offsets = rng.uniform(0, 255, (50, 3)).astype(np.float32) - np.float32(background)
        directions = PALETTE - np.float32(background)
        alpha, residuals = mixing_lines(offsets, directions)
        want_alpha, want_residuals = mixing_reference(offsets, directions)
        assert alpha.shape == residuals.shape == (50, len(PALETTE))
        np.testing.assert_allclose(alpha, want_alpha, atol=1e-5)
        np.testing.assert_allclose(residuals, want_residuals, rtol=1e-4, atol=1e-3)


def test_ch03_ex3_a_mix_lies_on_its_own_line():
    background = np.float32(BACKGROUNDS["white"])
    directions = PALETTE - background
    coverage = np.array([0.0, 0.25, 0.5, 0.9, 1.0], dtype=np.float32)
    for k in range(len(PALETTE)):
        alpha, residuals = mixing_lines(coverage[:, None] * directions[k], directions)
        np.testing.assert_allclose(alpha[:, k], coverage, atol=1e-6)
        np.testing.assert_allclose(residuals[:, k], 0.0, atol=1e-3)
    # beyond the colour, or on the far side of the background, alpha is clipped
    alpha, _ = mixing_lines(np.stack([1.5 * directions[0], -directions[0]]), directions)
    assert alpha[0, 0] == 1.0 and alpha[1, 0] == 0.0


def image_of(pixels):
    return np.array(pixels, dtype=np.float32).reshape(1, -1, 3)


def test_ch03_ex3_foreground_is_at_least_half_covered():
    for background in BACKGROUNDS.values():
        bg = np.float32(background)
        mixes = [bg + a * (colour - bg) for colour in PALETTE for a in (1.0, 0.8, 0.55, 0.45, 0.2)]
        mask = foreground(image_of([bg, *mixes]), bg)
        assert mask.shape == (1, 1 + len(mixes)) and mask.dtype == bool
        want = [False] + [a > 0.5 for _ in PALETTE for a in (1.0, 0.8, 0.55, 0.45, 0.2)]
        assert mask[0].tolist() == want, background


def test_ch03_ex3_odd_colours_count_when_far_from_the_background():
    gray = np.float32(BACKGROUNDS["gray"])
    # dark cyan on gray: off every mixing line, less than half along the nearest one, far away
    # from the background: foreground. A faint tint of the same kind is not.
    mask = foreground(image_of([(64, 192, 192), (128, 100, 128), (128, 128, 128)]), gray)
    assert mask[0].tolist() == [True, False, False]
    # a 2x3 picture keeps its shape
    picture = np.broadcast_to(gray, (2, 3, 3)).copy()
    picture[1, 2] = PALETTE[0]
    assert foreground(picture, gray).tolist() == [[False, False, False], [False, False, True]]


# --------------------------------------------------------------------------- #
# ch03_ex4 — connected components (the oracle's count)
# --------------------------------------------------------------------------- #

def flood_fill(mask):
    """8-connected components by breadth-first search, numbered in reading order."""
    h, w = mask.shape
    labels = np.zeros((h, w), dtype=np.int64)
    n = 0
    for y, x in zip(*np.nonzero(mask)):
        if labels[y, x]:
            continue
        n += 1
        labels[y, x] = n
        queue = deque([(y, x)])
        while queue:
            cy, cx = queue.popleft()
            for ny in range(max(cy - 1, 0), min(cy + 2, h)):
                for nx in range(max(cx - 1, 0), min(cx + 2, w)):
                    if mask[ny, nx] and not labels[ny, nx]:
                        labels[ny, nx] = n
                        queue.append((ny, nx))
    return labels, n


def check_components(mask):
    labels, n = connected_components(mask)
    want, want_n = flood_fill(mask)
    assert labels.shape == mask.shape and n == want_n
    np.testing.assert_array_equal(labels, want)


def test_ch03_ex4_counts_blobs_diagonals_included():
    mask = np.zeros((6, 8), dtype=bool)
    mask[0, 0] = mask[1, 1] = True          # touch diagonally: one object
    mask[0, 3:6] = True
    mask[2, 5] = True                       # one row below, not touching
    mask[4:6, 0:3] = True
    mask[5, 7] = True
    labels, n = connected_components(mask)
    assert n == 5
    assert labels[0, 0] == labels[1, 1] == 1 and labels[0, 3] == 2 and labels[2, 5] == 3
    assert labels[4, 0] == 4 and labels[5, 7] == 5 and (labels[~mask] == 0).all()
    check_components(mask)


def test_ch03_ex4_empty_full_and_long_shapes():
    assert connected_components(np.zeros((5, 4), dtype=bool))[1] == 0
    assert (connected_components(np.zeros((5, 4), dtype=bool))[0] == 0).all()
    full, n = connected_components(np.ones((5, 4), dtype=bool))
    assert n == 1 and (full == 1).all()
    # a spiral: one long, winding object whose ends are far apart
    size = 33
    spiral = np.zeros((size, size), dtype=bool)
    top, left, bottom, right = 0, 0, size - 1, size - 1
    while top <= bottom and left <= right:
        spiral[top, left:right + 1] = spiral[top:bottom + 1, right] = True
        spiral[bottom, left:right + 1] = True
        spiral[top + 2:bottom + 1, left] = True
        top, left, bottom, right = top + 2, left + 2, bottom - 2, right - 2
        if top <= bottom:
            spiral[top, left - 1] = True   # the bridge into the next ring
    check_components(spiral)
    # a comb: many teeth hanging from one bar, and a second comb's teeth between them
    comb = np.zeros((12, 20), dtype=bool)
    comb[0, :] = True
    comb[1:10, ::4] = True
    comb[11, :] = True
    comb[3:11, 2::4] = True
    check_components(comb)
    assert connected_components(comb)[1] == 2


@settings(max_examples=150, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 12), st.integers(1, 12))))
def test_ch03_ex4_agrees_with_a_flood_fill(mask):
    check_components(mask)
