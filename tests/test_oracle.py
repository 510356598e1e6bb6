"""The shapes oracle: it passes the dataset's own renders and fails wrong pictures."""

from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse.data.images import to_model_images
from tinymuse.data.perception import connected_components, look
from tinymuse.data.render import render_scene
from tinymuse.data.shapes import ShapesDataset, sample_spec
from tinymuse.data.spec import GlyphSpec, ObjectSpec, PlacedObject, Scene, SceneSpec, sample_scene
from tinymuse.data.vocabulary import BACKGROUNDS, COLOURS, GLYPHS, RELATIONS, SHAPES
from tinymuse.evaluate import score_image, score_prompts


def degrade(image, rng, sigma=0.6, noise=4.0):
    """A mild Gaussian blur and noise, like a VQ reconstruction's."""
    x = image.astype(np.float32)
    taps = np.exp(-(np.arange(-2, 3) ** 2) / (2 * sigma**2))
    taps /= taps.sum()
    padded = np.pad(x, ((2, 2), (0, 0), (0, 0)), mode="edge")
    x = sum(t * padded[i : i + x.shape[0]] for i, t in enumerate(taps))
    padded = np.pad(x, ((0, 0), (2, 2), (0, 0)), mode="edge")
    x = sum(t * padded[:, i : i + x.shape[1]] for i, t in enumerate(taps))
    x = x + rng.normal(0.0, noise, x.shape)
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def accuracy(n, resolution, degraded, seed=123):
    dataset = ShapesDataset(resolution=resolution, seed=seed, split="all")
    passed = 0
    for index in range(n):
        example = dataset.example(index)
        image = example.image
        if degraded:
            image = degrade(image, np.random.default_rng(index))
        passed += score_image(example.spec, image).all
    return passed / n


@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("degraded", [False, True], ids=["clean", "blurred+noisy"])
def test_the_oracle_passes_the_datasets_own_renders(resolution, degraded):
    assert accuracy(300, resolution, degraded) >= 0.99


@pytest.mark.slow
@pytest.mark.parametrize("resolution", [32, 64])
@pytest.mark.parametrize("degraded", [False, True], ids=["clean", "blurred+noisy"])
def test_the_oracle_passes_the_datasets_own_renders_at_scale(resolution, degraded):
    assert accuracy(2000, resolution, degraded, seed=7) >= 0.99


def _other(options, *exclude):
    return [o for o in options if o not in exclude]


def perturb(spec, attribute, rng):
    """``spec`` with one stated ``attribute`` changed, keeping two related objects distinct."""
    choose = lambda options: options[rng.integers(len(options))]
    if attribute == "background":
        return SceneSpec(
            spec.objects,
            spec.relation,
            spec.glyph,
            choose(_other(list(BACKGROUNDS), spec.background)),
        )
    if spec.glyph is not None:
        char, colour = spec.glyph.char, spec.glyph.colour
        if attribute == "glyph":
            char = choose(_other(list(GLYPHS), char))
        else:
            colour = choose(_other(list(COLOURS), colour))
        return SceneSpec(glyph=GlyphSpec(char, colour), background=spec.background)
    objects = list(spec.objects)
    first = objects[0]
    if attribute == "count":
        count = spec.count + (
            1 if spec.count < 4 and (spec.count == 1 or rng.random() < 0.5) else -1
        )
        return SceneSpec((first,) * count, background=spec.background)
    if attribute == "relation":
        return SceneSpec(
            objects, choose(_other(list(RELATIONS), spec.relation)), background=spec.background
        )
    # Change an object whose attribute the caption states (any object states colour and shape).
    i = next(i for i, o in enumerate(objects) if attribute != "size" or o.size is not None)
    target = objects[i]
    taken = {(o.colour, o.shape) for j, o in enumerate(objects) if j != i}
    if attribute == "colour":
        colour = choose(
            [c for c in COLOURS if c != target.colour and (c, target.shape) not in taken]
        )
        objects[i] = ObjectSpec(target.shape, colour, target.size)
    elif attribute == "shape":
        shape = choose([s for s in SHAPES if s != target.shape and (target.colour, s) not in taken])
        objects[i] = ObjectSpec(shape, target.colour, target.size)
    elif attribute == "size":
        size = "small" if target.size == "large" else "large"
        objects[i] = ObjectSpec(target.shape, target.colour, size)
    return SceneSpec(tuple(objects), spec.relation, background=spec.background)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), resolution=st.sampled_from([32, 64]), data=st.data())
def test_the_oracle_rejects_a_render_with_one_attribute_changed(seed, resolution, data):
    rng = np.random.default_rng(seed)
    spec = sample_spec(rng, "all")
    truth = score_image(spec, render_scene(sample_scene(spec, rng), resolution))
    assert truth.all, truth
    attribute = data.draw(st.sampled_from(sorted(truth.checks)))
    wrong = perturb(spec, attribute, rng)
    report = score_image(spec, render_scene(sample_scene(wrong, rng), resolution))
    assert getattr(report, attribute) is False, (spec, wrong, report)
    assert not report.all


