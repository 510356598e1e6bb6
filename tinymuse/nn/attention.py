"""Multi-head attention.

Each position of ``x`` asks a *query*; every position of the sequence it
attends to (``x`` itself, or a ``context`` such as text embeddings) offers a
*key* and a *value*. A query takes the values weighted by how well it matches
each key:

    Attention(Q, K, V) = softmax(Q Kᵀ / √d) V            (Vaswani et al., 2017)

With ``h`` heads the model dimension D is cut into h slices of d = D / h, each
head attends on its own, and an output projection mixes the heads again:

    MultiHead(x) = concat(head_1, ..., head_h) W_o,   head_i = Attention(x W_q^i, c W_k^i, c W_v^i)

Heads are not a loop: each projection is one matrix product for all heads,
whose output is reshaped to (B, h, T, d), so all heads run in one batched
call of the fused ``F.scaled_dot_product_attention``.
"""
from __future__ import annotations

from .. import backend
from .. import functional as F
from ..tensor import Tensor
from .layers import Linear
from .module import Module

__all__ = ["KeyValueCache", "MultiHeadAttention"]


class KeyValueCache:
    """The keys and values one attention layer has computed so far, kept between calls.

    An autoregressive model draws a sequence one position at a time, and at step ``t`` the
    causal self-attention of position ``t`` needs the keys and values of positions
    ``0 … t``. Those of ``0 … t−1`` do not change once computed (causality: a position never
    sees later ones), so they are kept here and each call adds only the new position's:
    step ``t`` projects one position instead of ``t + 1``. For cross-attention the keys and
    values come from the fixed context and are computed once, on the first call.

    ``keys`` and ``values`` are arrays (B, H, T_seen, d), None before the first call.
    """

    def __init__(self):
        self.keys = None
        self.values = None

    def __len__(self) -> int:
        return 0 if self.keys is None else self.keys.shape[2]

    def extend(self, keys, values):
        """Append new positions' ``keys`` and ``values`` (B, H, T_new, d); return all of
        them (B, H, T_seen, d) as Tensors."""
        if self.keys is None:
            self.keys, self.values = keys, values
        else:
            xp = backend.get_array_module(keys)
            self.keys = xp.concatenate([self.keys, keys], axis=2)
            self.values = xp.concatenate([self.values, values], axis=2)
        return Tensor(self.keys), Tensor(self.values)


def _stacked_linear(x: Tensor, *layers: Linear) -> Tensor:
    """The outputs of ``layers`` side by side, ``[layer(x) for layer in layers]`` joined on
    the last axis, as one matrix product: the layers' weights (and biases) are stacked."""
    weight = F.concatenate([layer.weight for layer in layers], axis=0)
    biases = [layer.bias for layer in layers]
    bias = None if biases[0] is None else F.concatenate(biases, axis=0)
    return F.linear(x, weight, bias)


