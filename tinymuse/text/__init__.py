"""Text: the SentencePiece tokenizer, the text encoder and its masked-language-model
pretraining (Muse conditions on a frozen pretrained language model; so does tinymuse)."""

from .encoder import TextEncoder, TextEncoderConfig, TextEncoding
from .pretrain import PretrainConfig, pretrain_text_encoder
from .tokenizer import EOS_ID, PAD_ID, Tokenizer

__all__ = ["EOS_ID", "PAD_ID", "Tokenizer", "TextEncoder", "TextEncoderConfig", "TextEncoding",
           "PretrainConfig", "pretrain_text_encoder"]
