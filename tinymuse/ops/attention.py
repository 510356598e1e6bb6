"""Scaled dot-product attention, fused into one operation.

Vaswani et al., 2017, "Attention Is All You Need", §3.2.1:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d) V.

Each query row of Q is compared with every key row of K; the softmax turns the
scores into weights that sum to 1, and the output is the weighted average of
the value rows. Dividing by √d keeps the scores' variance near 1 whatever the
head size d, so the softmax does not saturate.

``packed_self_attention`` is the same computation for every head of a multi-head
self-attention at once, reading q, k and v from one packed projection (B, T, 3D) and
writing the heads side by side (B, T, D); both share the forward and backward below.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["packed_self_attention", "scaled_dot_product_attention"]


def _attention_weights(q_scaled, k, mask):
    """P = softmax(Q Kᵀ/√d) over the keys, from Q/√d; masked entries (mask False) are 0, and
    a row with no allowed key at all is all zeros."""
    xp = backend.get_array_module(q_scaled)
    scores = q_scaled @ k.swapaxes(-1, -2)
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
    return p


def _matmul_into(a, b, out):
    """a @ b, written into ``out`` when one is given (a view into a larger array). NumPy's
    matmul writes into a strided ``out`` directly; for CuPy the product is copied there."""
    xp = backend.get_array_module(a)
    if out is None:
        return a @ b
    if xp is np:
        return xp.matmul(a, b, out=out)
    out[...] = a @ b
    return out


def _attention_backward(grad, saved, needs, out=(None, None, None)):
    """(dQ, dK, dV) from G = dL/dO and ``saved`` = (Q/√d, K, V, P, O), each written into the
    matching array of ``out`` when one is given (a view into a packed gradient)."""
    xp = backend.get_array_module(grad)
    q_scaled, k, v, p, o = saved
    scale = 1.0 / k.shape[-1] ** 0.5
    dq = dk = dv = None
    if needs[2]:
        dv = _matmul_into(p.swapaxes(-1, -2), grad, out[2])
    if needs[0] or needs[1]:
        ds = grad @ v.swapaxes(-1, -2)                             # dP
        ds -= xp.einsum("...i,...i->...", grad, o)[..., None]      # − r
        ds *= p                                                    # dS
        if needs[0]:
            dq = _matmul_into(ds, k, out[0])
            dq *= scale
        if needs[1]:
            dk = _matmul_into(ds.swapaxes(-1, -2), q_scaled, out[1])   # dSᵀ Q/√d
    return dq, dk, dv


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
        q_scaled = q * (1.0 / q.shape[-1] ** 0.5)   # scaling q (T×d) is cheaper than S (T×T)
        p = _attention_weights(q_scaled, k, mask)
        out = p @ v
        self.saved = (q_scaled, k, v, p, out)
        return out

    def backward(self, grad):
        return _attention_backward(grad, self.saved, self.needs_input_grad[:3])


class PackedSelfAttention(Function):
    """Multi-head self-attention on a packed projection, heads in and heads out.

    ``qkv`` (B, T, 3D) is x projected by [W_q; W_k; W_v]: q, k and v side by side, each
    with its h heads side by side (d = D/h). The output (B, T, D) has the heads side by
    side, ready for the output projection. It is exactly

        q, k, v = split(qkv, D);  heads: (B, T, D) → (B, h, T, d);
        scaled_dot_product_attention(q, k, v);  heads back: (B, h, T, d) → (B, T, D)

    (``reference.packed_self_attention_composed``), with the same backward as
    :class:`ScaledDotProductAttention`. Fused, the heads are read from qkv and written to
    the output through strided views, and dQ, dK and dV are written straight into their
    places in one gradient of qkv: none of the copies, zero-filled gradients and additions
    that the reshapes, transposes and cuts of the composed form cost in backward.
    """

    def forward(self, qkv, num_heads, mask=None):
        xp = backend.get_array_module(qkv)
        B, T, width = qkv.shape
        d = width // (3 * num_heads)
        heads = qkv.reshape(B, T, 3, num_heads, d).transpose(2, 0, 3, 1, 4)   # (3, B, h, T, d)
        q_scaled = xp.multiply(heads[0], 1.0 / d ** 0.5)     # (B, h, T, d), contiguous
        k, v = heads[1], heads[2]                            # views, read in place
        p = _attention_weights(q_scaled, k, mask)
        out = xp.empty((B, T, num_heads, d), dtype=qkv.dtype)
        _matmul_into(p, v, out.transpose(0, 2, 1, 3))        # (B, h, T, d), heads side by side
        self.saved = (q_scaled, k, v, p, out.transpose(0, 2, 1, 3))
        self.shape = qkv.shape
        return out.reshape(B, T, width // 3)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        B, T, _ = self.shape
        h, d = self.saved[1].shape[1], self.saved[1].shape[3]
        g = grad.reshape(B, T, h, d).transpose(0, 2, 1, 3)
        dqkv = xp.empty((B, T, 3, h, d), dtype=grad.dtype)
        places = tuple(dqkv[:, :, i].transpose(0, 2, 1, 3) for i in range(3))
        _attention_backward(g, self.saved, (True, True, True), out=places)
        return dqkv.reshape(self.shape)


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
        scores_shape = np.broadcast_shapes(q.shape[:-2], k.shape[:-2]) + (q.shape[-2], k.shape[-2])
        mask = _check_mask(mask, q, scores_shape)
    return ScaledDotProductAttention.apply(q, k, v, mask=mask)


def _check_mask(mask, like: Tensor, scores_shape: tuple):
    """``mask`` as a boolean array on ``like``'s device that broadcasts to ``scores_shape``."""
    mask = mask.data if isinstance(mask, Tensor) else mask
    if not hasattr(mask, "dtype"):
        mask = like.xp.asarray(mask)
    if mask.dtype != bool:
        raise TypeError(f"attention mask must be boolean (True = may attend), got dtype "
                        f"{mask.dtype}; build it with a comparison such as ids != pad_id")
    if backend.device_of(mask) != like.device:
        raise RuntimeError(f"attention mask is on {backend.device_of(mask)} but q is on "
                           f"{like.device}; move it with .to('{like.device}')")
    try:
        fits = np.broadcast_shapes(scores_shape, mask.shape) == tuple(scores_shape)
    except ValueError:
        fits = False
    if not fits:
        raise ValueError(f"attention mask {mask.shape} does not broadcast to the scores' "
                         f"shape (..., Tq, Tk) = {tuple(scores_shape)}")
    return mask


def packed_self_attention(qkv: Tensor, num_heads: int, mask=None) -> Tensor:
    """Multi-head self-attention of ``qkv`` (B, T, 3D), the packed projection
    [q | k | v] with each part's ``num_heads`` heads side by side; returns (B, T, D), heads
    side by side (see :class:`PackedSelfAttention`). ``mask`` as for
    :func:`scaled_dot_product_attention`, broadcastable to (B, num_heads, T, T)."""
    if not isinstance(qkv, Tensor) or qkv.ndim != 3:
        raise ValueError(f"packed_self_attention expects qkv as a Tensor (B, T, 3D), got "
                         f"{getattr(qkv, 'shape', type(qkv).__name__)}")
    if qkv.shape[-1] % (3 * num_heads):
        raise ValueError(f"packed_self_attention: the last axis of qkv {qkv.shape} must be "
                         f"3·D with D divisible by num_heads={num_heads}")
    B, T, _ = qkv.shape
    if mask is not None:
        mask = _check_mask(mask, qkv, (B, num_heads, T, T))
    return PackedSelfAttention.apply(qkv, num_heads=num_heads, mask=mask)
