"""The text encoder's pretraining objective: masked language modelling (BERT).

Muse's text encoder is a language model pretrained on text alone, then frozen. We do the
same at toy size with BERT's objective (Devlin et al., 2019, §3.1): hide some tokens of a
caption and train the encoder to name them from the rest,

    L = − Σ_{i ∈ masked} log p(x_i | x with the masked tokens hidden),

averaged over the hidden tokens. To fill a blank in "two ___ squares" the encoder has to
learn what may stand where (a colour, a size), which is what the image model will read.

Which tokens are hidden: ``⌈fraction · length⌉`` real tokens of each caption (at least one),
chosen uniformly at random. As in BERT, a chosen token is replaced by [MASK] 80% of the
time, by a random token 10% of the time and left as it is 10% of the time, so that the
encoder also learns good vectors for tokens it sees unmasked, the only kind it meets once
it is frozen.

:class:`MaskedLanguageModel` (the encoder plus a head) and :func:`mlm_loss` are the model and
the loss; :func:`tinymuse.training.text.pretrain_text_encoder` is the recipe that trains them.
"""
from __future__ import annotations

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..masking import random_mask
from ..tensor import no_grad
from .encoder import TextEncoder, TextEncoderConfig

__all__ = ["MaskedLanguageModel", "mask_caption_tokens", "mlm_loss"]


class MaskedLanguageModel(nn.Module):
    """The encoder plus a linear head that reads a token's vector as a distribution over the
    vocabulary. Only the encoder is kept after pretraining."""

    def __init__(self, encoder: TextEncoder, generator=None):
        super().__init__()
        self.encoder = encoder
        self.head = nn.Linear(encoder.config.d_model, encoder.config.vocab_size,
                              generator=generator)

    def forward(self, ids, mask):
        """Logits (B, T, vocab_size) for the caption tokens ([CLS] dropped)."""
        encoding = self.encoder(ids, mask, allow_mask_token=True)
        return self.head(encoding.embeddings[:, 1:])


def mask_caption_tokens(ids, mask, config: TextEncoderConfig, fraction: float,
                        generator: backend.Generator):
    """BERT-style corruption of a padded batch.

    Returns ``(inputs, chosen)``: ``chosen`` (B, T) bool marks ``⌈fraction·length⌉`` real
    tokens per caption (none for an empty caption); of those, 80% read ``mask_id`` in
    ``inputs``, 10% a random token, 10% their own token. Elsewhere ``inputs == ids``.
    Draws, in order: the positions (see :func:`tinymuse.masking.random_mask`), one uniform
    number per position, and one random token per position.
    """
    # BEGIN EXERCISE ch05_ex2
    xp = backend.get_array_module(ids)
    lengths = mask.sum(axis=1)
    counts = xp.where(lengths > 0, xp.maximum(1, xp.ceil(fraction * lengths)), 0).astype(np.int64)
    chosen = random_mask(counts, ids.shape[1], generator, allowed=mask)
    action = generator.random(ids.shape, device=backend.device_of(ids))
    random_ids = generator.integers(0, config.vocab_size, ids.shape, device=backend.device_of(ids))
    inputs = xp.where(chosen & (action < 0.8), config.mask_id, ids)
    inputs = xp.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs.astype(ids.dtype, copy=False), chosen
    # END EXERCISE


def mlm_loss(model: MaskedLanguageModel, ids, mask, fraction: float,
             generator: backend.Generator, identity_weight: float = 0.0):
    """``(loss, accuracy)``: mean cross-entropy over the chosen tokens, and the share of
    them the model names correctly (a float).

    With ``identity_weight = λ > 0`` the loss adds λ times the mean cross-entropy of the
    tokens that were *not* chosen, read from their own positions:

        L = CE(chosen) + λ · CE(visible)

    Why: BERT's loss grades only hidden tokens, so nothing asks a visible token's output to
    say which token it is. Words that are interchangeable in every caption — any of the 36
    glyph characters may follow "the letter" — then leave nearly the same output vector
    (``docs/RESULTS.md`` has the measurement), and a frozen encoder hands the image stages
    almost nothing to tell them apart. The visible term keeps each token's identity in its output,
    as a large pretrained encoder's outputs do.
    """
    inputs, chosen = mask_caption_tokens(ids, mask, model.encoder.config, fraction, generator)
    # BEGIN EXERCISE ch05_ex3
    logits = model(inputs, mask)  # the corrupted inputs: the ids are the answers
    loss = F.cross_entropy(logits, ids, weight=chosen)
    visible = ~chosen & mask  # real tokens left visible; padding is in neither set
    if identity_weight > 0 and bool(visible.any()):
        loss = loss + identity_weight * F.cross_entropy(logits, ids, weight=visible)
    with no_grad():
        correct = (logits.data.argmax(axis=-1) == ids) & chosen
        accuracy = float(correct.sum()) / max(1, int(chosen.sum()))
    # END EXERCISE
    return loss, accuracy
