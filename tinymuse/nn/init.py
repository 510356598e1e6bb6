"""Initialisers: fill a parameter in place with its starting values.

Why it matters: a layer ``y = W x`` with ``fan_in`` inputs adds up ``fan_in``
products, so if each weight has variance ``σ²`` and each input variance 1, the
output has variance ``fan_in · σ²``. Choosing ``σ² ∝ 1 / fan_in`` keeps
activations (and gradients) at a steady scale through many layers instead of
exploding or vanishing.

Every initialiser draws from a :class:`tinymuse.backend.Generator` (the
library's default one unless ``generator=`` is given), so a seed fixes the
initial model, on the CPU and on the GPU alike.
"""
from __future__ import annotations

import math

from .. import backend
from ..tensor import Tensor

__all__ = ["fan_in_and_fan_out", "uniform_", "normal_", "zeros_", "ones_", "constant_",
           "xavier_uniform_", "kaiming_uniform_"]


def fan_in_and_fan_out(shape: tuple) -> tuple[int, int]:
    """Inputs and outputs per unit of a weight of ``shape``: a Linear weight
    (out, in) has fan_in = in; a Conv2d weight (out, in, kh, kw) has
    fan_in = in · kh · kw (each output sums over that many numbers)."""
    if len(shape) < 2:
        raise ValueError(f"fan in/out needs a weight with at least 2 dimensions, got {shape}")
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fill(tensor: Tensor, array) -> Tensor:
    tensor.data[...] = array
    return tensor


def _generator(generator):
    return generator if generator is not None else backend.default_generator


def uniform_(tensor: Tensor, low: float = 0.0, high: float = 1.0, generator=None) -> Tensor:
    """Fill with samples from U(low, high)."""
    return _fill(tensor, _generator(generator).uniform(tensor.shape, low, high, dtype=tensor.dtype,
                                                       device=tensor.device))


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0, generator=None) -> Tensor:
    """Fill with samples from N(mean, std²)."""
    return _fill(tensor, _generator(generator).normal(tensor.shape, mean, std, dtype=tensor.dtype,
                                                      device=tensor.device))


def constant_(tensor: Tensor, value: float) -> Tensor:
    return _fill(tensor, value)


def zeros_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 0)


def ones_(tensor: Tensor) -> Tensor:
    return _fill(tensor, 1)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0, generator=None) -> Tensor:
    """Glorot & Bengio (2010): U(±a) with a = gain · √(6 / (fan_in + fan_out)),
    i.e. variance 2 / (fan_in + fan_out), a compromise between keeping the
    forward activations and the backward gradients at scale."""
    fan_in, fan_out = fan_in_and_fan_out(tensor.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound, generator)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, generator=None) -> Tensor:
    """He et al. (2015): U(±b) with b = gain · √(3 / fan_in) and
    gain = √(2 / (1 + a²)) for a leaky ReLU of negative slope ``a``
    (variance gain² / fan_in). With a = √5 this is b = 1/√fan_in, PyTorch's
    default for Linear and Conv2d weights."""
    fan_in, _ = fan_in_and_fan_out(tensor.shape)
    gain = math.sqrt(2.0 / (1.0 + a * a))
    bound = gain * math.sqrt(3.0 / fan_in)
    return uniform_(tensor, -bound, bound, generator)
