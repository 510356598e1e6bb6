"""The shapes world dataset: determinism, resolutions, scene layout and the held-out split."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse.data.render import render_scene
from tinymuse.data.shapes import ShapesDataset, sample_spec, sample_text, uses_heldout
from tinymuse.data.spec import (
    GAP,
    MARGIN,
    GlyphSpec,
    ObjectSpec,
    PlacedObject,
    Scene,
    SceneSpec,
    relation_holds,
    sample_scene,
)
from tinymuse.data.vocabulary import (
    BACKGROUNDS,
    COLOURS,
    HELDOUT_COMBINATIONS,
    HELDOUT_RELATION_PHRASES,
    SIZES,
)

seeds = st.integers(0, 2**32 - 1)
indices = st.integers(0, 10**9)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, index=indices, split=st.sampled_from(["train", "heldout", "all"]))
def test_the_same_seed_and_index_give_the_same_pair(seed, index, split):
    first = ShapesDataset(resolution=32, seed=seed, split=split)[index]
    again = ShapesDataset(resolution=32, seed=seed, split=split)[index]
    assert first[1] == again[1]
    np.testing.assert_array_equal(first[0], again[0])


def test_different_seeds_and_indices_give_different_pairs():
    captions = {ShapesDataset(seed=s).caption(i) for s in range(5) for i in range(20)}
    assert len(captions) > 80


@settings(max_examples=25, deadline=None)
@given(seed=seeds, index=indices)
def test_an_index_is_the_same_scene_at_every_resolution(seed, index):
    small = ShapesDataset(resolution=32, seed=seed).example(index)
    large = ShapesDataset(resolution=64, seed=seed).example(index)
    assert small.scene == large.scene and small.caption == large.caption
    assert small.image.shape == (32, 32, 3) and large.image.shape == (64, 64, 3)
    assert small.image.dtype == np.uint8
    # Averaging the 64x64 render's 2x2 blocks gives (nearly) the 32x32 render.
    shrunk = large.image.reshape(32, 2, 32, 2, 3).astype(np.float32).mean(axis=(1, 3))
    assert np.abs(shrunk - small.image).mean() < 2.0


def test_caption_without_drawing_matches_the_item():
    dataset = ShapesDataset(resolution=32, seed=3, split="heldout")
    for index in range(20):
        assert dataset.caption(index) == dataset[index][1]


def test_renders_are_anti_aliased():
    scene = Scene("white", objects=(PlacedObject("circle", "blue", "large", 0.5, 0.5),))
    image = render_scene(scene, 32)
    colours = {tuple(p) for p in image.reshape(-1, 3)}
    assert len(colours) > 5  # edge pixels are mixes, not just white and blue


def test_a_small_object_is_several_pixels_across_at_32():
    for shape in ("circle", "square", "triangle"):
        scene = Scene("black", objects=(PlacedObject(shape, "red", "small", 0.5, 0.5),))
        ink = render_scene(scene, 32).astype(int).sum(axis=-1) > 100
        rows, columns = np.nonzero(ink)
        assert rows.max() - rows.min() + 1 >= 6
        assert columns.max() - columns.min() + 1 >= 6


def test_a_glyph_is_drawn_large_and_in_its_colour():
    spec = SceneSpec(glyph=GlyphSpec("K", "green"), background="white")
    scene = sample_scene(spec, np.random.default_rng(0))
    image = render_scene(scene, 64)
    green = np.all(np.abs(image.astype(int) - COLOURS["green"]) < 10, axis=-1)
    rows = np.nonzero(green.any(axis=1))[0]
    assert rows.max() - rows.min() > 30  # over half the image tall
    assert np.all(image[0, 0] == BACKGROUNDS["white"])


@settings(max_examples=50, deadline=None)
@given(seed=seeds, split=st.sampled_from(["train", "all"]))
def test_sampled_scenes_fit_do_not_overlap_and_obey_their_relation(seed, split):
    rng = np.random.default_rng(seed)
    spec = sample_spec(rng, split)
    scene = sample_scene(spec, rng)
    assert scene.background == (spec.background or scene.background)
    assert len(scene.objects) == spec.count
    for obj in scene.objects:
        left, top, right, bottom = obj.box
        assert min(left, top) >= MARGIN - 1e-9 and max(right, bottom) <= 1 - MARGIN + 1e-9
    for i, a in enumerate(scene.objects):
        for b in scene.objects[i + 1 :]:
            apart = (a.extent + b.extent) / 2 + GAP - 1e-9
            assert abs(a.x - b.x) >= apart or abs(a.y - b.y) >= apart
    for stated, placed in zip(spec.objects, scene.objects):
        assert (placed.shape, placed.colour) == (stated.shape, stated.colour)
        assert stated.size in (None, placed.size)
    if spec.relation:
        a, b = scene.objects
        assert relation_holds((a.x, a.y, a.extent), (b.x, b.y, b.extent), spec.relation)


def test_four_large_objects_fit():
    spec = SceneSpec(objects=(ObjectSpec("square", "red", "large"),) * 4)
    for seed in range(20):
        scene = sample_scene(spec, np.random.default_rng(seed))
        assert [obj.size for obj in scene.objects] == ["large"] * 4


def test_heldout_combinations_and_phrasings_never_occur_in_training():
    rng = np.random.default_rng(0)
    seen_pairs, seen_sizes = set(), set()
    for _ in range(20000):
        spec, caption = sample_text(rng, "train")
        pairs = {(obj.colour, obj.shape) for obj in spec.objects}
        assert not pairs & set(HELDOUT_COMBINATIONS), caption
        assert not any(phrase in caption for phrase in HELDOUT_RELATION_PHRASES), caption
        seen_pairs |= pairs
        seen_sizes |= {obj.size for obj in spec.objects}
    # ...while every other pair does occur, so the test is not passing vacuously.
    assert len(seen_pairs) == len(COLOURS) * 3 - len(HELDOUT_COMBINATIONS)
    assert seen_sizes == {None, *SIZES}


def test_the_heldout_split_shows_only_heldout_examples_and_all_of_them():
    rng = np.random.default_rng(1)
    pairs, phrases = set(), set()
    for _ in range(3000):
        spec, caption = sample_text(rng, "heldout")
        assert uses_heldout(spec, caption)
        pairs |= {(o.colour, o.shape) for o in spec.objects} & set(HELDOUT_COMBINATIONS)
        phrases |= {p for p in HELDOUT_RELATION_PHRASES if p in caption}
    assert pairs == set(HELDOUT_COMBINATIONS)
    assert phrases == set(HELDOUT_RELATION_PHRASES)


def test_test_is_another_name_for_heldout():
    assert ShapesDataset(split="test").caption(4) == ShapesDataset(split="heldout").caption(4)
    with pytest.raises(ValueError, match="unknown split 'valid'.*train"):
        ShapesDataset(split="valid")


def test_an_infinite_dataset_has_no_length_but_a_finite_one_does():
    with pytest.raises(TypeError, match="length=N"):
        len(ShapesDataset())
    finite = ShapesDataset(resolution=16, length=3)
    assert len(finite) == 3
    assert finite[-1][1] == finite[2][1]
    with pytest.raises(IndexError):
        finite[3]
    assert len(list(finite)) == 3


def test_specs_reject_bad_values_with_clear_errors():
    with pytest.raises(ValueError, match="unknown colour 'pink'"):
        ObjectSpec("circle", "pink")
    with pytest.raises(ValueError, match="relation needs exactly 2 objects"):
        SceneSpec(objects=(ObjectSpec("circle", "red"),), relation="above")
    with pytest.raises(ValueError, match="at most 4 objects"):
        SceneSpec(objects=(ObjectSpec("circle", "red"),) * 5)
    with pytest.raises(ValueError, match="either"):
        SceneSpec()
    with pytest.raises(ValueError, match="resolution"):
        render_scene(Scene("white"), 0)
    with pytest.raises(ValueError, match="resolution"):
        ShapesDataset(resolution=4)


def test_the_single_world_shows_one_object_scenes_that_the_oracle_reads():
    from tinymuse.data import parse_caption, shapes_captions
    from tinymuse.evaluate import score_prompts

    dataset = ShapesDataset(resolution=32, seed=0, world="single", length=40)
    examples = [dataset.example(i) for i in range(len(dataset))]
    for index, example in enumerate(examples):
        assert example.spec.kind == "objects" and example.spec.count == 1, example.caption
        assert len(example.scene.objects) == 1 and example.scene.glyph is None
        assert parse_caption(example.caption) == example.spec, example.caption
        assert dataset.caption(index) == example.caption
    scores = score_prompts([e.caption for e in examples], np.stack([e.image for e in examples]))
    assert scores["all"] >= 0.95, scores
    for caption in shapes_captions(50, seed=3, world="single"):
        spec = parse_caption(caption)
        assert spec.count == 1 and spec.relation is None and spec.glyph is None, caption
    assert "world='single'" in repr(dataset) and "world" not in repr(ShapesDataset())


def test_the_single_world_keeps_the_heldout_split():
    train = ShapesDataset(resolution=16, seed=0, world="single")
    heldout = ShapesDataset(resolution=16, seed=0, world="single", split="heldout")
    for index in range(60):
        spec = heldout.example(index).spec
        assert (spec.objects[0].colour, spec.objects[0].shape) in HELDOUT_COMBINATIONS
        assert spec.count == 1
        example = train.example(index)
        assert not uses_heldout(example.spec, example.caption)


def test_the_centred_world_draws_the_single_worlds_scenes_near_the_middle():
    from tinymuse.data.spec import CENTRE_JITTER

    single = ShapesDataset(resolution=32, seed=0, world="single")
    centred = ShapesDataset(resolution=32, seed=0, world="centred")
    offsets = []
    for index in range(80):
        example = centred.example(index)
        assert example.caption == single.caption(index)   # the same captions, in order
        (obj,) = example.scene.objects
        offsets.append((obj.x - 0.5, obj.y - 0.5))
        assert (obj.shape, obj.colour) == (example.spec.objects[0].shape,
                                           example.spec.objects[0].colour)
    offsets = np.abs(np.array(offsets))
    assert offsets.max() <= CENTRE_JITTER
    # the single world's objects go anywhere inside the margin, so most are further out
    spread = [max(abs(single.example(i).scene.objects[0].x - 0.5),
                  abs(single.example(i).scene.objects[0].y - 0.5)) for i in range(80)]
    assert np.mean(np.array(spread) > CENTRE_JITTER) > 0.5
    heldout = ShapesDataset(resolution=16, seed=0, world="centred", split="heldout")
    spec = heldout.example(0).spec
    assert (spec.objects[0].colour, spec.objects[0].shape) in HELDOUT_COMBINATIONS
    two = SceneSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "blue")), "left of")
    with pytest.raises(ValueError, match="only a scene of one object can be centred"):
        sample_scene(two, np.random.default_rng(0), centred=True)


def test_the_full_world_is_the_default_and_unknown_worlds_are_refused():
    for index in range(20):
        default, full = ShapesDataset(32, seed=4), ShapesDataset(32, seed=4, world="full")
        assert default.caption(index) == full.caption(index)
    kinds = {ShapesDataset(32, seed=4).example(i).spec.kind for i in range(60)}
    assert kinds == {"objects", "relation", "glyph"}
    with pytest.raises(ValueError, match="world 'tiny'; choose one of: full, single"):
        ShapesDataset(32, world="tiny")
    with pytest.raises(ValueError, match="unknown shapes world"):
        sample_spec(np.random.default_rng(0), world="none")
