"""The prompts models are scored on: captions of a shapes-world stream training never reads.

Four kinds, because each tests something else: one object ("single": shape and colour), two
to four alike objects ("count"), two related objects ("relation": left of, above, ...), and a
letter or digit ("glyph"). ``split="heldout"`` gives only captions with a colour–shape pair or
a relation phrasing that training never shows: the compositional test.
"""
from __future__ import annotations

from ..data.shapes import ShapesDataset, sample_text

__all__ = ["PROMPT_KINDS", "WORLD_KINDS", "evaluation_prompts", "monitor_prompts"]

PROMPT_KINDS = ("single", "count", "relation", "glyph")


def evaluation_prompts(per_kind: int, split: str = "train", seed: int = 7) -> dict:
    """``per_kind`` prompts of each kind in :data:`PROMPT_KINDS`, as ``{kind: [caption, ...]}``.

    They are the captions of the shapes-world stream ``seed`` (training reads seed 0), taken
    in order, never chosen by looking at samples. Glyphs have neither a held-out pair nor a
    relation, so the ``"heldout"`` split has no "glyph" prompts.
    """
    if isinstance(per_kind, bool) or not isinstance(per_kind, int) or per_kind < 1:
        raise ValueError(f"the number of prompts per kind must be a whole number >= 1, got "
                         f"{per_kind!r}")
    dataset = ShapesDataset(resolution=32, seed=seed, split=split)
    kinds = [k for k in PROMPT_KINDS if not (k == "glyph" and dataset.split == "heldout")]
    prompts = {kind: [] for kind in kinds}
    index = 0
    while any(len(p) < per_kind for p in prompts.values()):
        spec, caption = sample_text(dataset.rng(index), dataset.split)  # = example(index), undrawn
        index += 1
        kind = {"glyph": "glyph", "relation": "relation"}.get(
            spec.kind, "single" if spec.count == 1 else "count")
        if len(prompts[kind]) < per_kind:
            prompts[kind].append(caption)
    return prompts


# The kinds of prompt each shapes world (:data:`tinymuse.data.shapes.WORLDS`) can draw.
WORLD_KINDS = {"full": PROMPT_KINDS, "single": ("single",), "centred": ("single",)}


def monitor_prompts(per_kind: int = 2, world: str = "full") -> list[str]:
    """The fixed prompts a training run's sample grids show: ``per_kind`` of each kind
    ``world`` has, from a stream (seed 3) of its own, so the grids are not the prompts the
    scores are measured on. A one-kind world (``"single"``, ``"centred"``) shows four times as
    many of it, so that its grid is as big as the full world's."""
    kinds = WORLD_KINDS[world]
    per_kind *= len(PROMPT_KINDS) // len(kinds)
    fixed = evaluation_prompts(per_kind, "train", seed=3)
    return [prompt for kind in kinds for prompt in fixed[kind]]
