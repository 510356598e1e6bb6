"""The basic layers. Each one owns its parameters and calls one functional op.

Initialisation follows PyTorch's defaults, so results are comparable:

- ``Linear``, ``Conv2d``: weight and bias ~ U(−1/√fan_in, 1/√fan_in)
  (fan_in = inputs per output: ``in_features``, or ``in_channels · k · k``);
- ``Embedding``: weight ~ N(0, 1);
- ``LayerNorm``, ``GroupNorm``: gain 1, bias 0 (they start as pure normalisers).

Pass ``generator=`` (a :class:`tinymuse.backend.Generator`) to make the
initial values reproducible independently of anything else.
"""
from __future__ import annotations

import math

from .. import backend
from .. import functional as F
from . import init
from .module import Module, Parameter

__all__ = ["Linear", "Embedding", "LayerNorm", "GroupNorm", "Conv2d", "Dropout",
           "GELU", "SiLU", "ReLU", "Identity"]


def _empty(*shape) -> Parameter:
    """An uninitialised float32 parameter on the default device."""
    xp = backend.xp_for(backend.get_default_device())
    return Parameter(xp.empty(shape, dtype=backend.DEFAULT_DTYPE))


class Linear(Module):
    """y = x Wᵀ + b, with W of shape (out_features, in_features).

    Works on any leading shape: (..., in_features) → (..., out_features),
    as one matrix multiplication (``F.linear``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, generator=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        bound = 1.0 / math.sqrt(in_features)
        self.weight = init.uniform_(_empty(out_features, in_features), -bound, bound, generator)
        self.bias = (init.uniform_(_empty(out_features), -bound, bound, generator)
                     if bias else None)

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def fused_with(self, following):
        """``Linear`` then ``ReLU`` is one operation, ``F.linear(..., activation="relu")``,
        in a :class:`~tinymuse.nn.Sequential`. (The type is checked exactly: a subclass of
        ReLU may compute something else.)"""
        if type(following) is not ReLU:
            return None
        return lambda x: F.linear(x, self.weight, self.bias, activation="relu")

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, bias={self.bias is not None}"


class Embedding(Module):
    """A lookup table: integer ids (any shape) → rows of ``weight``
    (num_embeddings, dim), so ids of shape (B, T) give (B, T, dim)."""

    def __init__(self, num_embeddings: int, dim: int, generator=None):
        super().__init__()
        self.num_embeddings, self.dim = num_embeddings, dim
        self.weight = init.normal_(_empty(num_embeddings, dim), 0.0, 1.0, generator)

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.dim}"


class LayerNorm(Module):
    """Normalise each vector over its last axis, then scale and shift:
    y = (x − mean) / √(var + eps) · weight + bias."""

    def __init__(self, dim: int, eps: float = 1e-5, elementwise_affine: bool = True):
        super().__init__()
        self.dim, self.eps = dim, eps
        self.weight = init.ones_(_empty(dim)) if elementwise_affine else None
        self.bias = init.zeros_(_empty(dim)) if elementwise_affine else None

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.dim}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class GroupNorm(Module):
    """Split the channels of (B, C, H, W) into ``num_groups`` groups and
    normalise each group over its channels and pixels, then scale and shift
    per channel. Unlike batch norm it does not depend on the batch."""

    def __init__(self, num_groups: int, num_channels: int, eps: float = 1e-5,
                 affine: bool = True):
        super().__init__()
        if num_channels % num_groups:
            raise ValueError(f"GroupNorm: num_channels={num_channels} is not divisible "
                             f"by num_groups={num_groups}")
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self.weight = init.ones_(_empty(num_channels)) if affine else None
        self.bias = init.zeros_(_empty(num_channels)) if affine else None

    def forward(self, x):
        return F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_groups}, {self.num_channels}, eps={self.eps}"


class Conv2d(Module):
    """2-D convolution of (B, in_channels, H, W) images with
    ``out_channels`` square kernels of size ``kernel_size``."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1,
                 padding: int = 0, bias: bool = True, generator=None):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        bound = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = init.uniform_(_empty(out_channels, in_channels, kernel_size, kernel_size),
                                    -bound, bound, generator)
        self.bias = (init.uniform_(_empty(out_channels), -bound, bound, generator)
                     if bias else None)

    def forward(self, x):
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}")


class Dropout(Module):
    """In training, zero each element with probability ``p`` and scale the
    rest by 1/(1−p) (so the expected value is unchanged); in ``eval()``
    mode, pass the input through untouched."""

    def __init__(self, p: float = 0.1, generator=None):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.generator = generator  # None: the library's default generator

    def forward(self, x):
        if not self.training or self.p == 0.0:
            return x
        generator = backend.default_generator if self.generator is None else self.generator
        return F.dropout(x, self.p, True, generator)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class GELU(Module):
    """x · Φ(x), the smooth ReLU used in transformers."""

    def forward(self, x):
        return F.gelu(x)


class SiLU(Module):
    """x · σ(x) (also called swish), used in convolutional networks."""

    def forward(self, x):
        return F.silu(x)


class ReLU(Module):
    """max(x, 0)."""

    def forward(self, x):
        return F.relu(x)


class Identity(Module):
    """Returns its input: a placeholder where a layer is optional."""

    def forward(self, x):
        return x
