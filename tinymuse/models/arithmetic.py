"""Counting a decoder's arithmetic: multiply-adds per image, parallel against autoregressive.

A model call's cost is mostly its matrix products. For one block of width ``d`` (MLP width
``h = mlp_ratio · d``) run on ``q`` new positions that attend to ``k`` positions of the image
and to ``L`` text tokens, the multiply-adds are

    self-attention   4·q·d²  (q, k, v, out projections)   + 2·q·k·d  (scores, weighted sum)
    cross-attention  2·q·d²  (q, out)  + 2·L·d²  (the text's k, v)   + 2·q·L·d
    MLP              2·q·d·h

and the output head adds ``q·d·K`` for a codebook of ``K``. Layer norms, softmaxes and
additions are a few operations per number, not per product, and are left out; so is the text
encoder, which both decoders run once per prompt.

The two decoders differ in what they run per step:

- **parallel** (:mod:`tinymuse.decoding`): ``T`` steps, each the whole grid, ``q = k = N``,
  the text's keys and values computed again at every step;
- **autoregressive with a cache** (:mod:`tinymuse.raster`): ``N`` steps, step ``i`` one new
  position, ``q = 1``, ``k = i + 1``; the text's keys and values once;
- **autoregressive without a cache**: ``N`` steps, each the whole grid, like a parallel step.

Classifier-free guidance doubles every count (a conditional and an unconditional row).
So with a cache the autoregressive decoder does *less* arithmetic than parallel decoding with
``T > 1`` steps: each token passes through the network once. What it cannot do is the work
of one step at a time for many positions at once: ``N`` small calls in a row against ``T``
large ones, and the small ones leave a CPU's vector units and a GPU's cores mostly idle.
"""
from __future__ import annotations

__all__ = ["block_multiply_adds", "parallel_multiply_adds", "autoregressive_multiply_adds"]


def block_multiply_adds(config, queries: int, keys: int, text_length: int,
                        text_keys: bool = True) -> int:
    """Multiply-adds of the whole stack of blocks and the head for ``queries`` new
    positions attending to ``keys`` image positions and ``text_length`` text tokens;
    ``text_keys``: whether the text's keys and values are computed in this call."""
    d, layers = config.d_model, config.num_layers
    hidden = int(config.mlp_ratio * d)
    self_attention = 4 * queries * d * d + 2 * queries * keys * d
    cross_attention = 2 * queries * d * d + 2 * queries * text_length * d
    if text_keys:
        cross_attention += 2 * text_length * d * d
    mlp = 2 * queries * d * hidden
    head = queries * d * config.codebook_size
    return layers * (self_attention + cross_attention + mlp) + head


def parallel_multiply_adds(config, steps: int, text_length: int, guided: bool = True) -> int:
    """Multiply-adds per image of parallel decoding in ``steps`` steps: every step runs the
    whole grid."""
    n = config.num_tokens
    per_step = block_multiply_adds(config, n, n, text_length)
    return steps * per_step * (2 if guided else 1)


def autoregressive_multiply_adds(config, text_length: int, guided: bool = True,
                                 cached: bool = True) -> int:
    """Multiply-adds per image of autoregressive decoding, one step per token, with or
    without the key/value cache."""
    n = config.num_tokens
    if cached:
        total = sum(block_multiply_adds(config, 1, i + 1, text_length, text_keys=i == 0)
                    for i in range(n))
    else:
        total = n * block_multiply_adds(config, n, n, text_length)
    return total * (2 if guided else 1)
