"""Scoring a whole pipeline: draw every prompt of some prompt sets and read the pictures with
the oracle (``tinymuse eval``)."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..data.images import to_uint8_images
from .oracle import score_prompts

__all__ = ["score_pipeline"]


def _draw(pipeline, prompts, batch_size: int, compare_base: bool, options: dict) -> dict:
    """uint8 pictures of ``prompts``: the cascade's, and with ``compare_base`` the base
    stage's own 32×32 ones (its tokens of the same samples, decoded by the base tokenizer)."""
    drawn = {"pipeline": [], "base_alone": []}
    for start in range(0, len(prompts), batch_size):
        out = pipeline.generate(prompts[start:start + batch_size], return_tokens=True,
                                **options)
        drawn["pipeline"].append(out.images)
        if compare_base:
            drawn["base_alone"].append(pipeline.base_vq.decode(out.base_tokens).numpy())
    return {which: to_uint8_images(np.concatenate(parts)) for which, parts in drawn.items()
            if parts}


def score_pipeline(pipeline, prompt_sets: dict, *, batch_size: int = 50,
                   compare_base: bool = False, report: Callable | None = None,
                   **options) -> dict:
    """The oracle's accuracy per attribute for each named set of prompts, and ``"overall"``.

    ``prompt_sets`` maps a name (e.g. ``"train/single"``) to a list of captions. ``options``
    go to :meth:`tinymuse.Pipeline.generate` (``base``, ``superres``, ``seed``, ...); every
    batch of ``batch_size`` prompts is drawn with them (so with the same seed). Each entry of
    the result is ``{"prompts": n, "pipeline": {attribute: accuracy}}``, plus
    ``"base_alone"`` with ``compare_base``; ``report(name, entry)`` is called as each set is
    done.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    if not any(prompt_sets.values()):
        raise ValueError("no prompts to score")
    results, everything, pictures = {}, [], {}
    for name, prompts in prompt_sets.items():
        drawn = _draw(pipeline, list(prompts), batch_size, compare_base, options)
        results[name] = {"prompts": len(prompts)}
        for which, images in drawn.items():
            results[name][which] = score_prompts(prompts, images)
            pictures.setdefault(which, []).append(images)
        everything += prompts
        if report is not None:
            report(name, results[name])
    results["overall"] = {"prompts": len(everything)}
    for which, parts in pictures.items():
        results["overall"][which] = score_prompts(everything, np.concatenate(parts))
    return results
