"""Text: the SentencePiece tokenizer, the text encoder and its masked-language-model objective
(Muse conditions on a frozen pretrained language model; so does tinymuse). The encoder is
trained by :func:`tinymuse.training.text.pretrain_text_encoder`."""

from .encoder import TextEncoder, TextEncoderConfig, TextEncoding
from .mlm import MaskedLanguageModel, mask_caption_tokens, mlm_loss
from .tokenizer import EOS_ID, PAD_ID, OutOfVocabularyError, Tokenizer

__all__ = ["EOS_ID", "PAD_ID", "Tokenizer", "OutOfVocabularyError", "TextEncoder",
           "TextEncoderConfig", "TextEncoding", "MaskedLanguageModel", "mask_caption_tokens",
           "mlm_loss"]
