"""Turning captions into integer ids with a SentencePiece model, and back.

A text encoder cannot read strings; it reads a fixed-length row of integer ids per caption.
SentencePiece learns a vocabulary of *pieces* (whole words, parts of words, single characters)
from a corpus of captions, so that frequent words become one piece and rare ones a few pieces.

Special ids, fixed for every tokenizer tinymuse trains:

======  ===  ==============================================================================
pad     0    fills a row after the caption ends; the attention mask is False there
unk     1    a character the model never saw in training
bos     2    reserved for a begin-of-sequence marker (tinymuse does not add one)
eos     3    appended after every caption, as T5 (Muse's text encoder) does
======  ===  ==============================================================================

``encode_batch`` returns ids ``[B, max_length]`` (int32) and a boolean mask ``[B, max_length]``
that is True on real tokens (the eos included) and False on padding.
"""

import io
import json
import warnings
from pathlib import Path

import numpy as np
import sentencepiece as spm

from .. import files

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


class OutOfVocabularyError(ValueError):
    """A prompt uses a word that the captions the tokenizer was trained on never had: a model
    trained on those captions cannot know what it means. ``message``, if given, replaces the
    default text (the command points to its own list of the words)."""

    def __init__(self, word, caption, known, message=None):
        self.word, self.text, self.known = word, caption, tuple(known)
        shown = caption if len(caption) <= 80 else caption[:77] + "..."
        super().__init__(message or f"unknown word {word!r} in {shown!r}: the training captions "
                         f"never used it. The known words are: {', '.join(self.known)}")


def _words_path(model_path):
    return Path(model_path).with_suffix(".words.json")


class Tokenizer:
    """A trained SentencePiece model plus the words of the corpus it was trained on."""

    pad_id, unk_id, bos_id, eos_id = PAD_ID, UNK_ID, BOS_ID, EOS_ID

    def __init__(self, model_proto, known_words=None):
        self.model_proto = bytes(model_proto)
        self.processor = spm.SentencePieceProcessor(model_proto=self.model_proto)
        self.known_words = None if known_words is None else tuple(sorted(set(known_words)))

    # --- making, saving, loading ----------------------------------------------------------------

    @classmethod
    def train(cls, captions, vocab_size=256, path=None, model_type="bpe"):
        """Train on an iterable of caption strings; save to ``path`` if given.

        ``vocab_size`` is an upper bound: a small corpus may not support that many pieces, and
        SentencePiece then stops at fewer. With the default byte-pair encoding (BPE) and 256
        ids, every word of the shapes world becomes a single piece. Training is silent.
        """
        captions = [c for c in captions if c and c.strip()]
        if not captions:
            raise ValueError(
                "cannot train a tokenizer on no captions; pass a list of caption strings"
            )
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(captions),
            model_writer=model,
            vocab_size=vocab_size,
            hard_vocab_limit=False,  # a small corpus may hold fewer pieces than asked for
            model_type=model_type,
            character_coverage=1.0,
            pad_id=PAD_ID,
            unk_id=UNK_ID,
            bos_id=BOS_ID,
            eos_id=EOS_ID,
            minloglevel=2,  # keep SentencePiece's C++ progress log off the console
        )
        words = {word for caption in captions for word in caption.lower().split()}
        tokenizer = cls(model.getvalue(), known_words=words)
        if path is not None:
            tokenizer.save(path)
        return tokenizer

    def save(self, path):
        """Write the SentencePiece model to ``path`` (e.g. ``tokenizer.model``) and the known
        words beside it (``tokenizer.words.json``)."""
        path = Path(path)
        files.write_bytes(path, self.model_proto)
        if self.known_words is not None:
            files.write_text(_words_path(path), json.dumps(list(self.known_words), indent=0))
        return path

    @classmethod
    def load(cls, path):
        """Load a model saved by :meth:`save` (any SentencePiece ``.model`` file works too)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no tokenizer model at {path}; train one with Tokenizer.train")
        words_path = _words_path(path)
        words = json.loads(words_path.read_text()) if words_path.is_file() else None
        return cls(path.read_bytes(), known_words=words)

    @property
    def vocab_size(self):
        """Number of ids, special ones included; every id is in ``range(vocab_size)``."""
        return self.processor.get_piece_size()

    # --- encoding and decoding ------------------------------------------------------------------

    def encode(self, caption):
        """The ids of one caption, eos included, without padding."""
        return self.processor.encode(caption) + [EOS_ID]

    def encode_batch(self, captions, max_length=32):
        """``(ids, mask)``: int32 ``[B, max_length]`` ids, padded with 0, and a bool mask that is
        True on real tokens. A caption with more than ``max_length`` tokens (eos included) is cut
        to its first ``max_length - 1`` tokens plus eos, with a warning."""
        if isinstance(captions, str):
            raise TypeError("encode_batch takes a list of captions; for one caption use encode()")
        if max_length < 2:
            raise ValueError(f"max_length must leave room for a token and eos, got {max_length}")
        captions = list(captions)
        ids = np.full((len(captions), max_length), PAD_ID, dtype=np.int32)
        mask = np.zeros((len(captions), max_length), dtype=bool)
        truncated = []
        for row, pieces in enumerate(self.processor.encode(captions)):
            if len(pieces) + 1 > max_length:
                truncated.append(captions[row])
                pieces = pieces[: max_length - 1]
            tokens = pieces + [EOS_ID]
            ids[row, : len(tokens)] = tokens
            mask[row, : len(tokens)] = True
        if truncated:
            warnings.warn(
                f"{len(truncated)} caption(s) had more than max_length={max_length} tokens and "
                f"were truncated, e.g. {truncated[0]!r}; raise max_length to keep them whole",
                stacklevel=2,
            )
        return ids, mask

    def decode(self, ids):
        """The text of one row of ids; padding and special ids are skipped."""
        ids = [int(i) for i in np.asarray(ids).reshape(-1)]
        return self.processor.decode([i for i in ids if i > EOS_ID])

    def decode_batch(self, ids):
        """The texts of a ``[B, L]`` array of ids."""
        return [self.decode(row) for row in np.asarray(ids)]

    def pieces(self, caption):
        """The pieces a caption splits into, as strings (``▁`` marks the start of a word)."""
        return self.processor.encode(caption, out_type=str)

    # --- checking prompts -----------------------------------------------------------------------

    def check_words(self, caption):
        """Raise :class:`OutOfVocabularyError` if ``caption`` has a word the training corpus
        never had (a model cannot know what such a word means)."""
        if self.known_words is None:
            raise ValueError(
                "this tokenizer has no list of known words (it was not trained by tinymuse)"
            )
        known = set(self.known_words)
        for word in caption.lower().split():
            if word not in known:
                raise OutOfVocabularyError(word, caption, self.known_words)

    def __repr__(self):
        return f"Tokenizer(vocab_size={self.vocab_size})"
