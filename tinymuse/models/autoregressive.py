"""The autoregressive baseline: the same image tokens, drawn one at a time in raster order.

Before MaskGIT, transformers drew VQ tokens the way language models draw words (VQGAN,
Esser et al., 2021; Parti, Yu et al., 2022): read the grid row by row as a sequence
``x_0, x_1, …, x_{N−1}`` and factor its probability by the chain rule,

    p(x | c) = Π_i p(x_i | x_0 … x_{i−1}, c),

so drawing a grid takes ``N`` model calls, one per token. This model is that baseline, built
to differ from the base transformer (:mod:`tinymuse.models.base`) in the attention pattern
only: the same text encoder and cross-attention, the same blocks, widths and loss.

    input    [START], x_0, …, x_{N−2}                the grid shifted right by one
    h₀       = E[input] + P
    h        = Block_L(… Block_1(h₀, c, causal))    position i attends to positions ≤ i only
    logits   = W · LayerNorm(h)                      (B, N, K): row i predicts x_i
    loss     = Σ_i CE_ε(logits_i, x_i) / N           every position is a target

``[START] = codebook_size`` takes the row of the embedding where the masked model keeps
``[MASK]``. The causal mask is what makes one forward pass train all ``N`` predictions at
once (teacher forcing), and what makes sampling cheap: the keys and values of the tokens
already drawn never change, so a :class:`~tinymuse.nn.BlockCache` keeps them and each
sampling step runs the model on one new position (:meth:`AutoregressiveTransformer.next_logits`).
Caption dropout is the base model's, so the same classifier-free guidance applies at every
step. Sampling is :func:`tinymuse.raster.sample_raster`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..tensor import Tensor, no_grad
from .base import BaseTransformer, MaskedStep, TextContext, TokenModelConfig

__all__ = ["AutoregressiveConfig", "AutoregressiveTransformer", "causal_mask"]


@dataclass
class AutoregressiveConfig(TokenModelConfig):
    """Sizes and training choices of an :class:`AutoregressiveTransformer`: the fields every
    token model shares (:class:`~tinymuse.models.base.TokenModelConfig`); no mask schedule,
    since a model that never masks has none."""

    @property
    def start_id(self) -> int:
        """The id fed before the first token: one past the codebook."""
        return self.codebook_size


def causal_mask(length: int, device: str = "cpu"):
    """Bool (1, 1, T, T), True where query ``i`` may attend to key ``j``: ``j ≤ i``."""
    xp = backend.xp_for(device)
    return xp.tril(xp.ones((length, length), dtype=bool))[None, None]


class AutoregressiveTransformer(BaseTransformer):
    """A text-conditioned transformer that predicts each image token from the ones before it
    in raster order. The text side (tokenizing, the frozen encoder, caption dropout, files)
    is the base transformer's; only the token side differs."""

    KIND = "autoregressive_transformer"
    config_type = AutoregressiveConfig

    def __init__(self, config: AutoregressiveConfig | None = None, text_encoder=None,
                 tokenizer=None, generator=None):
        super().__init__(config or AutoregressiveConfig(), text_encoder, tokenizer, generator)

    def logits(self, tokens, context: TextContext) -> Tensor:
        """Logits (B, N, K) for whole grids ``tokens`` (B, N) or (B, h, w): row ``i`` is the
        distribution of token ``i`` given tokens ``0 … i−1`` and the text, so it does not
        depend on token ``i`` or any later one."""
        tokens = self.token_rows(tokens, context)
        batch = tokens.shape[0]
        xp = backend.xp_for(self.device)
        start = xp.full((batch, 1), self.config.start_id, dtype=np.int64)
        inputs = xp.concatenate([start, tokens[:, :-1].astype(np.int64)], axis=1)
        x = self.token_embedding(inputs) + self.positions                 # (B, N, d)
        mask = causal_mask(self.config.num_tokens, self.device)
        for block in self.blocks:
            x = block(x, context.embeddings, mask=mask, context_mask=context.mask)
        return self.head(self.norm(x))

    forward = logits

    def training_loss(self, batch: dict, generator: backend.Generator) -> MaskedStep:
        """Next-token cross-entropy over every position of ``tokens`` (B, h, w), the captions
        given as ``text_ids``/``text_mask``; caption dropout as in the base model (the only
        draw from ``generator``). ``num_masked`` counts the predicted tokens: all of them."""
        tokens = backend.to_device(batch["tokens"], self.device)
        tokens = tokens.reshape(tokens.shape[0], -1).astype(np.int64, copy=False)
        ids = backend.to_device(batch["text_ids"], self.device)
        text_mask = backend.to_device(batch["text_mask"], self.device)
        ids, text_mask, _ = self.drop_captions(ids, text_mask, generator)
        logits = self.logits(tokens, self.encode_text(ids, text_mask))
        loss = F.cross_entropy(logits, tokens, label_smoothing=self.config.label_smoothing)
        accuracy = float((logits.data.argmax(axis=-1) == tokens).mean())
        return MaskedStep(loss, accuracy, int(tokens.size))

    # ------------------------------------------------------------ sampling
    def new_cache(self) -> list:
        """An empty key/value cache for :meth:`next_logits`: one per block."""
        return [nn.BlockCache() for _ in self.blocks]

    def next_logits(self, previous, position: int, context: TextContext, cache: list):
        """Logits (B, K) of token ``position`` given the token drawn at ``position − 1``
        (``previous``, ints (B,); ignored at position 0, where [START] is read) and ``cache``,
        which holds every earlier position and gains this one. Call it for positions 0, 1, 2,
        … in order with one cache; it runs the model on one position, without a graph."""
        if position != len(cache[0].self_attention):
            raise ValueError(f"the cache holds {len(cache[0].self_attention)} positions, so "
                             f"the next one is {len(cache[0].self_attention)}, not {position}")
        xp = backend.xp_for(self.device)
        batch = context.embeddings.shape[0]
        if position == 0:
            previous = xp.full((batch,), self.config.start_id, dtype=np.int64)
        previous = backend.to_device(previous, self.device).astype(np.int64).reshape(batch, 1)
        with no_grad():
            x = self.token_embedding(previous) + self.positions[position:position + 1]
            for block, block_cache in zip(self.blocks, cache):
                x = block(x, context.embeddings, context_mask=context.mask, cache=block_cache)
            return self.head(self.norm(x)).data[:, 0]
