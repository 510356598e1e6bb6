"""Reductions: sum, mean, max, min, var and argmax over axes.

``axis`` is an int, a tuple of ints or None (all axes); negative axes count
from the end. With ``keepdims=True`` the reduced axes stay as size 1.

A reduction's backward spreads each output gradient back over the elements
it was computed from: ``sum`` copies it to every element, ``mean`` divides it
by their number, ``max`` gives it to the winner(s). The output gradient is
first reshaped so the reduced axes have size 1 (as with ``keepdims=True``),
which lets it broadcast against the input.
"""
from __future__ import annotations

import math

from .. import backend
from ..autograd import Function, Tensor
from .shape import normalize_axes

__all__ = ["sum", "mean", "max", "min", "var", "argmax"]


def _kept_shape(shape: tuple, axes: tuple) -> tuple:
    """``shape`` with the reduced ``axes`` set to 1 (the keepdims shape)."""
    return tuple(1 if i in axes else n for i, n in enumerate(shape))


def _count(shape: tuple, axes: tuple) -> int:
    """How many input elements go into each output element."""
    return math.prod(shape[i] for i in axes)


class Sum(Function):
    """y = Σ x over ``axes``; every x gets dL/dy of the sum it went into."""

    def forward(self, x, *, axes, keepdims):
        self.shape, self.axes = x.shape, axes
        return backend.get_array_module(x).sum(x, axis=axes, keepdims=keepdims)

    def backward(self, grad):
        grad = grad.reshape(_kept_shape(self.shape, self.axes))
        return backend.get_array_module(grad).broadcast_to(grad, self.shape)


class Mean(Function):
    """y = (1/n) Σ x over ``axes``; every x gets dL/dy / n."""

    def forward(self, x, *, axes, keepdims):
        self.shape, self.axes = x.shape, axes
        return backend.get_array_module(x).mean(x, axis=axes, keepdims=keepdims)

    def backward(self, grad):
        grad = grad.reshape(_kept_shape(self.shape, self.axes)) / _count(self.shape, self.axes)
        return backend.get_array_module(grad).broadcast_to(grad, self.shape)


class _Extremum(Function):
    """y = max (or min) of x over ``axes``. The gradient goes to the element(s)
    equal to the result; when several tie, it is split equally among them, so
    the gradients of one reduced group always add up to dL/dy."""

    reduce = None  # "max" or "min"

    def forward(self, x, *, axes, keepdims):
        xp = backend.get_array_module(x)
        out = getattr(xp, self.reduce)(x, axis=axes, keepdims=True)
        self.x, self.axes, self.out = x, axes, out
        return out if keepdims else out.reshape([n for i, n in enumerate(out.shape)
                                                 if i not in axes])

    def backward(self, grad):
        winners = self.x == self.out
        count = winners.sum(axis=self.axes, keepdims=True, dtype=grad.dtype)
        return winners * (grad.reshape(self.out.shape) / count)


class Max(_Extremum):
    reduce = "max"


class Min(_Extremum):
    reduce = "min"


class Var(Function):
    """Variance, v = Σ (x − x̄)² / (n − correction), with x̄ the mean over ``axes``.

    dv/dx_i = 2 (x_i − x̄) / (n − correction): the term through x̄ vanishes
    because the deviations sum to zero. correction=0 is the population
    variance (as in layer norm), correction=1 the unbiased sample variance.
    """

    def forward(self, x, *, axes, keepdims, divisor):
        xp = backend.get_array_module(x)
        centered = x - xp.mean(x, axis=axes, keepdims=True)
        self.centered, self.axes, self.divisor = centered, axes, divisor
        return xp.sum(centered * centered, axis=axes, keepdims=keepdims) / divisor

    def backward(self, grad):
        grad = grad.reshape(_kept_shape(self.centered.shape, self.axes))
        return grad * 2 * self.centered / self.divisor


def _reduction_input(x, name: str, axis) -> tuple[Tensor, tuple]:
    x = x if isinstance(x, Tensor) else Tensor(x)
    axes = normalize_axes(axis, x.ndim, name)
    return x, (tuple(range(x.ndim)) if axes is None else axes)


def _check_not_empty(x: Tensor, axes: tuple, name: str) -> None:
    if _count(x.shape, axes) == 0:
        raise ValueError(f"{name}: cannot reduce over an empty axis (tensor of shape {x.shape}, "
                         f"axes {axes})")


def _as_float(x: Tensor) -> Tensor:
    return x if x.dtype.kind == "f" else x.astype(backend.DEFAULT_DTYPE)


def sum(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001 (shadows the builtin here only)
    """Sum over ``axis`` (int, tuple or None for all)."""
    x, axes = _reduction_input(x, "sum", axis)
    return Sum.apply(x, axes=axes, keepdims=keepdims)


def mean(x, axis=None, keepdims=False) -> Tensor:
    """Mean over ``axis``. Integer and bool tensors give float32, so
    ``(predictions == labels).mean()`` is the accuracy."""
    x, axes = _reduction_input(x, "mean", axis)
    return Mean.apply(_as_float(x), axes=axes, keepdims=keepdims)


def max(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Largest value over ``axis``; on ties the gradient is split equally."""
    x, axes = _reduction_input(x, "max", axis)
    _check_not_empty(x, axes, "max")
    return Max.apply(x, axes=axes, keepdims=keepdims)


def min(x, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Smallest value over ``axis``; on ties the gradient is split equally."""
    x, axes = _reduction_input(x, "min", axis)
    _check_not_empty(x, axes, "min")
    return Min.apply(x, axes=axes, keepdims=keepdims)


def var(x, axis=None, keepdims=False, correction=0) -> Tensor:
    """Variance over ``axis``: Σ (x − mean)² / (n − correction).

    ``correction=0`` (the default) divides by n, like NumPy and layer norm;
    ``correction=1`` divides by n − 1, like ``torch.var``'s default.
    """
    x, axes = _reduction_input(x, "var", axis)
    divisor = _count(x.shape, axes) - correction
    if divisor <= 0:
        raise ValueError(f"var: {_count(x.shape, axes)} elements per group with "
                         f"correction={correction} would divide by {divisor}; reduce over more "
                         f"elements or lower the correction")
    return Var.apply(_as_float(x), axes=axes, keepdims=keepdims, divisor=divisor)


def argmax(x, axis=None, keepdims=False) -> Tensor:
    """Index of the largest value along ``axis`` (an int, or None for the
    flattened tensor), as an int64 tensor. Not differentiable."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    if isinstance(axis, (tuple, list)):
        raise TypeError("argmax: axis must be an int or None, not a tuple")
    if axis is not None:
        (axis,) = normalize_axes(axis, x.ndim, "argmax")
    _check_not_empty(x, tuple(range(x.ndim)) if axis is None else (axis,), "argmax")
    return Tensor(x.xp.argmax(x.data, axis=axis, keepdims=keepdims).astype("int64", copy=False))

