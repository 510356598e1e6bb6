"""The shapes oracle: does an image show what its caption says?

Generated images are scored, not eyeballed. :func:`score_image` reads an image with
:func:`tinymuse.data.perception.look` and compares what it sees with a
:class:`~tinymuse.data.spec.SceneSpec` (usually parsed from a prompt), attribute by attribute:

============ =================================================================================
background   the background colour (when the caption names one)
count        the number of objects (scenes with objects)
colour       each object's colour, or the glyph's colour
shape        each object's shape
size         each object's size (when the caption names sizes)
relation     left of / right of / above / below, between the two objects' centres
glyph        which letter or digit is drawn
============ =================================================================================

An attribute the caption does not state is ``None`` in the report and counts for nothing.
Objects are matched to the caption's objects first (the pairing that agrees on the most
colours, then shapes, then sizes), so "a red circle left of a blue square" is checked on the red
circle and the blue square wherever they are; that is how a swapped relation gets caught.

:func:`score_prompts` averages the reports of many prompts into one accuracy per attribute
(:func:`attribute_accuracy`); :mod:`~tinymuse.evaluate.stats` puts error bars on them.
"""

from dataclasses import dataclass
from itertools import combinations, permutations

from ..data.grammar import parse_caption
from ..data.images import to_uint8_images
from ..data.perception import Observation, look
from ..data.spec import SceneSpec

ATTRIBUTES = ("background", "count", "colour", "shape", "size", "relation", "glyph")
_MAX_MATCHED = 8  # objects considered when pairing (a count mismatch fails anyway)


@dataclass(frozen=True)
class OracleReport:
    """Per attribute: ``True`` (shown), ``False`` (not shown) or ``None`` (not stated)."""

    background: bool | None = None
    count: bool | None = None
    colour: bool | None = None
    shape: bool | None = None
    size: bool | None = None
    relation: bool | None = None
    glyph: bool | None = None
    observation: Observation | None = None

    @property
    def checks(self):
        """The stated attributes and their verdicts, as a dict."""
        return {name: getattr(self, name) for name in ATTRIBUTES if getattr(self, name) is not None}

    @property
    def all(self):
        """True when the image shows every stated attribute."""
        return all(self.checks.values())

    def as_dict(self):
        """The stated attributes and ``"all"``."""
        return {**self.checks, "all": self.all}


def score_image(spec, image):
    """Check one image against a spec (or a caption, which is parsed first).

    ``image`` is a uint8 RGB array ``[H, W, 3]`` or a float ``[3, H, W]`` array in [-1, 1].
    """
    spec = _as_spec(spec)
    batch = to_uint8_images(image)
    if len(batch) != 1:
        raise ValueError(f"score_image scores one image; for {len(batch)} use score_prompts")
    image = batch[0]
    seen = look(image, read_glyph=spec.glyph is not None)
    background = None if spec.background is None else seen.background == spec.background
    if spec.glyph is not None:
        return OracleReport(
            background=background,
            colour=seen.glyph.colour == spec.glyph.colour,
            glyph=seen.glyph.char == spec.glyph.char,
            observation=seen,
        )
    pairs = _match(spec.objects, seen.objects)
    sized = [(want, got) for want, got in pairs if want.size is not None]
    relation = None
    if spec.relation is not None:
        relation = len(pairs) == 2 and _relation_holds(pairs[0][1], pairs[1][1], spec.relation)
    return OracleReport(
        background=background,
        count=len(seen.objects) == spec.count,
        colour=_all_agree(pairs, "colour"),
        shape=_all_agree(pairs, "shape"),
        size=_all_agree(sized, "size") if any(o.size for o in spec.objects) else None,
        relation=relation,
        observation=seen,
    )


def score_prompts(prompts, images):
    """Accuracy per attribute of ``images`` (one per prompt) against ``prompts``.

    ``prompts`` are captions or :class:`SceneSpec` s; ``images`` is a float NCHW batch in
    [-1, 1] or uint8 ``[N, H, W, 3]`` (or a list of ``[H, W, 3]``). Returns a dict from each
    attribute that at least one prompt states, and ``"all"``, to the fraction of the prompts
    stating it whose image shows it.
    """
    specs = [_as_spec(p) for p in prompts]
    batch = to_uint8_images(images)
    if len(specs) != len(batch):
        raise ValueError(
            f"got {len(specs)} prompts but {len(batch)} images; give one image per prompt"
        )
    return attribute_accuracy(score_image(spec, image) for spec, image in zip(specs, batch))


def attribute_accuracy(reports) -> dict:
    """Average many :class:`OracleReport` s into one accuracy per attribute.

    Returns a dict from each attribute that at least one report states, and ``"all"``, to the
    fraction of the reports stating it that pass it, in the order of :data:`ATTRIBUTES`. An
    attribute a prompt does not state counts for nothing, so the "size" of a set is measured
    on the prompts that name a size only.
    """
    # BEGIN EXERCISE ch10_ex2
    totals, passed = {}, {}
    for report in reports:
        for name, ok in report.as_dict().items():
            totals[name] = totals.get(name, 0) + 1
            passed[name] = passed.get(name, 0) + int(ok)
    order = [*ATTRIBUTES, "all"]
    return {name: passed[name] / totals[name] for name in order if name in totals}
    # END EXERCISE


def _as_spec(prompt):
    if isinstance(prompt, SceneSpec):
        return prompt
    if isinstance(prompt, str):
        return parse_caption(prompt)
    raise TypeError(f"a prompt is a caption (str) or a SceneSpec, got {type(prompt).__name__}")


def _agreement(want, got):
    """How well a seen object fits a stated one; colour counts most, being the surest reading."""
    score = 4 * (want.colour == got.colour) + 2 * (want.shape == got.shape)
    return score + (want.size is not None and want.size == got.size)


def _match(wanted, seen):
    """Pair each stated object with a distinct seen object, maximising agreement.

    Returns ``[(stated, seen), ...]`` in the order of ``wanted``; when fewer objects are seen
    than stated, only as many pairs as there are seen objects (the count check reports the
    shortfall).
    """
    candidates = sorted(seen, key=lambda obj: -obj.pixels)[:_MAX_MATCHED]
    n = min(len(wanted), len(candidates))
    best, best_score = [], -1
    for stated in combinations(range(len(wanted)), n):
        for shown in permutations(range(len(candidates)), n):
            pairs = sorted(zip(stated, shown))
            score = sum(_agreement(wanted[i], candidates[j]) for i, j in pairs)
            if score > best_score:
                best, best_score = pairs, score
    return [(wanted[i], candidates[j]) for i, j in best]


def _all_agree(pairs, attribute):
    """Whether every pair agrees on ``attribute`` (False when there are no pairs)."""
    return bool(pairs) and all(getattr(w, attribute) == getattr(g, attribute) for w, g in pairs)


def _relation_holds(first, second, relation):
    """Whether the seen object ``first`` is ``relation`` the seen object ``second``: its centre
    lies on that side, more along that axis than across it."""
    # BEGIN EXERCISE ch10_ex1
    dx, dy = second.x - first.x, second.y - first.y
    axes = {"left of": (dx, dy), "right of": (-dx, dy), "above": (dy, dx), "below": (-dy, dx)}
    along, across = axes[relation]  # the offset along the relation's axis, and across it
    return along > 0 and abs(along) > abs(across)
    # END EXERCISE
