"""Pretraining the text encoder: masked language modelling on captions (chapter 5).

The model is :class:`~tinymuse.text.MaskedLanguageModel` (the encoder plus a vocabulary head)
and the loss :func:`~tinymuse.text.mlm_loss` (BERT's, plus an optional term that keeps each
visible token's identity); this recipe encodes the captions once, draws batches of them and
hands both to :func:`tinymuse.training.fit`. Only the encoder is kept: the run folder holds
``text_encoder.safetensors`` beside the loop's checkpoint and log.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import backend
from ..text.mlm import MaskedLanguageModel, mlm_loss
from .loop import TrainConfig, TrainResult, batch_rows, fit

__all__ = ["TRAINING", "ENCODER", "MASK_FRACTION", "pretrain_text_encoder"]

ENCODER = "text_encoder.safetensors"

# BERT-like AdamW settings; captions are short, so a short warm-up suffices.
TRAINING = TrainConfig(steps=1500, batch_size=64, lr=1e-3, weight_decay=0.01, warmup_steps=100,
                       min_lr_ratio=0.1)

# Captions are a handful of words: BERT's 15% would often hide nothing but one token.
MASK_FRACTION = 0.2


def pretrain_text_encoder(encoder, tokenizer, captions, config: TrainConfig = TRAINING,
                          out_dir="runs/text", *, mask_fraction: float = MASK_FRACTION,
                          identity_weight: float = 0.0, resume: bool = True,
                          stop_at: int | None = None) -> TrainResult:
    """Pretrain ``encoder`` in place on ``captions`` (a list of str), in ``out_dir``;
    ``identity_weight`` is :func:`~tinymuse.text.mlm_loss`'s weight of the visible tokens
    (0: BERT's loss alone); ``resume`` and ``stop_at`` as in :func:`~tinymuse.training.fit`.
    Returns the :class:`~tinymuse.training.TrainResult`; the encoder is saved to
    ``out_dir/text_encoder.safetensors``."""
    if not identity_weight >= 0:
        raise ValueError(f"identity_weight must be >= 0 (0: BERT's loss alone), got "
                         f"{identity_weight}")
    if not 0 < mask_fraction <= 1:
        raise ValueError(f"mask_fraction must lie in (0, 1], got {mask_fraction}")
    if encoder.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the encoder's vocab_size is {encoder.config.vocab_size} but the "
                         f"tokenizer has {tokenizer.vocab_size} ids; build the encoder with "
                         f"TextEncoderConfig(vocab_size=tokenizer.vocab_size)")
    if not captions:
        raise ValueError("no captions to pretrain on")
    out_dir = Path(out_dir)
    model = MaskedLanguageModel(encoder, generator=backend.Generator(config.seed))
    ids, mask = tokenizer.encode_batch(captions, max_length=encoder.config.max_length)
    ids = backend.to_device(ids.astype(np.int64), encoder.device)
    mask = backend.to_device(mask, encoder.device)

    def batch_at(step: int):
        rows = batch_rows(config.seed, step, config.batch_size, len(captions))
        rows = backend.to_device(rows, encoder.device)
        return ids[rows], mask[rows]

    def loss_fn(batch, generator):
        loss, accuracy = mlm_loss(model, *batch, mask_fraction, generator, identity_weight)
        return loss, {"accuracy": accuracy}

    def save_weights(step: int) -> None:
        encoder.save(out_dir / ENCODER, metadata={"step": step})

    return fit(model, loss_fn, batch_at, config, out_dir,
               run_config={"encoder": dataclasses.asdict(encoder.config), "captions": len(captions),
                           "mask_fraction": mask_fraction, "identity_weight": identity_weight},
               save_weights=save_weights, resume=resume, stop_at=stop_at,
               title="MLM pretraining")
