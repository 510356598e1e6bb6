"""The fused operations, composed from primitives.

Every function here computes exactly what its fused counterpart computes
(softmax, log-softmax, cross-entropy, layer norm, attention, packed multi-head
self-attention, GELU, a linear layer with its ReLU), but as a
chain of primitive operations — F.exp, F.sum, F.matmul, ... — each with its own
small backward. Autograd then derives the gradient of the whole chain by the
chain rule; nothing here has a hand-written backward.

Read them side by side with the fused versions: these are the definitions,
short and obviously right; the fused ones compute the same numbers with fewer
passes over memory and fewer saved intermediates. The tests check that the
two agree, values and gradients.

Import this module explicitly (``from tinymuse.ops import reference``); it is
not part of ``tinymuse.functional``. Like every module of :mod:`tinymuse.ops`
it calls the operations as functions (``sub(a, b)`` for ``a - b``), since
the operators on Tensor are attached a layer above, by :mod:`tinymuse.tensor`.
"""
from __future__ import annotations

import math

from ..autograd import Tensor
from .elementwise import add, div, exp, log, masked_fill, mul, neg, relu, sqrt, sub, tanh
from .linalg import matmul
from .losses import check_cross_entropy_args, mean_normalizer, position_weights
from .reduction import max as reduce_max, mean, sum as reduce_sum
from .shape import reshape, split, transpose

__all__ = ["softmax_composed", "log_softmax_composed", "cross_entropy_composed",
           "layer_norm_composed", "attention_composed", "packed_self_attention_composed",
           "gelu_composed", "linear_relu_composed"]


def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x − m) / Σ exp(x − m). The shift m = max x is a constant (softmax
    does not change when every input moves by the same amount), so it is
    detached: no gradient needs to flow through it."""
    shifted = sub(x, reduce_max(x, axis=axis, keepdims=True).detach())
    e = exp(shifted)
    return div(e, reduce_sum(e, axis=axis, keepdims=True))


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """(x − m) − log Σ exp(x − m)."""
    shifted = sub(x, reduce_max(x, axis=axis, keepdims=True).detach())
    return sub(shifted, log(reduce_sum(exp(shifted), axis=axis, keepdims=True)))


def cross_entropy_composed(logits: Tensor, targets, weight=None, ignore_index: int = -100,
                           label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """−Σ_c q_c log softmax(z)_c per position, weighted by w and reduced; the same
    arguments and semantics as :func:`tinymuse.ops.losses.cross_entropy`."""
    targets, weight = check_cross_entropy_args(logits, targets, weight, label_smoothing, reduction)
    xp, classes = logits.xp, logits.shape[-1]
    safe, w = position_weights(targets, weight, ignore_index, classes, logits.dtype)
    # the target distribution q = (1 − ε)·onehot(t) + ε/C, a constant
    q = xp.full((safe.size, classes), label_smoothing / classes, dtype=logits.dtype)
    q[xp.arange(safe.size), safe] += 1.0 - label_smoothing
    log_p = log_softmax_composed(reshape(logits, (safe.size, classes)), axis=-1)
    losses = mul(neg(reduce_sum(mul(log_p, Tensor(q)), axis=-1)), Tensor(w))
    if reduction == "mean":
        return div(reduce_sum(losses), Tensor(mean_normalizer(w)))
    if reduction == "sum":
        return reduce_sum(losses)
    return reshape(losses, targets.shape)


def layer_norm_composed(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                        eps: float = 1e-5) -> Tensor:
    """(x − μ) / sqrt(σ² + ε) · γ + β over the last axis."""
    centered = sub(x, mean(x, axis=-1, keepdims=True))
    variance = mean(mul(centered, centered), axis=-1, keepdims=True)
    y = div(centered, sqrt(add(variance, eps)))
    if weight is not None:
        y = mul(y, weight)
    if bias is not None:
        y = add(y, bias)
    return y


def attention_composed(q: Tensor, k: Tensor, v: Tensor, mask=None) -> Tensor:
    """softmax(q kᵀ / √d) v, with mask True where a query may attend a key.

    Disallowed scores are set to a large negative number rather than −∞, so a
    row with no allowed key stays finite (its softmax is uniform); multiplying
    the weights by the mask afterwards zeroes such a row, which is what the
    fused operation returns for it."""
    scores = div(matmul(q, transpose(k, -2, -1)), math.sqrt(q.shape[-1]))
    if mask is None:
        return matmul(softmax_composed(scores), v)
    mask = mask.data if isinstance(mask, Tensor) else mask
    scores = masked_fill(scores, Tensor(q.xp.logical_not(mask)), -1e9)
    weights = mul(softmax_composed(scores), Tensor(mask.astype(scores.dtype)))
    return matmul(weights, v)


def packed_self_attention_composed(qkv: Tensor, num_heads: int, mask=None) -> Tensor:
    """Cut (B, T, 3D) into q, k and v, each into heads (B, h, T, d), attend, and put the
    heads side by side again (B, T, D)."""
    B, T, width = qkv.shape
    D = width // 3
    d = D // num_heads

    def heads(t):
        return transpose(reshape(t, (B, T, num_heads, d)), 1, 2)

    q, k, v = (heads(t) for t in split(qkv, D, axis=-1))
    return reshape(transpose(attention_composed(q, k, v, mask), 1, 2), (B, T, D))


def linear_relu_composed(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """max(x Wᵀ + b, 0)."""
    z = matmul(x, transpose(weight, 0, 1))
    return relu(z if bias is None else add(z, bias))


def gelu_composed(x: Tensor) -> Tensor:
    """½ x (1 + tanh(√(2/π) (x + 0.044715 x³))), the tanh approximation."""
    cube = mul(mul(x, x), x)
    inner = mul(math.sqrt(2.0 / math.pi), add(x, mul(0.044715, cube)))
    return mul(mul(0.5, x), add(1.0, tanh(inner)))
