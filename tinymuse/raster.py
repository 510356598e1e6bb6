"""Autoregressive decoding: one token per model call, in raster order.

The decoder :mod:`tinymuse.decoding` is measured against. A grid of ``N`` tokens is drawn
position by position, ``x_0, x_1, …, x_{N−1}`` (row by row), each sampled from the model's
distribution given the text and every token before it:

    for i in 0 … N−1:
        logits = model(x_0 … x_{i−1}, c)_i                 one model call
        logits = (1 + s_i) · logits(c) − s_i · logits(u)   classifier-free guidance
        x_i    ~ softmax(logits / τ), optionally among the top k

So ``N`` steps, always: 64 for the base stage's 8×8 grid, 256 for a 16×16 one, where the
parallel decoder takes ``settings.steps`` (24 and 8 by default). The sampling settings are
one :class:`tinymuse.sampling.Sampling`, read the same way as by the parallel decoder
(temperature, top-k, guidance and its schedule, with step ``i`` of ``N``); its ``steps``,
``choice_temperature`` and ``mask_schedule`` belong to the parallel decoder and are not read.

What a step costs. Without a cache, step ``i`` runs the model on the whole grid (positions
after ``i`` are hidden by the causal mask, and cost arithmetic all the same). With a
key/value cache (:class:`tinymuse.nn.BlockCache`) step ``i`` runs it on one position, which
attends to the ``i + 1`` cached ones: the same numbers, computed once each. Both paths are
here (``use_cache``) so that a test can check they draw the same tokens.

The model is an :class:`~tinymuse.models.AutoregressiveTransformer`: it gives
``prompt_context``, ``logits`` (whole grids) and ``new_cache``/``next_logits`` (one
position).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import backend, nn
from .decoding import (DecodeResult, DecodeStep, guidance_contexts, guidance_scale_at,
                       sample_tokens)
from .sampling import Sampling

__all__ = ["sample_raster"]


def sample_raster(model, prompts, settings: Sampling, *, negative_prompts=None,
                  generator: backend.Generator | None = None, use_cache: bool = True,
                  return_intermediates: bool = False,
                  on_step: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Draw one token grid per prompt with an autoregressive ``model``, one token per step.

    Guidance (``settings.guidance_scale`` > 0) contrasts each prompt with the empty prompt or
    its ``negative_prompts``; both rows run as one batch of ``2B`` per step, so the model is
    called exactly ``N`` times whatever the guidance. Draws per step: one
    :func:`~tinymuse.decoding.sample_tokens` of the ``B`` guided rows. ``intermediates``
    (with ``return_intermediates``) hold after each step the grid with the codebook size
    (the model's [START] id, never a token) at the positions not drawn yet, and their mask.
    ``on_step(done, N)`` is called after each step. Returns the :class:`DecodeResult` with
    ``tokens`` a NumPy int64 array (B, h, w).
    """
    prompts = list(prompts)
    config = model.config
    count, batch = config.num_tokens, len(prompts)
    settings.replace(steps=1).check_grid(count, config.codebook_size)  # top-k
    xp = backend.xp_for(model.device)
    generator = generator or backend.default_generator
    tokens = xp.zeros((batch, count), dtype=np.int64)  # undrawn positions are never read
    intermediates = [] if return_intermediates else None
    with nn.evaluation_mode(model):
        condition, uncond = guidance_contexts(model, prompts, negative_prompts,
                                              settings.guidance_scale, None)
        guided = uncond is not None
        context = condition.concat(uncond) if guided else condition
        cache = model.new_cache() if use_cache else None
        for i in range(count):
            logits = _logits_at(model, tokens, i, context, cache, guided)   # (B or 2B, K)
            if guided:
                scale = guidance_scale_at(i, count, settings.guidance_scale,
                                          settings.guidance_schedule)
                logits = (1 + scale) * logits[:batch] - scale * logits[batch:]
            tokens[:, i] = sample_tokens(logits, generator, temperature=settings.temperature,
                                         top_k=settings.top_k)
            if return_intermediates:
                undrawn = xp.arange(count)[None, :].repeat(batch, 0) > i
                intermediates.append(DecodeStep(xp.where(undrawn, config.start_id, tokens),
                                                undrawn))
            if on_step is not None:
                on_step(i + 1, count)
    grid = config.grid_size
    return DecodeResult(backend.to_numpy(tokens).reshape(batch, grid, grid), intermediates)


def _logits_at(model, tokens, position: int, context, cache, guided: bool):
    """The model's logits for ``position``: from the cache (one position's work) or from the
    whole grid (every position's work, of which one row is kept)."""
    xp = backend.get_array_module(tokens)
    rows = xp.concatenate([tokens, tokens]) if guided else tokens
    if cache is None:
        return model.logits(rows, context).data[:, position]
    previous = rows[:, position - 1] if position else None
    return model.next_logits(previous, position, context, cache)
