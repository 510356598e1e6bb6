"""Watching the decoder work: a picture of every decoding step, masked tokens in gray.

A decoding step (:class:`tinymuse.decoding.DecodeStep`) is a grid of tokens of which some are
still masked. A VQ decoder cannot simply leave a masked token out: it is made of
convolutions, and each pixel reads a token together with its neighbours. So
:func:`step_picture` gives every masked position the token it will finally get, decodes the
whole grid, and paints the masked tokens' blocks of pixels :data:`MASKED_GRAY`. Since a token
once revealed never changes, each picture shows the finished picture where tokens are fixed,
and gray where they are still masked.

:func:`decoding_frames` draws every step of a :meth:`tinymuse.Pipeline.generate` call made
with ``return_steps=True``: the base stage's steps, each picture enlarged to the pipeline's
size (every pixel repeated into a block, so nothing is smoothed), then the super-resolution
stage's. ``tinymuse generate --steps-gif`` and ``--steps-grid`` show them.
"""
from __future__ import annotations

import numpy as np

from . import backend, nn
from .data.images import to_uint8_images

__all__ = ["MASKED_GRAY", "decoding_frames", "step_picture"]

# The colour of a still-masked token's pixels: darker than the shapes world's gray
# background, lighter than its black one.
MASKED_GRAY = (64, 64, 64)


def step_picture(vq, step, final_tokens) -> np.ndarray:
    """The pictures of one decoding step, uint8 (B, S, S, 3), with S the ``vq``'s image size.

    ``vq`` is the stage's :class:`~tinymuse.vq.VQTokenizer` (``pipeline.base_vq`` or
    ``pipeline.superres_vq``); ``step`` a :class:`~tinymuse.decoding.DecodeStep` whose
    ``tokens`` and ``mask`` are (B, h, w) or (B, h·w); ``final_tokens`` (B, h, w) the grids
    the decoding ends with, whose tokens stand in for the masked ones while decoding. The
    pixels of each masked token (a block of S/h × S/h) are :data:`MASKED_GRAY`.
    """
    side = vq.config.token_size
    tokens = backend.to_numpy(step.tokens).reshape(-1, side, side)
    mask = backend.to_numpy(step.mask).astype(bool).reshape(tokens.shape)
    final = np.asarray(backend.to_numpy(final_tokens))
    if final.size != tokens.size:
        raise ValueError(f"final_tokens has shape {final.shape} but the step holds "
                         f"{tokens.shape[0]} grids of {side}×{side} tokens: give the grids the "
                         f"same decoding ended with")
    filled = np.where(mask, final.reshape(tokens.shape), tokens)
    with nn.evaluation_mode(vq):
        pictures = to_uint8_images(vq.decode(filled).numpy())
    block = vq.config.image_size // side
    hidden = np.kron(mask, np.ones((block, block), bool))  # (B, S, S): the masked pixels
    pictures[hidden] = MASKED_GRAY
    return pictures


def decoding_frames(pipeline, out) -> list[np.ndarray]:
    """Every decoding step of ``out`` as pictures: one uint8 array (B, S, S, 3) per step, the
    base stage's steps first, then the super-resolution stage's, all at the pipeline's
    ``image_size`` S.

    ``out`` is what ``pipeline.generate(..., return_steps=True)`` returned (a
    :class:`~tinymuse.pipeline.PipelineOutput`). A base picture is smaller than S (32×32 for
    64×64 images); each of its pixels becomes a block, so a masked base token is a gray block
    of the same place and size as in the super-resolution frames.
    """
    if getattr(out, "base_steps", None) is None or out.superres_steps is None:
        raise ValueError("these outputs hold no decoding steps: draw them with "
                         "pipeline.generate(..., return_steps=True)")
    factor = pipeline.image_size // pipeline.base_image_size
    frames = [step_picture(pipeline.base_vq, step, out.base_tokens)
              .repeat(factor, axis=1).repeat(factor, axis=2) for step in out.base_steps]
    frames += [step_picture(pipeline.superres_vq, step, out.superres_tokens)
               for step in out.superres_steps]
    return frames
