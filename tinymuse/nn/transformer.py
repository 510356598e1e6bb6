"""The pre-norm transformer block.

Each sub-layer reads a *normalised* copy of the stream and adds its result
back (a residual connection):

    x = x + Attention(LN₁(x))                  every token looks at every token
    x = x + CrossAttention(LN₂(x), context)    (optional) tokens look at the text
    x = x + MLP(LN₃(x))                        each token alone: Linear → GELU → Linear

Normalising *before* each sub-layer (pre-norm, as in GPT-2 and Muse) rather
than after it keeps an untouched identity path from the output back to the
input, so gradients reach early layers and deep stacks train without warm-up
tricks.
"""
from __future__ import annotations

from ..tensor import Tensor
from .attention import KeyValueCache, MultiHeadAttention
from .layers import GELU, Dropout, LayerNorm, Linear
from .module import Module, Sequential

__all__ = ["BlockCache", "TransformerBlock"]


class BlockCache:
    """The :class:`~tinymuse.nn.attention.KeyValueCache` of each attention layer of one
    block: ``self_attention`` and ``cross_attention``."""

    def __init__(self):
        self.self_attention = KeyValueCache()
        self.cross_attention = KeyValueCache()


class TransformerBlock(Module):
    """One pre-norm block on (B, T, dim) tokens.

    ``context_dim`` adds cross-attention to a (B, Tk, context_dim) context;
    ``mlp_ratio`` sets the MLP's hidden width (``mlp_ratio · dim``);
    ``dropout`` is applied to each sub-layer's output before it is added back
    (active only in ``train()`` mode). ``generator`` draws the initial weights;
    dropout masks come from ``tinymuse.backend.default_generator``.
    """

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0,
                 context_dim: int | None = None, dropout: float = 0.0, generator=None):
        super().__init__()
        hidden = int(mlp_ratio * dim)
        self.ln1 = LayerNorm(dim)
        self.attn = MultiHeadAttention(dim, num_heads, generator=generator)
        if context_dim is not None:
            self.ln2 = LayerNorm(dim)
            self.xattn = MultiHeadAttention(dim, num_heads, context_dim=context_dim,
                                            generator=generator)
        self.ln3 = LayerNorm(dim)
        self.mlp = Sequential(Linear(dim, hidden, generator=generator), GELU(),
                              Linear(hidden, dim, generator=generator))
        self.dropout = Dropout(dropout)  # masks from the default generator (tm.manual_seed)
        self.has_cross_attention = context_dim is not None

    def forward(self, x: Tensor, context: Tensor | None = None, mask=None,
                context_mask=None, cache: BlockCache | None = None) -> Tensor:
        """``mask`` restricts self-attention, ``context_mask`` (e.g. the text
        padding mask, (B, Tk)) restricts cross-attention; see
        :class:`MultiHeadAttention` for their shapes. ``cache`` (a :class:`BlockCache`)
        keeps both attentions' keys and values between calls (autoregressive sampling)."""
        self_cache, cross_cache = (None, None) if cache is None else (
            cache.self_attention, cache.cross_attention)
        x = x + self.dropout(self.attn(self.ln1(x), mask=mask, cache=self_cache))
        if self.has_cross_attention:
            if context is None:
                raise ValueError("this block has cross-attention: pass context=(B, Tk, "
                                 f"{self.xattn.context_dim})")
            x = x + self.dropout(self.xattn(self.ln2(x), context, mask=context_mask,
                                            cache=cross_cache))
        elif context is not None:
            raise ValueError("this block has no cross-attention (build it with context_dim=...) "
                             "but a context was passed")
        return x + self.dropout(self.mlp(self.ln3(x)))
