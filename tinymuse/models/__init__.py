"""The token models of the cascade.

- ``base``: the base transformer, 8×8 image tokens from text (chapter 6);
- ``superres``: the super-resolution transformer, 16×16 tokens from text and the base tokens.

Both train with :func:`tinymuse.train.train_stage`.
"""
from .base import BaseTransformer, BaseTransformerConfig, MaskedStep, TextContext, masked_token_loss
from .superres import SuperResTokens, SuperResTransformer, SuperResTransformerConfig

__all__ = ["BaseTransformer", "BaseTransformerConfig", "MaskedStep", "TextContext",
           "masked_token_loss", "SuperResTokens", "SuperResTransformer",
           "SuperResTransformerConfig"]
