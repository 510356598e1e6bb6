"""The shapes world: an infinite, seeded dataset of image-caption pairs that needs no download.

Example ``i`` of ``ShapesDataset(seed=s)`` is made by a random generator seeded with ``(s, i)``
and nothing else, so it is the same pair on every machine and every run, and the same scene at
every resolution: index 7 at 32x32 is index 7 at 64x64, shrunk. Making an example takes four
steps, each in its own module:

1. pick a :class:`~tinymuse.data.spec.SceneSpec` (here: what kind of scene, which objects),
2. write a caption for it (:mod:`tinymuse.data.grammar`),
3. fill in what the caption leaves open: positions, unstated sizes and background
   (:func:`~tinymuse.data.spec.sample_scene`),
4. draw it (:func:`~tinymuse.data.render.render_scene`).

Splits: ``"train"`` never shows a held-out colour-shape pair nor a held-out relation phrasing
(both listed in :mod:`tinymuse.data.vocabulary`); ``"heldout"`` (alias ``"test"``) shows only
examples that use at least one of them; ``"all"`` shows everything.

Worlds: ``world="full"`` (the default) draws every kind of scene in :data:`SCENE_KINDS`;
``world="single"`` draws only scenes of one object (its colour and shape, perhaps its size and
the background), the first thing a cascade learns; ``world="centred"`` draws the same scenes
with the object near the middle of the picture, not anywhere, small enough to learn in
minutes (the ``lab`` preset). The splits and the held-out pairs are the same in all three.
"""

from dataclasses import dataclass

import numpy as np

from .grammar import write_caption
from .render import render_scene
from .spec import GlyphSpec, ObjectSpec, Scene, SceneSpec, sample_scene
from .vocabulary import (
    BACKGROUNDS,
    COLOURS,
    GLYPHS,
    HELDOUT_COMBINATIONS,
    HELDOUT_RELATION_PHRASES,
    RELATIONS,
    SHAPES,
    SIZES,
    TRAIN_COMBINATIONS,
)

SPLITS = {"train": 0, "heldout": 1, "all": 2}  # the number seeds the split's own stream
SPLIT_ALIASES = {"test": "heldout"}

SCENE_KINDS = {"objects": 0.45, "relation": 0.35, "glyph": 0.2}
WORLDS = ("full", "single", "centred")
P_BACKGROUND = 0.5  # how often a caption states the background
P_SIZE = 0.5  # how often a caption states an object's size

ALL_COMBINATIONS = tuple((colour, shape) for colour in COLOURS for shape in SHAPES)


def _split_name(split):
    name = SPLIT_ALIASES.get(split, split)
    if name not in SPLITS:
        choices = ", ".join([*SPLITS, *SPLIT_ALIASES])
        raise ValueError(f"unknown split {split!r}; choose one of: {choices}")
    return name


def _world_name(world):
    if world not in WORLDS:
        raise ValueError(f"unknown shapes world {world!r}; choose one of: {', '.join(WORLDS)}")
    return world


def sample_spec(rng, split="train", world="full"):
    """A random :class:`SceneSpec` of ``world`` (module docstring). For ``split="train"`` no
    object has a held-out colour-shape pair; otherwise any pair may appear."""
    pairs = TRAIN_COMBINATIONS if _split_name(split) == "train" else ALL_COMBINATIONS
    background = _choose(rng, BACKGROUNDS) if rng.random() < P_BACKGROUND else None

    def random_object(exclude=None):
        options = [pair for pair in pairs if pair != exclude]
        colour, shape = options[rng.integers(len(options))]
        size = _choose(rng, SIZES) if rng.random() < P_SIZE else None
        return ObjectSpec(shape, colour, size)

    if _world_name(world) != "full":
        return SceneSpec((random_object(),), background=background)
    kind = rng.choice(list(SCENE_KINDS), p=list(SCENE_KINDS.values()))
    if kind == "glyph":
        glyph = GlyphSpec(_choose(rng, GLYPHS), _choose(rng, COLOURS))
        return SceneSpec(glyph=glyph, background=background)
    if kind == "relation":  # two objects that differ, so the oracle can tell which is which
        first = random_object()
        second = random_object(exclude=(first.colour, first.shape))
        return SceneSpec((first, second), _choose(rng, RELATIONS), background=background)
    count = int(rng.integers(1, 5))
    return SceneSpec((random_object(),) * count, background=background)