class MultiHeadAttention(Module):
    """Self-attention, or cross-attention when ``context_dim`` is given.

    Queries come from ``x`` (projection ``q``); keys and values (projections
    ``k`` and ``v``) come from ``x`` itself (self-attention) or from a
    ``context`` of width ``context_dim`` (cross-attention).

    ``forward(x, context=None, mask=None)``: ``x`` is (B, Tq, D), ``context``
    (B, Tk, context_dim). ``mask`` is boolean with True = "may attend":

    - (B, Tk): which keys are real tokens (e.g. a text padding mask), the same
      for every query and head;
    - (B, Tq, Tk) or anything that broadcasts to (B, h, Tq, Tk): a pattern
      per query (e.g. a causal mask of shape (1, 1, T, T)).

    A query allowed no key at all gets a zero output (see the fused op).

    ``cache`` (a :class:`KeyValueCache`, for sampling without a graph) keeps the keys and
    values between calls: self-attention appends this call's positions to the cached ones
    and attends to all of them; cross-attention computes the context's once and reuses them.

    The projections ``q``, ``k`` and ``v`` are three ``Linear`` layers (their weights are
    what a checkpoint stores), but self-attention runs them as one: the three weight
    matrices are stacked into one (3D, D) matrix, x is projected once,
    ``[q | k | v] = x [W_q; W_k; W_v]ᵀ``, and ``F.packed_self_attention`` attends on that
    packed result directly, reading each head where it lies and writing dL/dq, dL/dk and
    dL/dv into one gradient. One larger matrix product keeps BLAS busier than three small
    ones, and dL/dx is one product instead of three added up. With a cache, the packed
    projection is cut into q, k and v (``split``). Cross-attention projects x with ``q``
    and the context with ``k`` and ``v``, one product each.
    """

    def __init__(self, dim: int, num_heads: int, context_dim: int | None = None,
                 bias: bool = True, generator=None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"MultiHeadAttention: dim={dim} is not divisible by "
                             f"num_heads={num_heads}")
        self.dim, self.num_heads, self.head_dim = dim, num_heads, dim // num_heads
        self.context_dim = context_dim
        source_dim = dim if context_dim is None else context_dim
        self.q = Linear(dim, dim, bias=bias, generator=generator)
        self.k = Linear(source_dim, dim, bias=bias, generator=generator)
        self.v = Linear(source_dim, dim, bias=bias, generator=generator)
        self.out = Linear(dim, dim, bias=bias, generator=generator)

    @property
    def is_cross_attention(self) -> bool:
        return self.context_dim is not None

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None,
                cache: KeyValueCache | None = None) -> Tensor:
        if x.ndim != 3 or x.shape[-1] != self.dim:
            raise ValueError(f"{type(self).__name__} expects x of shape (B, T, {self.dim}), "
                             f"got {x.shape}")
        B, Tq, _ = x.shape
        if self.is_cross_attention:
            if context is None:
                raise ValueError("this is a cross-attention layer: pass context=(B, Tk, "
                                 f"{self.context_dim})")
            if context.ndim != 3 or context.shape[0] != B or context.shape[-1] != self.context_dim:
                raise ValueError(f"context must have shape ({B}, Tk, {self.context_dim}), "
                                 f"got {context.shape}")
            source = context
        else:
            if context is not None:
                raise ValueError("this is a self-attention layer (no context_dim was given), "
                                 "but a context was passed")
            source = x
        if not self.is_cross_attention and cache is None:   # training, and drawing in parallel
            qkv = _stacked_linear(x, self.q, self.k, self.v)                # (B, T, 3D)
            if mask is not None:
                mask = self._attention_mask(mask, B, Tq, Tq, x.device)
            return self.out(F.packed_self_attention(qkv, self.num_heads, mask=mask))
        q, k, v = self._project(x, source, cache)
        Tk = k.shape[2]
        if mask is not None:
            mask = self._attention_mask(mask, B, Tq, Tk, x.device)
        y = F.scaled_dot_product_attention(q, k, v, mask=mask)            # (B, H, Tq, d)
        return self.out(y.transpose(1, 2).reshape(B, Tq, self.dim))       # heads side by side

    def _project(self, x: Tensor, source: Tensor, cache: KeyValueCache | None):
        """q (B, H, Tq, d) from x; k and v (B, H, Tk, d) from the source, the cache's, or
        both (self-attention with a cache: the cached positions, then this call's)."""
        if self.is_cross_attention:
            q = self._split_heads(self.q(x))
            if cache is not None and len(cache):
                return q, Tensor(cache.keys), Tensor(cache.values)  # the context's, from call one
            k, v = self.k(source), self.v(source)
        else:
            q, k, v = F.split(_stacked_linear(x, self.q, self.k, self.v), self.dim, axis=-1)
            q = self._split_heads(q)
        k, v = self._split_heads(k), self._split_heads(v)
        if cache is not None:
            k, v = cache.extend(k.data, v.data)                         # (B, H, T_seen, d)
        return q, k, v

    def _split_heads(self, t: Tensor) -> Tensor:
        """(B, T, D) → (B, H, T, d): head h owns features h·d ... (h+1)·d − 1."""
        B, T, _ = t.shape
        return t.reshape(B, T, self.num_heads, self.head_dim).transpose(1, 2)

    def _attention_mask(self, mask, B: int, Tq: int, Tk: int, device: str):
        """A boolean array that broadcasts to (B, H, Tq, Tk)."""
        mask = mask.data if isinstance(mask, Tensor) else mask
        if mask.dtype != bool:
            raise TypeError(f"attention mask must be boolean (True = may attend), "
                            f"got dtype {mask.dtype}")
        mask = backend.to_device(mask, device)
        if mask.ndim == 2:        # (B, Tk): a key padding mask
            if mask.shape != (B, Tk):
                raise ValueError(f"a 2-D attention mask is a key mask of shape (B, Tk) = "
                                 f"({B}, {Tk}), got {mask.shape}")
            return mask[:, None, None, :]
        if mask.ndim == 3:        # (B, Tq, Tk): the same for every head
            mask = mask[:, None]
        target = (B, self.num_heads, Tq, Tk)
        if mask.ndim != 4 or any(m not in (1, t) for m, t in zip(mask.shape, target)):
            raise ValueError(f"attention mask of shape {mask.shape} does not broadcast to "
                             f"(B, heads, Tq, Tk) = {target}")
        return mask

    def extra_repr(self) -> str:
        kind = f", context_dim={self.context_dim}" if self.is_cross_attention else ""
        return f"dim={self.dim}, num_heads={self.num_heads}{kind}"
