"""Text: the SentencePiece tokenizer (and, in later stages, the text encoder)."""

from .tokenizer import EOS_ID, PAD_ID, Tokenizer

__all__ = ["EOS_ID", "PAD_ID", "Tokenizer"]
