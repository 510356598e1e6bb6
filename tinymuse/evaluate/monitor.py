"""Watching a stage learn: samples for fixed prompts, saved as a grid and scored by the oracle.

A :class:`SampleMonitor` takes a *sampler*, ``generate_images(model, prompts) -> images``, so
one monitor serves any stage. The samplers here draw exactly as ``tinymuse generate`` does,
through :func:`tinymuse.decoding.sample_stage` with the stage's default settings
(:mod:`tinymuse.sampling`), so what a training run reports is what its users will get.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from .. import backend
from ..data.grid import save_image_grid
from ..data.images import to_uint8_images
from ..decoding import sample_stage
from ..raster import sample_raster
from ..sampling import AUTOREGRESSIVE, BASE, SUPERRES, Sampling
from ..tensor import Tensor, no_grad
from .oracle import score_prompts

__all__ = ["SampleMonitor", "base_sampler", "superres_sampler", "superres_monitor",
           "FLAT_SPREAD"]

# A sample whose pixels spread less than this (standard deviation, 0–255) is one flat colour.
FLAT_SPREAD = 8.0


class SampleMonitor:
    """Draw images for fixed prompts, save them as a grid and score them with the oracle.

    Called with a model and a step, it returns the oracle's accuracy per attribute
    (``"oracle/<attribute>"``) and ``"flat_images"``, the share of samples that are one flat
    colour (the blank-sample failure), and writes ``samples/step_<step>.png`` under the
    ``out_dir`` it is given (or its own). Every call draws with the default generator seeded
    with ``seed``, so grids of different steps differ only by what the model learned.
    """

    def __init__(self, prompts, generate_images: Callable, out_dir=None, score: bool = True,
                 seed: int = 1234):
        self.prompts = list(prompts)
        self.generate_images = generate_images
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.score = score
        self.seed = seed

    def __call__(self, model, step: int, out_dir=None) -> dict:
        state = backend.default_generator.state_dict()
        backend.manual_seed(self.seed)
        try:
            images = self.generate_images(model, self.prompts)
        finally:
            backend.default_generator.load_state_dict(state)
        images = to_uint8_images(images.numpy() if isinstance(images, Tensor) else images)
        folder = Path(out_dir) if out_dir is not None else self.out_dir
        if folder is not None:
            save_image_grid(images, folder / "samples" / f"step_{step:06d}.png", scale=2)
        spread = images.reshape(len(images), -1, 3).astype(np.float32).std(axis=1).max(axis=1)
        metrics = {"flat_images": float(np.mean(spread < FLAT_SPREAD))}
        if self.score:
            metrics.update({f"oracle/{k}": v
                            for k, v in score_prompts(self.prompts, images).items()})
        return metrics


def _decoded(vq, tokens) -> np.ndarray:
    with no_grad():
        return vq.decode(tokens).numpy()


def base_sampler(vq, settings: Sampling | None = None, batch_size: int = 64,
                 raster: bool = False) -> Callable:
    """``generate_images(model, prompts)`` for the base stage: token grids drawn with
    ``settings`` (default ``BASE``), decoded by the base ``vq``, in batches; float images in
    [-1, 1]. With ``raster`` the model is the autoregressive baseline, drawn token by token
    (:func:`tinymuse.raster.sample_raster`, default ``AUTOREGRESSIVE``)."""
    draw = sample_raster if raster else sample_stage
    settings = settings or (AUTOREGRESSIVE if raster else BASE)

    def generate_images(model, prompts):
        return np.concatenate([
            _decoded(vq, draw(model, prompts[start:start + batch_size], settings).tokens)
            for start in range(0, len(prompts), batch_size)])
    return generate_images


def superres_sampler(vq, low_tokens, settings: Sampling = SUPERRES,
                     batch_size: int = 64) -> Callable:
    """``generate_images(model, prompts)`` for the super-resolution stage: the i-th prompt is
    drawn on ``low_tokens[i]`` (e.g. the true low-resolution grids of the prompts' images) and
    decoded by the super-resolution ``vq``."""
    low_tokens = np.asarray(low_tokens)

    def generate_images(model, prompts):
        if len(prompts) > len(low_tokens):
            raise ValueError(f"{len(prompts)} prompts but only {len(low_tokens)} "
                             f"low-resolution grids to draw them on")
        return np.concatenate([
            _decoded(vq, sample_stage(model, prompts[start:start + batch_size], settings,
                                      low_tokens=low_tokens[start:start + batch_size]).tokens)
            for start in range(0, len(prompts), batch_size)])
    return generate_images


def superres_monitor(cache, vq, count: int = 16, out_dir=None) -> SampleMonitor:
    """A monitor for the super-resolution stage: it draws the first ``count`` captions of a
    paired cache (:class:`tinymuse.training.transformer.PairedTokens`) on their true
    low-resolution tokens, so the samples show what this stage adds (detail), apart from the
    base stage's mistakes."""
    count = min(count, len(cache))
    return SampleMonitor(list(cache.captions[:count]),
                         superres_sampler(vq, cache.low_tokens[:count]), out_dir=out_dir)
