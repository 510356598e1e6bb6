"""Training a masked-token stage: the base transformer, or the super-resolution one.

The model brings its loss (:meth:`~tinymuse.models.BaseTransformer.training_loss`: caption
dropout, a random mask, cross-entropy on the masked tokens); this recipe brings the batches,
read from a token cache, and hands both to :func:`tinymuse.training.fit`:

    rows   = batch_rows(seed, step, batch_size, len(cache))
    batch  = make_batch(model, cache, rows)            image tokens + tokenized captions
    loss   = model.training_loss(batch, generator)     (+ the low-resolution grids for SR)

Two measurements run while it trains, every ``sample_every`` steps:

- ``samples``: a monitor (:class:`tinymuse.evaluate.SampleMonitor`) draws fixed prompts,
  saves a grid and scores it with the shapes oracle. A loss that falls while the samples stay
  blank or one flat colour is the classic failure of these models; the share of flat samples
  shows it long before the run is over.
- ``validation``: the loss on a cache of scenes training never draws, beside the loss on as
  many training rows with the same masks (:func:`held_out_loss`). The training loss alone
  cannot tell learning the world from memorising the cache; the gap between the two can.

The run folder holds ``model.safetensors`` (the weights for sampling) beside the loop's
checkpoint and log.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import backend
from ..models import SuperResTransformer
from ..tensor import no_grad
from .loop import TrainConfig, TrainResult, batch_rows, fit

__all__ = ["TRAINING", "MODEL", "PairedTokens", "pair_caches", "make_batch", "held_out_loss",
           "train_transformer"]

MODEL = "model.safetensors"

# Muse's AdamW settings (β₂ = 0.96, quicker to forget stale squared gradients, and weight
# decay 0.045), a 200-step warm-up, and a cosine that ends at a tenth of the peak.
TRAINING = TrainConfig(steps=4000, batch_size=64, lr=1e-3, betas=(0.9, 0.96),
                       weight_decay=0.045, warmup_steps=200, min_lr_ratio=0.1)

# A sample grid with half or more of its images one flat colour: the blank-sample failure.
_FLAT_WARNING = 0.5


@dataclass
class PairedTokens:
    """Token grids of the same images from both VQ tokenizers, the super-resolution stage's
    training data: ``tokens`` (N, 16, 16) from the super-resolution tokenizer, ``low_tokens``
    (N, 8, 8) from the base one, and the captions."""

    tokens: np.ndarray
    low_tokens: np.ndarray
    captions: list

    def __len__(self) -> int:
        return len(self.tokens)


def pair_caches(low_cache, high_cache) -> PairedTokens:
    """Pair a base-tokenizer cache and a super-resolution-tokenizer cache of the same images.

    Both are :class:`tinymuse.vq.ImageTokens` from :func:`tinymuse.vq.pre_encode` over the
    same dataset (e.g. ``ShapesDataset(32, seed=s)`` and ``ShapesDataset(64, seed=s)``: the
    same scenes at two resolutions). Their dataset indices and captions must agree row by row.
    """
    if len(low_cache) != len(high_cache):
        raise ValueError(f"the caches hold {len(low_cache)} and {len(high_cache)} grids; "
                         f"pre-encode the same examples with both tokenizers")
    if not np.array_equal(np.asarray(low_cache.indices), np.asarray(high_cache.indices)):
        raise ValueError("the caches come from different dataset examples (their indices "
                         "differ); pre-encode the same examples with both tokenizers")
    if list(low_cache.captions) != list(high_cache.captions):
        row = next(i for i, (a, b) in enumerate(zip(low_cache.captions, high_cache.captions))
                   if a != b)
        raise ValueError(f"the caches disagree on the caption of row {row} "
                         f"({low_cache.captions[row]!r} vs {high_cache.captions[row]!r}): they "
                         f"are not the same images (same dataset seed and split for both?)")
    return PairedTokens(np.asarray(high_cache.tokens), np.asarray(low_cache.tokens),
                        list(high_cache.captions))


def make_batch(model, cache, rows) -> dict:
    """The training batch of cache ``rows``: image tokens and the tokenized captions, and, from
    a :class:`PairedTokens` cache, the low-resolution grids."""
    rows = np.asarray(rows)
    # Training captions are data, not user prompts: no vocabulary check.
    ids, mask = model.tokenize([cache.captions[int(i)] for i in rows], check_words=False)
    batch = {"tokens": np.asarray(cache.tokens[rows]), "text_ids": ids, "text_mask": mask}
    if isinstance(cache, PairedTokens):
        batch["low_tokens"] = np.asarray(cache.low_tokens[rows])
    return batch


def held_out_loss(model, cache, batch_size: int, rows: int, seed: int = 0) -> float:
    """The mean masked-token loss of ``model`` on the first ``rows`` examples of ``cache``,
    in batches of ``batch_size``; batch ``i`` draws its caption dropout and mask from
    ``Generator([seed, 2, i])``, so two caches (or two calls) get the same draws. Nothing is
    learned and no other generator is touched."""
    losses, weights = [], []
    with no_grad():
        for number, start in enumerate(range(0, rows, batch_size)):
            indices = np.arange(start, min(start + batch_size, rows))
            step = model.training_loss(make_batch(model, cache, indices),
                                       backend.Generator([seed, 2, number]))
            losses.append(step.loss.item())
            weights.append(len(indices))
    return float(np.average(losses, weights=weights))


def train_transformer(model, cache, config: TrainConfig = TRAINING, out_dir="runs/stage", *,
                      monitor=None, validation=None, resume: bool = True,
                      stop_at: int | None = None) -> TrainResult:
    """Train ``model`` (a base or super-resolution transformer) on ``cache`` (an
    :class:`~tinymuse.vq.ImageTokens` cache, or :class:`PairedTokens` for the
    super-resolution stage) with :func:`tinymuse.training.fit`, in ``out_dir``.

    ``monitor(model, step, out_dir) -> dict`` (e.g. a :class:`tinymuse.evaluate.SampleMonitor`)
    and ``validation`` (a cache like ``cache`` of examples training never draws) are the two
    measurements of the module docstring. ``resume`` and ``stop_at`` as in ``fit``.
    """
    if len(cache) == 0:
        raise ValueError("the token cache is empty: pre-encode a dataset first "
                         "(tinymuse.vq.pre_encode)")
    if validation is not None and len(validation) == 0:
        raise ValueError("the validation cache is empty: pass None for no validation")
    if isinstance(model, SuperResTransformer) != isinstance(cache, PairedTokens):
        raise TypeError("the super-resolution transformer trains on paired base and "
                        "super-resolution tokens (pair_caches(base_cache, superres_cache)); "
                        "the base transformer on one cache")
    out_dir = Path(out_dir)

    def loss_fn(batch, generator):
        step = model.training_loss(batch, generator)
        return step.loss, {"accuracy": step.accuracy}

    def batch_at(step: int) -> dict:
        return make_batch(model, cache, batch_rows(config.seed, step, config.batch_size,
                                                   len(cache)))

    def save_weights(step: int) -> None:
        model.save(out_dir / MODEL, metadata={"step": step, "ema": config.ema_decay is not None})

    evaluations = {}
    if validation is not None:
        evaluations["validation"] = _validation(model, cache, validation, config)
    if monitor is not None:
        evaluations["samples"] = _samples(model, monitor, out_dir)
    return fit(model, loss_fn, batch_at, config, out_dir,
               run_config={"model": model.config.to_dict()}, save_weights=save_weights,
               evaluations=evaluations, resume=resume, stop_at=stop_at,
               title=type(model).__name__)


def _validation(model, cache, validation, config: TrainConfig):
    rows = min(len(validation), len(cache))

    def measure(step: int) -> dict:
        return {"loss": held_out_loss(model, validation, config.batch_size, rows, config.seed),
                "training_rows_loss": held_out_loss(model, cache, config.batch_size, rows,
                                                    config.seed),
                "rows": rows}
    return measure


def _samples(model, monitor, out_dir: Path):
    def draw(step: int) -> dict:
        metrics = monitor(model, step, out_dir)
        if metrics.get("flat_images", 0.0) >= _FLAT_WARNING:
            print(f"warning: at step {step}, {metrics['flat_images']:.0%} of the samples are "
                  f"one flat colour although the loss may be falling; see "
                  f"{out_dir / 'samples'} (if it persists: check the mask, the loss "
                  f"positions, the learning rate)")
        return metrics
    return draw
