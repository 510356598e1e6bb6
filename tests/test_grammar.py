"""The caption grammar: every caption it writes parses back, and nothing else parses."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse.data.grammar import (
    CaptionSyntaxError,
    UnknownWordError,
    check_words,
    known_words,
    parse_caption,
    write_caption,
)
from tinymuse.data.shapes import sample_text
from tinymuse.data.spec import GlyphSpec, ObjectSpec, SceneSpec
from tinymuse.data.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    GLYPHS,
    HELDOUT_RELATION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
)

objects = st.builds(
    ObjectSpec,
    st.sampled_from(SHAPES),
    st.sampled_from(list(COLOURS)),
    st.none() | st.sampled_from(list(SIZES)),
)
backgrounds = st.none() | st.sampled_from(list(BACKGROUNDS))
groups = st.builds(
    lambda obj, n, bg: SceneSpec((obj,) * n, background=bg), objects, st.integers(1, 4), backgrounds
)
relations = st.builds(
    lambda a, b, r, bg: SceneSpec((a, b), r, background=bg),
    objects,
    objects,
    st.sampled_from(RELATIONS),
    backgrounds,
)
glyphs = st.builds(
    lambda c, colour, bg: SceneSpec(glyph=GlyphSpec(c, colour), background=bg),
    st.sampled_from(GLYPHS),
    st.sampled_from(list(COLOURS)),
    backgrounds,
)
specs = groups | relations | glyphs


@settings(max_examples=50, deadline=None)
@given(spec=specs, seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "all"]))
def test_every_caption_parses_back_to_its_spec(spec, seed, split):
    caption = write_caption(spec, np.random.default_rng(seed), split)
    assert parse_caption(caption) == spec


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), split=st.sampled_from(["train", "heldout", "all"]))
def test_dataset_captions_parse_back_to_their_specs(seed, split):
    spec, caption = sample_text(np.random.default_rng(seed), split)
    assert parse_caption(caption) == spec


def test_captions_vary_in_wording():
    spec = SceneSpec((ObjectSpec("circle", "red"),))
    rng = np.random.default_rng(0)
    wordings = {write_caption(spec, rng) for _ in range(200)}
    assert {"a red circle", "one red circle", "a circle in red"} <= wordings
    relation = SceneSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "blue")), "left of")
    captions = [write_caption(relation, rng, "train") for _ in range(200)]
    phrasings = {c.split("red circle ")[1].split(" a blue square")[0] for c in captions}
    assert phrasings == {"to the left of", "left of", "on the left of"}  # not "to the left side of"
    assert not set(phrasings) & set(HELDOUT_RELATION_PHRASES)


@pytest.mark.parametrize(
    "caption, expected",
    [
        ("a red circle", SceneSpec((ObjectSpec("circle", "red"),))),
        ("one red circle", SceneSpec((ObjectSpec("circle", "red"),))),
        ("two small blue squares", SceneSpec((ObjectSpec("square", "blue", "small"),) * 2)),
        (
            "a green triangle to the left of a yellow circle",
            SceneSpec((ObjectSpec("triangle", "green"), ObjectSpec("circle", "yellow")), "left of"),
        ),
        (
            "a red square on a black background",
            SceneSpec((ObjectSpec("square", "red"),), background="black"),
        ),
        ("the letter K in blue", SceneSpec(glyph=GlyphSpec("K", "blue"))),
        (
            "An orange number 7 on gray.",
            SceneSpec(glyph=GlyphSpec("7", "orange"), background="gray"),
        ),
        ("the letter k in red", SceneSpec(glyph=GlyphSpec("K", "red"))),
        (
            "a picture of three large circles in purple against a white background",
            SceneSpec((ObjectSpec("circle", "purple", "large"),) * 3, background="white"),
        ),
        (
            "a small red circle under a large blue square",
            SceneSpec(
                (ObjectSpec("circle", "red", "small"), ObjectSpec("square", "blue", "large")),
                "below",
            ),
        ),
        ("an red circle", SceneSpec((ObjectSpec("circle", "red"),))),  # a/an are one word
    ],
)
def test_parse_examples(caption, expected):
    assert parse_caption(caption) == expected


def test_unknown_words_are_named_and_the_known_ones_listed():
    with pytest.raises(UnknownWordError) as info:
        parse_caption("a pink circle")
    error = info.value
    assert error.word == "pink"
    message = str(error)
    assert "'pink'" in message
    for word in ("red", "circle", "triangle", "background", "left"):
        assert word in message
    assert isinstance(error, ValueError)
    with pytest.raises(UnknownWordError, match="'hexagons'"):
        check_words("two red hexagons")
    check_words("the letter Q in blue")  # glyph names are words too


@pytest.mark.parametrize(
    "caption, complaint",
    [
        ("red a circle", "count"),
        ("two red circle", "'circles' to agree"),
        ("a red circles", "'circle' to agree"),
        ("a red", "shape"),
        ("a red circle blue", "end of the caption"),
        ("a circle in red left of a blue square", "before a relation"),
        ("two red circles above a blue square", "before a relation"),
        ("a red circle above a square", "colour"),
        ("the letter 7 in red", "capital letter"),
        ("the digit K in red", "digit"),
        ("a red circle on a black", "end of the caption"),
        ("the letter K blue", "'in'"),
        ("", "empty"),
        ("a picture of", "count"),
    ],
)
def test_known_words_in_a_wrong_order_are_rejected(caption, complaint):
    with pytest.raises(CaptionSyntaxError, match=complaint):
        parse_caption(caption)


def test_known_words_cover_the_vocabulary():
    words = set(known_words())
    assert set(COLOURS) | set(SHAPES) | set(BACKGROUNDS) | set(SIZES) <= words
    assert {"circles", "squares", "triangles", "one", "four", "above", "below"} <= words


def test_a_group_of_unlike_objects_cannot_be_captioned():
    spec = SceneSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "blue")))
    with pytest.raises(ValueError, match="alike"):
        write_caption(spec, np.random.default_rng(0))


def test_written_form_leaves_written_captions_alone_and_writes_the_rest_so():
    from tinymuse.data import shapes_captions, written_form

    for caption in shapes_captions(2000, seed=5):
        assert written_form(caption) == caption
    assert written_form("A Red Circle.") == "a red circle"
    assert written_form("  THE LETTER k in Blue ") == "the letter K in blue"
    assert written_form("the digit 7 in red") == "the digit 7 in red"
    assert written_form("a green letter q") == "a green letter Q"
