"""The fused operations, composed from primitives.

Every function here computes exactly what its fused counterpart computes
(softmax, log-softmax, cross-entropy, layer norm, attention, GELU), but as a
chain of primitive operations — F.exp, F.sum, F.matmul, ... — each with its own
small backward. Autograd then derives the gradient of the whole chain by the
chain rule; nothing here has a hand-written backward.

Read them side by side with the fused versions: these are the definitions,
short and obviously right; the fused ones compute the same numbers with fewer
passes over memory and fewer saved intermediates. The tests check that the
two agree, values and gradients.

Import this module explicitly (``from tinymuse.ops import reference``); it is
not part of ``tinymuse.functional``.
"""
from __future__ import annotations

import math

from .. import ops as F
from ..tensor import Tensor
from .losses import check_cross_entropy_args, mean_normalizer, position_weights

__all__ = ["softmax_composed", "log_softmax_composed", "cross_entropy_composed",
           "layer_norm_composed", "attention_composed", "gelu_composed"]


def softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x − m) / Σ exp(x − m). The shift m = max x is a constant (softmax
    does not change when every input moves by the same amount), so it is
    detached: no gradient needs to flow through it."""
    shifted = x - F.max(x, axis=axis, keepdims=True).detach()
    e = F.exp(shifted)
    return e / F.sum(e, axis=axis, keepdims=True)


def log_softmax_composed(x: Tensor, axis: int = -1) -> Tensor:
    """(x − m) − log Σ exp(x − m)."""
    shifted = x - F.max(x, axis=axis, keepdims=True).detach()
    return shifted - F.log(F.sum(F.exp(shifted), axis=axis, keepdims=True))


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
    log_p = log_softmax_composed(F.reshape(logits, (safe.size, classes)), axis=-1)
    losses = -F.sum(log_p * Tensor(q), axis=-1) * Tensor(w)
    if reduction == "mean":
        return F.sum(losses) / Tensor(mean_normalizer(w))
    if reduction == "sum":
        return F.sum(losses)
    return F.reshape(losses, targets.shape)


def layer_norm_composed(x: Tensor, weight: Tensor | None, bias: Tensor | None,
                        eps: float = 1e-5) -> Tensor:
    """(x − μ) / sqrt(σ² + ε) · γ + β over the last axis."""
    centered = x - F.mean(x, axis=-1, keepdims=True)
    variance = F.mean(centered * centered, axis=-1, keepdims=True)
    y = centered / F.sqrt(variance + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y


def attention_composed(q: Tensor, k: Tensor, v: Tensor, mask=None) -> Tensor:
    """softmax(q kᵀ / √d) v, with mask True where a query may attend a key.

    Disallowed scores are set to a large negative number rather than −∞, so a
    row with no allowed key stays finite (its softmax is uniform); multiplying
    the weights by the mask afterwards zeroes such a row, which is what the
    fused operation returns for it."""
    scores = F.matmul(q, F.transpose(k, -2, -1)) / math.sqrt(q.shape[-1])
    if mask is None:
        return F.matmul(softmax_composed(scores), v)
    mask = mask.data if isinstance(mask, Tensor) else mask
    scores = F.masked_fill(scores, Tensor(q.xp.logical_not(mask)), -1e9)
    weights = softmax_composed(scores) * Tensor(mask.astype(scores.dtype))
    return F.matmul(weights, v)


def gelu_composed(x: Tensor) -> Tensor:
    """½ x (1 + tanh(√(2/π) (x + 0.044715 x³))), the tanh approximation."""
    inner = math.sqrt(2.0 / math.pi) * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + F.tanh(inner))