def uses_heldout(spec, caption):
    """Whether an example uses a held-out colour-shape pair or a held-out relation phrasing."""
    pairs = {(obj.colour, obj.shape) for obj in spec.objects}
    if pairs & set(HELDOUT_COMBINATIONS):
        return True
    return spec.relation is not None and any(p in caption for p in HELDOUT_RELATION_PHRASES)


def sample_text(rng, split="train", world="full"):
    """A random ``(spec, caption)`` pair from ``split`` of ``world``."""
    split = _split_name(split)
    while True:
        spec = sample_spec(rng, split, world)
        caption = write_caption(spec, rng, split="train" if split == "train" else "all")
        if split != "heldout" or uses_heldout(spec, caption):
            return spec, caption


def shapes_captions(count, seed=0, split="train", world="full"):
    """``count`` captions of the shapes world's ``split`` (of ``world``), text only (nothing
    is drawn): the corpus the tokenizer and the text encoder learn from."""
    rng = np.random.default_rng([seed, 2024])
    return [sample_text(rng, split, world)[1] for _ in range(count)]


def _choose(rng, options):
    options = list(options)
    return options[rng.integers(len(options))]


@dataclass(frozen=True)
class ShapesExample:
    """One example with everything known about it: the pixels, the caption, the facts the
    caption states (``spec``) and the concrete scene that was drawn."""

    image: np.ndarray  # uint8 [resolution, resolution, 3]
    caption: str
    spec: SceneSpec
    scene: Scene


class ShapesDataset:
    """Seeded, procedural image-caption pairs from the shapes world.

    ``dataset[i]`` is ``(image, caption)``: a uint8 RGB array ``[resolution, resolution, 3]``
    and a str. ``dataset.example(i)`` also returns the spec and the scene. The dataset is
    infinite unless given a ``length``; a data loader needs a length. ``world="single"``
    draws only one-object scenes, ``world="centred"`` the same near the centre (module
    docstring).
    """

    def __init__(self, resolution=64, seed=0, split="train", length=None, world="full"):
        if int(resolution) != resolution or resolution < 8:
            raise ValueError(f"resolution must be an integer of at least 8, got {resolution!r}")
        self.resolution = int(resolution)
        self.seed = int(seed)
        self.split = _split_name(split)
        if length is not None and length < 0:
            raise ValueError(f"length must be None (infinite) or >= 0, got {length}")
        self.length = length
        self.world = _world_name(world)

    def __len__(self):
        if self.length is None:
            raise TypeError(
                "this ShapesDataset is infinite; give it a size with ShapesDataset(..., length=N)"
            )
        return self.length

    def __getitem__(self, index):
        example = self.example(index)
        return example.image, example.caption

    def rng(self, index):
        """The random generator that makes example ``index``."""
        return np.random.default_rng([self.seed, index, SPLITS[self.split]])

    def example(self, index):
        index = self._check_index(index)
        rng = self.rng(index)
        spec, caption = sample_text(rng, self.split, self.world)
        scene = sample_scene(spec, rng, centred=self.world == "centred")
        return ShapesExample(render_scene(scene, self.resolution), caption, spec, scene)

    def caption(self, index):
        """The caption of example ``index``, without drawing its image."""
        return sample_text(self.rng(self._check_index(index)), self.split, self.world)[1]

    def _check_index(self, index):
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"index a ShapesDataset with an int, got {type(index).__name__}")
        index = int(index)
        if self.length is not None:
            if index < 0:
                index += self.length
            if not 0 <= index < self.length:
                raise IndexError(f"index {index} is out of range for length {self.length}")
        elif index < 0:
            raise IndexError("an infinite ShapesDataset has no negative indices")
        return index

    def __repr__(self):
        return (
            f"ShapesDataset(resolution={self.resolution}, seed={self.seed}, "
            f"split={self.split!r}, length={self.length}"
            + ("" if self.world == "full" else f", world={self.world!r}") + ")"
        )
