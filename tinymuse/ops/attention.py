"""Scaled dot-product attention, fused into one operation.

Vaswani et al., 2017, "Attention Is All You Need", §3.2.1:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d) V.

Each query row of Q is compared with every key row of K; the softmax turns the
scores into weights that sum to 1, and the output is the weighted average of
the value rows. Dividing by √d keeps the scores' variance near 1 whatever the
head size d, so the softmax does not saturate.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["scaled_dot_product_attention"]


class ScaledDotProductAttention(Function):
    """Forward: S = Q Kᵀ/√d, P = softmax(S) over keys (masked), O = P V.

    Backward, by the chain rule through the three steps, with G = dL/dO:

        dV = Pᵀ G
        dP = G Vᵀ
        dS = P ⊙ (dP − r),   r_i = Σ_j dP_ij P_ij = G_i · O_i
        dQ = dS K / √d,      dK = dSᵀ Q / √d.

    The row sums r are computed from G and O (size T·d) rather than from dP
    and P (size T·T), as FlashAttention does (Dao et al., 2022). Masked entries
    have P = 0, so they receive no gradient without the mask being stored.
    """

    def forward(self, q, k, v, mask=None):
        xp = backend.get_array_module(q)
        scale = 1.0 / q.shape[-1] ** 0.5
        scores = (q * scale) @ k.swapaxes(-1, -2)    # scaling q (T×d) is cheaper than S (T×T)
        if mask is not None:
            xp.copyto(scores, -xp.inf, where=xp.logical_not(mask))
        row_max = scores.max(axis=-1, keepdims=True)
        if mask is not None:  # a row with no allowed key is all -inf: keep it finite
            row_max[row_max == -xp.inf] = 0
        scores -= row_max
        p = xp.exp(scores, out=scores)
        total = p.sum(axis=-1, keepdims=True)
        if mask is not None:  # ... and there every exp is 0: divide by 1, keep zeros
            total[total == 0] = 1
        p /= total
        out = p @ v
        self.q, self.k, self.v, self.p, self.out, self.scale = q, k, v, p, out, scale
        return out

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        need_q, need_k, need_v = self.needs_input_grad[:3]
        p = self.p
        dq = dk = dv = None
        if need_v:
            dv = p.swapaxes(-1, -2) @ grad
        if need_q or need_k:
            ds = grad @ self.v.swapaxes(-1, -2)                   # dP
            ds -= xp.einsum("...i,...i->...", grad, self.out)[..., None]   # − r
            ds *= p                                                # dS
            if need_q:
                dq = ds @ self.k
                dq *= self.scale
            if need_k:
                dk = ds.swapaxes(-1, -2) @ self.q
                dk *= self.scale
        return dq, dk, dv


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, mask=None) -> Tensor:
    """softmax(q kᵀ / √d) v for q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv).

    The leading axes (batch, heads) broadcast. ``mask`` is an optional boolean
    array or Tensor broadcastable to (..., Tq, Tk): True where query i may
    attend to key j. A query row with no allowed key at all attends to nothing
    and its output is zeros (not NaN, as a plain softmax over −∞ would give).
    """
    if not all(isinstance(t, Tensor) for t in (q, k, v)):
        raise TypeError("scaled_dot_product_attention expects q, k and v as Tensors")
    if q.ndim < 2 or k.ndim < 2 or v.ndim < 2:
        raise ValueError(f"attention expects q (..., Tq, d), k (..., Tk, d), v (..., Tk, dv); "
                         f"got {q.shape}, {k.shape}, {v.shape}")
    if q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2]:
        raise ValueError(f"attention: q and k must share the last axis d, k and v the key axis "
                         f"Tk; got q {q.shape}, k {k.shape}, v {v.shape}")
    if mask is not None:
        mask = mask.data if isinstance(mask, Tensor) else mask
        if not hasattr(mask, "dtype"):
            mask = q.xp.asarray(mask)
        if mask.dtype != bool:
            raise TypeError(f"attention mask must be boolean (True = may attend), got dtype "
                            f"{mask.dtype}; build it with a comparison such as ids != pad_id")
        if backend.device_of(mask) != q.device:
            raise RuntimeError(f"attention mask is on {backend.device_of(mask)} but q is on "
                               f"{q.device}; move it with .to('{q.device}')")
        scores_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2])
        try:
            fits = np.broadcast_shapes(scores_shape, mask.shape) == scores_shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"attention mask {mask.shape} does not broadcast to the scores' "
                             f"shape (..., Tq, Tk) = {scores_shape}")
    return ScaledDotProductAttention.apply(q, k, v, mask=mask)
