"""The token models of the cascade.

- ``base``: the base transformer, 8×8 image tokens from text (chapter 6);
- ``superres``: the super-resolution transformer, 16×16 tokens from text and the base tokens
  (chapter 8);
- ``autoregressive``: the baseline that draws the base stage's tokens one at a time
  (chapter 7's comparison).

They are sampled by :func:`tinymuse.decoding.sample_stage` and trained by
:mod:`tinymuse.training.transformer`.
"""
from .base import BaseTransformer, BaseTransformerConfig, MaskedStep, TextContext, masked_token_loss
from .superres import SuperResTransformer, SuperResTransformerConfig
from .autoregressive import AutoregressiveConfig, AutoregressiveTransformer, causal_mask

__all__ = ["BaseTransformer", "BaseTransformerConfig", "MaskedStep", "TextContext",
           "masked_token_loss", "SuperResTransformer", "SuperResTransformerConfig",
           "AutoregressiveConfig", "AutoregressiveTransformer", "causal_mask"]