def test_a_swapped_relation_is_rejected():
    spec = SceneSpec((ObjectSpec("circle", "red"), ObjectSpec("square", "blue")), "left of")
    left = PlacedObject("circle", "red", "small", 0.25, 0.5)
    right = PlacedObject("square", "blue", "small", 0.75, 0.5)
    good = render_scene(Scene("white", (left, right)), 32)
    assert score_image(spec, good).relation is True
    swapped = Scene(
        "white",
        (
            PlacedObject("circle", "red", "small", 0.75, 0.5),
            PlacedObject("square", "blue", "small", 0.25, 0.5),
        ),
    )
    report = score_image(spec, render_scene(swapped, 32))
    assert report.relation is False and report.colour and report.shape and report.count


def test_blank_and_noise_images_are_rejected():
    rng = np.random.default_rng(0)
    specs = [sample_spec(rng, "all") for _ in range(30)]
    for resolution in (32, 64):
        noise = rng.integers(0, 256, (resolution, resolution, 3), dtype=np.uint8)
        for spec in specs:
            for background in BACKGROUNDS.values():
                blank = np.full((resolution, resolution, 3), background, dtype=np.uint8)
                assert not score_image(spec, blank).all
            assert not score_image(spec, noise).all


def test_a_wrong_colour_and_a_wrong_count_are_named():
    spec = SceneSpec((ObjectSpec("triangle", "green", "large"),) * 2, background="gray")
    three_green = Scene(
        "gray",
        tuple(PlacedObject("triangle", "green", "large", x, 0.5) for x in (0.25, 0.75))
        + (PlacedObject("triangle", "green", "small", 0.5, 0.2),),
    )
    report = score_image(spec, render_scene(three_green, 64))
    assert report.count is False and report.colour and report.shape and report.background
    two_orange = Scene(
        "gray", tuple(PlacedObject("triangle", "orange", "large", x, 0.5) for x in (0.25, 0.75))
    )
    report = score_image(spec, render_scene(two_orange, 64))
    assert report.colour is False and report.count and report.shape


def test_unstated_attributes_are_not_reported():
    report = score_image(
        "a red circle",
        render_scene(Scene("black", (PlacedObject("circle", "red", "large", 0.5, 0.5),)), 32),
    )
    assert set(report.checks) == {"count", "colour", "shape"}
    assert report.as_dict() == {"count": True, "colour": True, "shape": True, "all": True}


def test_score_prompts_reports_accuracy_per_stated_attribute():
    dataset = ShapesDataset(resolution=32, seed=5, split="all", length=40)
    captions = [dataset.caption(i) for i in range(len(dataset))]
    images = np.stack([dataset[i][0] for i in range(len(dataset))])
    right = score_prompts(captions, images)
    assert set(right) >= {"count", "colour", "shape", "background", "all"}
    assert all(value == 1.0 for value in right.values())
    # The same images against the prompts rotated by one: mostly wrong.
    wrong = score_prompts(captions[1:] + captions[:1], to_model_images(images))
    assert wrong["all"] < 0.2
    assert all(0.0 <= value <= 1.0 for value in wrong.values())
    only_glyphs = score_prompts(["the letter A in red"], images[:1])
    assert set(only_glyphs) == {"colour", "glyph", "all"}
    with pytest.raises(ValueError, match="one image per prompt"):
        score_prompts(captions[:3], images[:2])


def _components_by_search(mask):
    """Reference: count 8-connected regions with a breadth-first search."""
    seen = np.zeros_like(mask)
    count = 0
    h, w = mask.shape
    for start in zip(*np.nonzero(mask)):
        if seen[start]:
            continue
        count += 1
        seen[start] = True
        queue = deque([start])
        while queue:
            y, x = queue.popleft()
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    ny, nx = y + dy, x + dx
                    if 0 <= ny < h and 0 <= nx < w and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        queue.append((ny, nx))
    return count


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), density=st.floats(0.05, 0.7))
def test_connected_components_match_a_breadth_first_search(seed, density):
    mask = np.random.default_rng(seed).random((20, 23)) < density
    labels, n = connected_components(mask)
    assert n == _components_by_search(mask)
    assert set(np.unique(labels[mask])) == set(range(1, n + 1))
    assert np.all(labels[~mask] == 0)
    # Neighbouring foreground pixels always share a label.
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = labels[max(0, -dy) : 20 - max(0, dy), max(0, -dx) : 23 - max(0, dx)]
        b = labels[max(0, dy) :, max(0, dx) : 23 + min(0, dx) or None][: a.shape[0], : a.shape[1]]
        both = (a > 0) & (b > 0)
        assert np.all(a[both] == b[both])


def test_look_reports_positions_and_sizes():
    scene = Scene(
        "white",
        (
            PlacedObject("square", "blue", "large", 0.3, 0.7),
            PlacedObject("circle", "yellow", "small", 0.75, 0.25),
        ),
    )
    seen = look(render_scene(scene, 64))
    assert seen.background == "white"
    by_colour = {obj.colour: obj for obj in seen.objects}
    assert by_colour["blue"].shape == "square" and by_colour["blue"].size == "large"
    assert by_colour["yellow"].shape == "circle" and by_colour["yellow"].size == "small"
    assert abs(by_colour["blue"].x - 0.3) < 0.02 and abs(by_colour["blue"].y - 0.7) < 0.02
