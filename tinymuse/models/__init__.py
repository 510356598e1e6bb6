"""The token models of the cascade: the base transformer (8×8 image tokens from text).

The super-resolution transformer and the pipeline that chains the stages join it later.
"""
from .base import BaseTransformer, BaseTransformerConfig, MaskedStep, TextContext, masked_token_loss
from .superres import SuperResTokens, SuperResTransformer, SuperResTransformerConfig  # noqa: E402

__all__ = ["BaseTransformer", "BaseTransformerConfig", "MaskedStep", "TextContext",
           "masked_token_loss"]
