"""The text encoder: caption token ids → one embedding per token.

Muse conditions its image transformers on a large *frozen* language model (T5-XXL): the
caption is run through the language model once, and every image token may look at every
text token's embedding through cross-attention. The language model is never trained on
images; it was pretrained on text alone, and its embeddings already know that "red" and
"blue" are colours and that "two" counts.

tinymuse mirrors that at toy size. :class:`TextEncoder` is a small transformer encoder over
SentencePiece ids:

    h₀ = [CLS; E[ids]] + P          token embeddings plus learned positions
    h  = Block_L(… Block_1(h₀))      pre-norm self-attention blocks (padding masked out)
    out = LayerNorm(h)               (B, 1 + T, d): one vector per token, CLS first

It is pretrained with a masked-language-model objective on captions
(:mod:`tinymuse.text.mlm`, trained by :mod:`tinymuse.training.text`) and then used frozen by
the image stages.

The [CLS] slot. The encoder puts a learned [CLS] token in front of every caption. It is
always a real token (its mask entry is True), so even the *empty* prompt, the
unconditional branch of classifier-free guidance, gives a valid context of one token.
Without it, an empty caption would leave cross-attention with no key to attend to, and its
softmax would be 0/0.

Ids and masks come from :meth:`tinymuse.text.tokenizer.Tokenizer.encode_batch`: ``ids`` is an
int array (B, T) padded with ``pad_id`` and ``mask`` a bool array (B, T), True on real tokens.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import backend, checkpoint, nn
from ..tensor import Tensor

__all__ = ["TextEncoderConfig", "TextEncoder", "TextEncoding"]


@dataclass
class TextEncoderConfig:
    """Sizes of a :class:`TextEncoder`.

    ``vocab_size`` must match the SentencePiece tokenizer. Two more embedding rows are
    reserved after the vocabulary: ``mask_id = vocab_size`` (the [MASK] of MLM pretraining)
    and ``cls_id = vocab_size + 1``. ``max_length`` counts caption tokens, without [CLS].
    """

    vocab_size: int = 256
    max_length: int = 32
    d_model: int = 128
    num_layers: int = 2
    num_heads: int = 4
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    pad_id: int = 0

    @property
    def mask_id(self) -> int:
        return self.vocab_size

    @property
    def cls_id(self) -> int:
        return self.vocab_size + 1

    @classmethod
    def from_dict(cls, values: dict) -> "TextEncoderConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown TextEncoderConfig fields {sorted(unknown)}; "
                             f"known: {sorted(names)}")
        return cls(**values)


class TextEncoding(NamedTuple):
    """The encoder's output: ``embeddings`` (B, 1 + T, d) with [CLS] first, and ``mask``
    (B, 1 + T), True on [CLS] and on real tokens. Vectors at padded positions are
    meaningless: attention must ignore them (pass ``mask`` on)."""

    embeddings: Tensor
    mask: object  # a bool array on the embeddings' device


class TextEncoder(nn.Module):
    """A pre-norm transformer encoder over caption ids (see the module docstring)."""

    def __init__(self, config: TextEncoderConfig | None = None, generator=None):
        super().__init__()
        self.config = config = config or TextEncoderConfig()
        d = config.d_model
        # vocab_size + 2 rows: the vocabulary, then [MASK], then [CLS].
        self.token_embedding = nn.Embedding(config.vocab_size + 2, d, generator=generator)
        self.positions = nn.Parameter(np.zeros((config.max_length + 1, d), np.float32))
        # Small embeddings (σ = 0.02, as in BERT and GPT-2) keep the residual stream at a
        # scale that the pre-norm blocks' additions can change from the first step on.
        nn.init.normal_(self.token_embedding.weight, 0.0, 0.02, generator)
        nn.init.normal_(self.positions, 0.0, 0.02, generator)
        self.blocks = nn.ModuleList([
            nn.TransformerBlock(d, config.num_heads, config.mlp_ratio, dropout=config.dropout,
                                generator=generator)
            for _ in range(config.num_layers)])
        self.norm = nn.LayerNorm(d)

    def forward(self, ids, mask, allow_mask_token: bool = False) -> TextEncoding:
        """Encode a padded batch: ``ids`` int (B, T), ``mask`` bool (B, T) → :class:`TextEncoding`.

        T may be 0 (a batch of empty prompts): the output then holds [CLS] alone.
        ``allow_mask_token`` lets ``mask_id`` appear in ``ids`` (MLM pretraining only).
        """
        ids, mask = self._check(ids, mask, allow_mask_token)
        # BEGIN EXERCISE ch05_ex1
        xp = backend.xp_for(self.device)
        batch = ids.shape[0]
        ids = xp.concatenate([xp.full((batch, 1), self.config.cls_id, dtype=ids.dtype), ids], axis=1)
        mask = xp.concatenate([xp.ones((batch, 1), dtype=bool), mask], axis=1)
        x = self.token_embedding(ids) + self.positions[:ids.shape[1]]
        for block in self.blocks:
            # A key padding mask: every query may look at [CLS] and the real tokens only.
            x = block(x, mask=mask)
        return TextEncoding(self.norm(x), mask)
        # END EXERCISE

    # ----------------------------------------------------------- files
    def save(self, path, metadata: dict | None = None):
        """Write the weights and config to a ``.safetensors`` checkpoint; returns the path."""
        return checkpoint.save(path, self.state_dict(), dataclasses.asdict(self.config),
                               {"kind": "text_encoder", **(metadata or {})})

    @classmethod
    def load(cls, path, device: str = "cpu") -> "TextEncoder":
        """A :class:`TextEncoder` built from the config stored in ``path``, with its weights.
        Loading leaves the default random generator as it was."""
        stored = checkpoint.load(path)
        if stored.metadata.get("kind") != "text_encoder":
            raise checkpoint.CheckpointError(f"{path} does not hold a text encoder (kind "
                                             f"{stored.metadata.get('kind')!r}); save one with "
                                             f"TextEncoder.save")
        with backend.default_generator_kept():
            encoder = cls(TextEncoderConfig.from_dict(stored.config))
        encoder.load_state_dict(stored.tensors)
        return encoder.to(device)

    def _check(self, ids, mask, allow_mask_token):
        ids = ids.data if isinstance(ids, Tensor) else ids
        mask = mask.data if isinstance(mask, Tensor) else mask
        ids = backend.to_device(np.asarray(ids) if isinstance(ids, (list, tuple)) else ids,
                                self.device)
        mask = backend.to_device(np.asarray(mask) if isinstance(mask, (list, tuple)) else mask,
                                 self.device)
        if ids.ndim != 2 or ids.dtype.kind not in "iu":
            raise ValueError(f"TextEncoder expects integer ids of shape (B, T), got "
                             f"{ids.dtype} {ids.shape}; encode captions with "
                             f"Tokenizer.encode_batch")
        if mask.shape != ids.shape or mask.dtype != bool:
            raise ValueError(f"TextEncoder expects a bool mask shaped like the ids {ids.shape}, "
                             f"got {mask.dtype} {mask.shape}")
        if ids.shape[1] > self.config.max_length:
            raise ValueError(f"captions of {ids.shape[1]} tokens are longer than this text "
                             f"encoder's max_length={self.config.max_length}; shorten the prompt "
                             f"or build the encoder with a larger max_length")
        top = self.config.vocab_size + (1 if allow_mask_token else 0)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= top):
            raise ValueError(f"token ids must lie in [0, {top}) (the "
                             f"tokenizer's vocabulary); got ids from {int(ids.min())} to "
                             f"{int(ids.max())}. Was the encoder built for another tokenizer?")
        return ids, mask
