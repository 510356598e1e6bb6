"""Scene specs (what a caption says) and scenes (what a picture shows).

A caption fixes some facts and leaves others open. "two small blue squares" fixes the count,
the shape, the colour and the size, but not where the squares are or what the background is.
So there are two kinds of description:

* a :class:`SceneSpec` holds exactly the facts a caption states. The grammar writes a caption
  from a spec and parses a caption back into the same spec; the oracle checks an image against
  a spec. Facts a caption leaves open are ``None``.
* a :class:`Scene` is one concrete picture: a background, and objects (or a glyph) with sizes
  and positions. :func:`sample_scene` fills in what a spec left open, with a seeded random
  generator, and the renderer draws the result.

Positions are fractions of the image side, measured from the top-left corner (x to the right,
y downwards), so one scene renders at 32x32 and at 64x64 alike.
"""

from dataclasses import dataclass

import numpy as np

from .vocabulary import BACKGROUNDS, COLOURS, GLYPHS, RELATIONS, SHAPES, SIZES

MAX_OBJECTS = 4
MARGIN = 0.05  # empty border around every object, as a fraction of the image side
GAP = 0.08  # the least space between two objects, so the oracle can tell them apart
GLYPH_HEIGHT = 0.56  # a glyph's height as a fraction of the image side
# how far a glyph's centre, or a centred object's (sample_scene's ``centred``), may move from
# the image centre
CENTRE_JITTER = 0.08


def _check_word(value, allowed, what):
    if value not in allowed:
        raise ValueError(f"unknown {what} {value!r}; choose one of: {', '.join(allowed)}")


@dataclass(frozen=True)
class ObjectSpec:
    """One object as a caption states it: a shape, a colour and maybe a size."""

    shape: str
    colour: str
    size: str | None = None

    def __post_init__(self):
        _check_word(self.shape, SHAPES, "shape")
        _check_word(self.colour, tuple(COLOURS), "colour")
        if self.size is not None:
            _check_word(self.size, tuple(SIZES), "size")


@dataclass(frozen=True)
class GlyphSpec:
    """A capital letter or digit drawn in a colour."""

    char: str
    colour: str

    def __post_init__(self):
        _check_word(self.char, GLYPHS, "glyph")
        _check_word(self.colour, tuple(COLOURS), "colour")


@dataclass(frozen=True)
class SceneSpec:
    """The facts a caption states about a scene.

    A spec shows either objects (1 to 4 of them, with an optional ``relation`` between the
    first and the second when there are exactly two) or one glyph. ``background`` is ``None``
    when the caption does not mention it.
    """

    objects: tuple[ObjectSpec, ...] = ()
    relation: str | None = None
    glyph: GlyphSpec | None = None
    background: str | None = None

    def __post_init__(self):
        object.__setattr__(self, "objects", tuple(self.objects))
        if self.background is not None:
            _check_word(self.background, tuple(BACKGROUNDS), "background")
        if (self.glyph is None) == (len(self.objects) == 0):
            raise ValueError(
                "a SceneSpec shows either 1 to 4 objects or a glyph, not both or neither"
            )
        if len(self.objects) > MAX_OBJECTS:
            raise ValueError(
                f"a scene holds at most {MAX_OBJECTS} objects, got {len(self.objects)}"
            )
        if self.relation is not None:
            _check_word(self.relation, RELATIONS, "relation")
            if len(self.objects) != 2:
                raise ValueError(f"a relation needs exactly 2 objects, got {len(self.objects)}")

    @property
    def kind(self):
        """``"glyph"``, ``"relation"`` or ``"objects"``."""
        if self.glyph is not None:
            return "glyph"
        return "relation" if self.relation is not None else "objects"

    @property
    def count(self):
        return len(self.objects)


@dataclass(frozen=True)
class PlacedObject:
    """An object in a concrete scene: ``x, y`` is the centre of its square bounding box."""

    shape: str
    colour: str
    size: str
    x: float
    y: float

    @property
    def extent(self):
        """Side of the bounding box, as a fraction of the image side."""
        return SIZES[self.size]

    @property
    def box(self):
        """``(left, top, right, bottom)`` of the bounding box, as fractions of the image side."""
        half = self.extent / 2
        return (self.x - half, self.y - half, self.x + half, self.y + half)


