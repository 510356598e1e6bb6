"""Pretraining the text encoder with a masked-language-model (MLM) objective.

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

Run it::

    python -m tinymuse.text.pretrain --out runs/text --steps 1500

which trains a SentencePiece tokenizer on shapes-world captions (unless ``--tokenizer`` names
one), pretrains the encoder, and writes ``tokenizer.model`` and ``text_encoder.safetensors``
to ``--out``.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend, nn, optim
from .. import functional as F
from ..masking import random_mask
from ..tensor import no_grad
from .encoder import TextEncoder, TextEncoderConfig

__all__ = ["PretrainConfig", "MaskedLanguageModel", "mask_caption_tokens", "mlm_loss",
           "pretrain_text_encoder", "shapes_captions", "main"]


@dataclass
class PretrainConfig:
    """How to pretrain (the encoder's sizes live in :class:`TextEncoderConfig`)."""

    steps: int = 1500
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_steps: int = 100
    grad_clip: float = 1.0
    mask_fraction: float = 0.2  # captions are short: 15% would often hide nothing but one token
    identity_weight: float = 0.0  # > 0: also name the tokens left visible (see mlm_loss)
    seed: int = 0


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
    xp = backend.get_array_module(ids)
    lengths = mask.sum(axis=1)
    counts = xp.where(lengths > 0, xp.maximum(1, xp.ceil(fraction * lengths)), 0).astype(np.int64)
    chosen = random_mask(counts, ids.shape[1], generator, allowed=mask)
    action = generator.random(ids.shape, device=backend.device_of(ids))
    random_ids = generator.integers(0, config.vocab_size, ids.shape, device=backend.device_of(ids))
    inputs = xp.where(chosen & (action < 0.8), config.mask_id, ids)
    inputs = xp.where(chosen & (action >= 0.8) & (action < 0.9), random_ids, inputs)
    return inputs.astype(ids.dtype, copy=False), chosen


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
    (cosine 0.997 between "A" and "B" in an encoder trained on BERT's loss alone, the one
    bundled before the identity term), and a frozen encoder hands the image stages almost
    nothing to tell them apart. The visible term keeps each token's identity in its output,
    as a large pretrained encoder's outputs do.
    """
    inputs, chosen = mask_caption_tokens(ids, mask, model.encoder.config, fraction, generator)
    logits = model(inputs, mask)
    loss = F.cross_entropy(logits, ids, weight=chosen)
    visible = mask & ~chosen
    if identity_weight > 0 and bool(visible.any()):
        loss = loss + identity_weight * F.cross_entropy(logits, ids, weight=visible)
    with no_grad():
        correct = (logits.data.argmax(axis=-1) == ids) & chosen
        accuracy = float(correct.sum()) / max(1, int(chosen.sum()))
    return loss, accuracy


def shapes_captions(count: int, seed: int = 0, split: str = "train") -> list[str]:
    """``count`` captions of the shapes world's ``split``: the pretraining corpus (text only,
    nothing is drawn)."""
    from ..data.shapes import sample_text  # data sits beside text, not below it

    rng = np.random.default_rng([seed, 2024])
    return [sample_text(rng, split)[1] for _ in range(count)]


def pretrain_text_encoder(encoder: TextEncoder, tokenizer, captions, config: PretrainConfig
                          | None = None, progress: bool = True) -> list[float]:
    """Pretrain ``encoder`` in place on ``captions`` (a list of str); return the loss of
    every step. Batches are drawn at random (seeded by ``config.seed``) from the encoded
    corpus; AdamW with warm-up and cosine decay, gradient clipping."""
    config = config or PretrainConfig()
    if not config.identity_weight >= 0:
        raise ValueError(f"identity_weight must be >= 0 (0: BERT's loss alone), got "
                         f"{config.identity_weight}")
    if encoder.config.vocab_size != tokenizer.vocab_size:
        raise ValueError(f"the encoder's vocab_size is {encoder.config.vocab_size} but the "
                         f"tokenizer has {tokenizer.vocab_size} ids; build the encoder with "
                         f"TextEncoderConfig(vocab_size=tokenizer.vocab_size)")
    generator = backend.Generator(config.seed)
    model = MaskedLanguageModel(encoder, generator=generator)
    model.train()
    ids, mask = tokenizer.encode_batch(captions, max_length=encoder.config.max_length)
    ids = backend.to_device(ids.astype(np.int64), encoder.device)
    mask = backend.to_device(mask, encoder.device)
    optimizer = optim.AdamW(optim.weight_decay_groups(model, config.weight_decay), lr=config.lr)
    schedule = optim.WarmupCosine(optimizer, min(config.warmup_steps, config.steps), config.steps,
                                  min_lr_ratio=0.1)
    bar = _progress(config.steps, progress)
    losses = []
    for _ in range(config.steps):
        rows = generator.integers(0, len(captions), (config.batch_size,))
        rows = backend.to_device(rows, encoder.device)
        loss, accuracy = mlm_loss(model, ids[rows], mask[rows], config.mask_fraction, generator,
                                  config.identity_weight)
        value = loss.item()
        if not math.isfinite(value):
            raise FloatingPointError(f"MLM loss is {value} at step {len(losses)}; lower the "
                                     f"learning rate (now {config.lr})")
        optimizer.zero_grad()
        loss.backward()
        optim.clip_grad_norm(model.parameters(), config.grad_clip)
        optimizer.step()
        schedule.step()
        losses.append(value)
        if bar is not None:
            bar.set_postfix(loss=f"{value:.3f}", acc=f"{accuracy:.2f}", refresh=False)
            bar.update()
    if bar is not None:
        bar.close()
    return losses


def _progress(total: int, enabled: bool):
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="MLM pretraining", dynamic_ncols=True)


# --------------------------------------------------------------------------- #
# The command.
# --------------------------------------------------------------------------- #


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinymuse.text.pretrain",
        description="Pretrain the text encoder on shapes-world captions (masked language model).")
    parser.add_argument("--out", required=True, help="directory for tokenizer.model and "
                        "text_encoder.safetensors")
    parser.add_argument("--tokenizer", help="an existing tokenizer .model (default: train one "
                        "on the captions and save it to OUT/tokenizer.model)")
    parser.add_argument("--vocab-size", type=int, default=256, help="SentencePiece vocabulary "
                        "(upper bound) when training a tokenizer")
    parser.add_argument("--captions", type=int, default=20000, help="corpus size")
    parser.add_argument("--steps", type=int, default=PretrainConfig.steps)
    parser.add_argument("--batch-size", type=int, default=PretrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=PretrainConfig.lr)
    parser.add_argument("--identity-weight", type=float, default=PretrainConfig.identity_weight,
                        help="weight of the loss on the visible tokens, which keeps each "
                        "token's identity in its output vector (0: BERT's objective alone)")
    parser.add_argument("--d-model", type=int, default=TextEncoderConfig.d_model)
    parser.add_argument("--layers", type=int, default=TextEncoderConfig.num_layers)
    parser.add_argument("--heads", type=int, default=TextEncoderConfig.num_heads)
    parser.add_argument("--max-length", type=int, default=TextEncoderConfig.max_length)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", choices=backend.DEVICES)
    args = parser.parse_args(argv)

    from .tokenizer import Tokenizer

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    captions = shapes_captions(args.captions, seed=args.seed)
    if args.tokenizer:
        tokenizer = Tokenizer.load(args.tokenizer)
        tokenizer.save(out / "tokenizer.model")
    else:
        tokenizer = Tokenizer.train(captions, vocab_size=args.vocab_size,
                                    path=out / "tokenizer.model")
    backend.manual_seed(args.seed)
    encoder_config = TextEncoderConfig(vocab_size=tokenizer.vocab_size,
                                       max_length=args.max_length, d_model=args.d_model,
                                       num_layers=args.layers, num_heads=args.heads)
    encoder = TextEncoder(encoder_config, generator=backend.Generator(args.seed)).to(args.device)
    config = PretrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                            identity_weight=args.identity_weight, seed=args.seed)
    start = time.perf_counter()
    losses = pretrain_text_encoder(encoder, tokenizer, captions, config)
    minutes = (time.perf_counter() - start) / 60
    path = encoder.save(out / "text_encoder.safetensors",
                        metadata={"mlm_loss_first_50": float(np.mean(losses[:50])),
                                  "mlm_loss_last_50": float(np.mean(losses[-50:])),
                                  "steps": config.steps, "minutes": round(minutes, 2)})
    print(f"MLM loss {np.mean(losses[:50]):.3f} (first 50 steps) -> {np.mean(losses[-50:]):.3f} "
          f"(last 50) in {minutes:.1f} min; saved {path} and {out / 'tokenizer.model'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
