"""Normalisation layers: layer norm (fused) and group norm.

Both standardise a group of numbers to zero mean and unit variance,

    x̂ = (x − μ) / σ,   μ = mean(x),   σ = sqrt(var(x) + ε),

and then apply a learned per-feature scale and shift, y = γ·x̂ + β. They differ
only in which numbers form a group: the last axis of each position (layer norm,
Ba et al., 2016) or a block of channels of one image (group norm, Wu & He, 2018).

Backward, in closed form. With g = dy·γ and means over the group of n numbers,

    dx = (1/σ) · (g − mean(g) − x̂ · mean(g·x̂)),

because x̂ depends on x directly (the g term), through μ (the mean(g) term) and
through σ (the x̂·mean(g·x̂) term). Written out like this the whole backward is a
handful of array passes instead of a graph of a dozen primitive operations.
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["layer_norm", "group_norm"]


def _row_dot(a, b):
    """Σ_i a[..., i]·b[..., i], keeping the last axis with size 1: a dot
    product per row, in one pass and without the temporary that
    ``(a * b).sum(-1)`` would allocate."""
    xp = backend.get_array_module(a)
    return xp.einsum("...i,...i->...", a, b)[..., None]


def _standardize(x, eps):
    """x̂ and 1/σ over the last axis of ``x`` (a new array, ``x`` untouched)."""
    xp = backend.get_array_module(x)
    x_hat = x - x.mean(axis=-1, keepdims=True)
    variance = _row_dot(x_hat, x_hat) / x.shape[-1]
    inv_std = 1.0 / xp.sqrt(variance + eps)
    x_hat *= inv_std
    return x_hat, inv_std


def _standardize_backward(g, x_hat, inv_std):
    """dx = (1/σ)(g − mean(g) − x̂·mean(g·x̂)) over the last axis.

    ``g`` must be a temporary owned by the caller: it is overwritten and
    returned as dx.
    """
    # BEGIN EXERCISE ch02_ex2
    mean_g = g.mean(axis=-1, keepdims=True)
    mean_g_x_hat = _row_dot(g, x_hat) / g.shape[-1]
    g -= mean_g
    g -= x_hat * mean_g_x_hat
    g *= inv_std
    return g
    # END EXERCISE


class LayerNormFunction(Function):
    """y = γ ⊙ (x − μ)/σ + β over the last axis, with the closed-form backward."""

    def forward(self, x, weight=None, bias=None, eps=1e-5):
        x_hat, inv_std = _standardize(x, eps)
        self.x_hat, self.inv_std, self.weight = x_hat, inv_std, weight
        # x_hat is saved for backward, so the output is always a new array
        y = x_hat * weight if weight is not None else x_hat.copy()
        if bias is not None:
            y += bias
        return y

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        x_hat, weight = self.x_hat, self.weight
        needs_x, needs_w, needs_b = self.needs_input_grad
        dx = dw = db = None
        # BEGIN EXERCISE ch02_ex2
        if needs_w:                                  # dγ = Σ over positions of dy·x̂
            size = grad.shape[-1]
            dw = xp.einsum("ni,ni->i", grad.reshape(-1, size), x_hat.reshape(-1, size))
        if needs_b:                                  # dβ = Σ over positions of dy
            db = grad.sum(axis=tuple(range(grad.ndim - 1)))
        if needs_x:
            g = grad * weight if weight is not None else grad.copy()
            dx = _standardize_backward(g, x_hat, self.inv_std)
        # END EXERCISE
        return dx, dw, db


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Layer normalisation over the last axis (size D) of ``x``, with ``weight``
    (γ) and ``bias`` (β) of shape (D,); either may be None (scale 1, shift 0)."""
    size = x.shape[-1]
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (size,):
            raise ValueError(f"layer_norm normalises the last axis of x {x.shape}, so {name} "
                             f"must have shape ({size},), got {p.shape}")
    return LayerNormFunction.apply(x, weight, bias, eps=eps)


class GroupNormFunction(Function):
    """x (N, C, *spatial) split into G groups of C/G channels; each (image,
    group) block is standardised as one set of numbers, then every channel gets
    its own γ and β."""

    def forward(self, x, weight=None, bias=None, num_groups=1, eps=1e-5):
        n, c = x.shape[:2]
        x_hat, inv_std = _standardize(x.reshape(n, num_groups, -1), eps)
        x_hat = x_hat.reshape(x.shape)
        self.x_hat, self.inv_std, self.weight = x_hat, inv_std, weight
        self.num_groups = num_groups
        per_channel = (c,) + (1,) * (x.ndim - 2)
        self.per_channel = per_channel
        y = x_hat * weight.reshape(per_channel) if weight is not None else x_hat.copy()
        if bias is not None:
            y += bias.reshape(per_channel)
        return y

    def backward(self, grad):
        x_hat, weight = self.x_hat, self.weight
        needs_x, needs_w, needs_b = self.needs_input_grad
        not_channel = (0,) + tuple(range(2, grad.ndim))
        dx = dw = db = None
        if needs_w:
            dw = (grad * x_hat).sum(axis=not_channel)
        if needs_b:
            db = grad.sum(axis=not_channel)
        if needs_x:
            g = grad * weight.reshape(self.per_channel) if weight is not None else grad.copy()
            blocks = (grad.shape[0], self.num_groups, -1)
            dx = _standardize_backward(g.reshape(blocks), x_hat.reshape(blocks), self.inv_std)
            dx = dx.reshape(grad.shape)
        return dx, dw, db


def group_norm(x: Tensor, num_groups: int, weight: Tensor | None, bias: Tensor | None,
               eps: float = 1e-5) -> Tensor:
    """Group normalisation of x (N, C, H, W) (any number of trailing spatial
    axes) with ``num_groups`` groups of channels; ``weight`` and ``bias`` have
    shape (C,) or are None. num_groups=1 normalises each whole image (like
    layer norm over C, H, W); num_groups=C is instance norm."""
    if x.ndim < 2:
        raise ValueError(f"group_norm expects x of shape (N, C, ...), got {x.shape}")
    channels = x.shape[1]
    if num_groups < 1 or channels % num_groups:
        raise ValueError(f"group_norm: {channels} channels cannot be split into "
                         f"{num_groups} equal groups; pick a divisor of {channels}")
    for name, p in (("weight", weight), ("bias", bias)):
        if p is not None and tuple(p.shape) != (channels,):
            raise ValueError(f"group_norm: {name} must have shape ({channels},), got {p.shape}")
    return GroupNormFunction.apply(x, weight, bias, num_groups=num_groups, eps=eps)