@dataclass(frozen=True)
class PlacedGlyph:
    """A glyph in a concrete scene: ``x, y`` is the centre of its 5x7 cell box."""

    char: str
    colour: str
    x: float
    y: float
    height: float = GLYPH_HEIGHT


@dataclass(frozen=True)
class Scene:
    """One concrete picture, ready to render."""

    background: str
    objects: tuple[PlacedObject, ...] = ()
    glyph: PlacedGlyph | None = None


# --- Sampling a scene from a spec ---------------------------------------------------------------

_CANDIDATES = 256  # positions tried at once when placing an object
_MAX_RESTARTS = 1000


def sample_scene(spec, rng, centred=False):
    """A concrete :class:`Scene` showing ``spec``, with everything the spec leaves open drawn
    from the numpy Generator ``rng``: the background, unstated sizes, and positions. Objects
    never overlap, and a relation holds clearly (see :func:`relation_holds`).

    A glyph always sits near the image centre (within ``CENTRE_JITTER``); with ``centred`` a
    lone object does too, instead of anywhere inside the margin."""
    background = spec.background or str(rng.choice(list(BACKGROUNDS)))
    if spec.glyph is not None:
        x, y = _near_centre(rng)
        glyph = PlacedGlyph(spec.glyph.char, spec.glyph.colour, float(x), float(y))
        return Scene(background, glyph=glyph)
    sizes = [obj.size or str(rng.choice(list(SIZES))) for obj in spec.objects]
    extents = [SIZES[size] for size in sizes]
    if centred and len(spec.objects) != 1:
        raise ValueError(f"only a scene of one object can be centred, not of "
                         f"{len(spec.objects)}")
    centres = [_near_centre(rng)] if centred else _place(extents, spec.relation, rng)
    objects = tuple(
        PlacedObject(obj.shape, obj.colour, size, float(x), float(y))
        for obj, size, (x, y) in zip(spec.objects, sizes, centres)
    )
    return Scene(background, objects=objects)


def relation_holds(first, second, relation, gap=GAP):
    """Whether the box centred at ``first`` (x, y, extent) is clearly ``relation`` the box at
    ``second``: separated by ``gap`` along the relation's axis, and offset along that axis at
    least twice as much as across it. Works element-wise on arrays of positions, too."""
    (x1, y1, e1), (x2, y2, e2) = first, second
    along, across = {
        "left of": (x2 - x1, y2 - y1),
        "right of": (x1 - x2, y1 - y2),
        "above": (y2 - y1, x2 - x1),
        "below": (y1 - y2, x1 - x2),
    }[relation]
    return (along >= (e1 + e2) / 2 + gap) & (np.abs(across) <= along / 2)


def _near_centre(rng):
    return 0.5 + rng.uniform(-CENTRE_JITTER, CENTRE_JITTER, size=2)


def _place(extents, relation, rng):
    """Centres for boxes of the given extents: inside the margin, ``GAP`` apart, and obeying
    ``relation`` between the first two. Candidates are drawn in batches, one object at a time;
    a scene that paints itself into a corner starts again."""
    for _ in range(_MAX_RESTARTS):
        centres = []
        for extent in extents:
            low = MARGIN + extent / 2
            candidates = rng.uniform(low, 1 - low, size=(_CANDIDATES, 2))
            ok = np.ones(_CANDIDATES, dtype=bool)
            for (x, y), other in zip(centres, extents):
                far = (extent + other) / 2 + GAP
                ok &= (np.abs(candidates[:, 0] - x) >= far) | (np.abs(candidates[:, 1] - y) >= far)
            if relation is not None and len(centres) == 1:
                (x, y), other = centres[0], extents[0]
                xs, ys = candidates[:, 0], candidates[:, 1]
                ok &= relation_holds((x, y, other), (xs, ys, extent), relation)
            if not ok.any():
                break
            centres.append(candidates[np.argmax(ok)])
        else:
            return centres
    raise RuntimeError(f"could not place objects of extents {extents} without overlap")
