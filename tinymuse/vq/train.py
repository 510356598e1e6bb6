"""Training a tokenizer stage.

One step: draw a batch of images, reconstruct them through the codebook, and
minimise

    L = recon(x̂, x) + ‖sg[z] − q‖² + β ‖z − sg[q]‖²

(the codebook term only with ``codebook_update="loss"``; with EMA the codes
move by moving averages inside the forward pass) with AdamW under a warm-up +
cosine learning-rate schedule and gradient clipping.

The run lives in one folder ``out_dir``:

- ``checkpoint.safetensors`` — the full training state (weights, codebook
  buffers, optimizer moments, schedule, generator, step), written atomically
  every ``checkpoint_every`` steps and at the end; a new call with the same
  folder resumes from it and continues exactly as if never stopped;
- ``tokenizer.safetensors`` — the trained tokenizer (``VQTokenizer.load``);
- ``recon_<step>.png`` — originals (top rows) above their reconstructions;
- ``log.jsonl`` — one line of losses and codebook statistics per log step.

Batches are drawn statelessly: step ``t`` reads the dataset indices drawn by a
generator seeded with ``(seed, t)``, so resuming needs no data-loader state.

Command line::

    python -m tinymuse.vq.train --stage base --steps 3000 --out runs/vq-base
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import backend, checkpoint
from .. import functional as F
from ..data import ShapesDataset, save_image_grid
from ..optim import AdamW, WarmupCosine, clip_grad_norm, weight_decay_groups
from ..tensor import Tensor, no_grad
from .config import VQConfig, VQTrainConfig, stage_config
from .tokenizer import VQTokenizer
from .tokens import load_examples

CHECKPOINT = "checkpoint.safetensors"
TOKENIZER = "tokenizer.safetensors"
_INFINITE = 2 ** 31  # index range for a dataset without a length


def batch_indices(step: int, batch_size: int, dataset_size: int | None, seed: int) -> np.ndarray:
    """The dataset indices of step ``step``: a function of (seed, step) only."""
    rng = np.random.default_rng([seed, step])
    return rng.integers(0, dataset_size or _INFINITE, batch_size)


def load_images(dataset, indices) -> np.ndarray:
    """float32 (B, 3, H, W) in [-1, 1] for ``dataset[i] -> (uint8 image, caption)``."""
    return load_examples(dataset, indices)[0]


def _dataset_size(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # an infinite ShapesDataset
        return None


def reconstruction_loss(recon: Tensor, images: Tensor, kind: str) -> Tensor:
    return F.l1_loss(recon, images) if kind == "l1" else F.mse_loss(recon, images)


def save_reconstructions(tokenizer: VQTokenizer, images: np.ndarray, path) -> Path:
    """A grid PNG: each row of originals followed by a row of their reconstructions."""
    recon = tokenizer.reconstruct(images).numpy()
    per_row = min(8, len(images))
    rows = []
    for start in range(0, len(images), per_row):
        rows += [images[start:start + per_row], recon[start:start + per_row]]
    save_image_grid(np.concatenate(rows), path, nrow=per_row, scale=max(1, 128 // images.shape[-1]))
    return Path(path)


def _open_log(path: Path, step: int):
    """The log, opened to append after the lines of steps up to ``step`` (the
    checkpoint a run resumes from); lines of steps after it are redone."""
    kept = []
    if step and path.exists():
        kept = [line for line in path.read_text().splitlines()
                if line and json.loads(line)["step"] <= step]
    log = open(path, "w")
    log.writelines(line + "\n" for line in kept)
    return log


def shapes_training_set(config: VQConfig, split: str = "train") -> ShapesDataset:
    """The shapes-world stream a tokenizer trains on: seed 0 (held-out images use other
    seeds), ``split="train"`` without the held-out colour-shape pairs, ``"all"`` with them."""
    return ShapesDataset(resolution=config.image_size, seed=0, split=split)


def train_tokenizer(config: VQConfig, train: VQTrainConfig | None = None, dataset=None,
                    out_dir="runs/vq", steps: int | None = None, resume: bool = True,
                    device: str | None = None, progress: bool = True,
                    sample_images: np.ndarray | None = None) -> VQTokenizer:
    """Train (or resume training) a tokenizer and return it.

    ``dataset`` defaults to the shapes world at ``config.image_size`` (train
    split); ``steps`` overrides ``train.steps``. ``sample_images`` (float
    NCHW) are the images shown in the reconstruction grids; by default the
    first 16 of a held-out stream (seed 1 of the shapes world, or the dataset's
    first 16). Raises ``FloatingPointError`` on a NaN/inf loss, before the
    step is taken, so the last checkpoint stays the last good state.
    """
    train = train if train is not None else VQTrainConfig()
    steps = train.steps if steps is None else steps
    device = device or backend.get_default_device()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = shapes_training_set(config)
    if sample_images is None:
        source = (ShapesDataset(resolution=config.image_size, seed=1, split="all")
                  if isinstance(dataset, ShapesDataset) else dataset)
        sample_images = load_images(source, range(min(16, _dataset_size(source) or 16)))
    size = _dataset_size(dataset)

    backend.manual_seed(train.seed)            # the initial weights
    model = VQTokenizer(config, seed=train.seed).to(device).train()
    optimizer = AdamW(weight_decay_groups(model, train.weight_decay), lr=train.lr,
                      betas=train.betas)
    schedule = WarmupCosine(optimizer, min(train.warmup_steps, steps), steps,
                            min_lr_ratio=train.min_lr / train.lr)
    generators = {"quantizer": model.quantizer.generator}
    run_config = {"model": config.to_dict()}   # a resumed run must build the same model
    state_path, step, before = out_dir / CHECKPOINT, 0, {}
    if resume and state_path.exists():
        state = checkpoint.load_training_state(state_path, model, optimizer, schedule,
                                               generators, config=run_config)
        step, before = state.step, state.extra or {}

    def clocks() -> dict:  # wall and CPU time of training, summed over resumed sessions
        return {"seconds": before.get("seconds", 0.0) + time.perf_counter() - started,
                "cpu_seconds": before.get("cpu_seconds", 0.0) + time.process_time() - cpu_started}

    def save_state(at_step: int) -> None:
        checkpoint.save_training_state(state_path, model, optimizer, schedule, generators,
                                       step=at_step, config=run_config,
                                       extra=clocks())

    log = _open_log(out_dir / "log.jsonl", step)
    bar = tqdm(total=steps, initial=step, disable=not progress, desc=f"vq {config.image_size}px",
               dynamic_ncols=True)
    started, cpu_started = time.perf_counter(), time.process_time()
    try:
        while step < steps:
            images = Tensor(load_images(dataset, batch_indices(step, train.batch_size, size,
                                                               train.seed)), device=device)
            out = model(images)
            recon = reconstruction_loss(out.recon, images, train.recon_loss)
            loss = recon + out.quantized.loss
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the loss became {value} at step {step}; training stopped before the update, "
                    f"so {state_path} still holds the last good state. Lower the learning rate "
                    f"(--lr) or check the data, then run again to resume from it.")
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm(model.parameters(), train.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step % train.log_every == 0 or step == steps:
                q = out.quantized
                stats = {"step": step, "loss": value, "recon": recon.item(),
                         "commit": q.commitment, "usage": q.usage, "perplexity": q.perplexity,
                         "lr": optimizer.param_groups[0]["lr"], **clocks()}
                bar.set_postfix(recon=f"{stats['recon']:.4f}", commit=f"{q.commitment:.4f}",
                                usage=f"{q.usage:.2f}", ppl=f"{q.perplexity:.0f}")
                log.write(json.dumps(stats) + "\n")
                log.flush()
            if step % train.sample_every == 0 or step == steps:
                model.eval()
                save_reconstructions(model, sample_images, out_dir / f"recon_{step:06d}.png")
                model.train()
            if step % train.checkpoint_every == 0 or step == steps:
                save_state(step)
    finally:
        bar.close()
        log.close()
    model.eval()
    model.save(out_dir / TOKENIZER)
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinymuse.vq.train",
        description="Train a VQ image tokenizer on the shapes world (resumes from OUT if it "
                    "holds a checkpoint).")
    parser.add_argument("--stage", choices=["base", "superres"], default="base",
                        help="base: 32×32 → 8×8 tokens; superres: 64×64 → 16×16 tokens")
    parser.add_argument("--steps", type=int, default=None, help="total optimizer steps")
    parser.add_argument("--out", default=None, help="run folder (default runs/vq-STAGE)")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--recon-loss", choices=["l1", "mse"], default=None)
    parser.add_argument("--device", default=None, help="cpu or cuda")
    parser.add_argument("--no-resume", action="store_true", help="start over even if OUT has "
                        "a checkpoint (it will be overwritten)")
    parser.add_argument("--codebook-size", type=int, default=None,
                        help="codes in the codebook (default: the stage's, 512; the cascade's "
                             "default preset uses 64)")
    parser.add_argument("--split", choices=["train", "all"], default="train",
                        help="train (default): no held-out colour-shape pair, as the "
                             "transformers' compositional test requires; all: every pair, an "
                             "experiment (README, \"Where the accuracy is lost\")")
    args = parser.parse_args(argv)
    config, train = stage_config(args.stage)
    if args.codebook_size is not None:
        try:
            config = dataclasses.replace(config, codebook_size=args.codebook_size)
        except ValueError as error:
            parser.error(str(error))
    if args.batch_size is not None:
        train.batch_size = args.batch_size
    if args.lr is not None:
        train.lr = args.lr
    if args.recon_loss is not None:
        train.recon_loss = args.recon_loss
    out = args.out or f"runs/vq-{args.stage}"
    train_tokenizer(config, train, shapes_training_set(config, args.split), out_dir=out,
                    steps=args.steps, resume=not args.no_resume, device=args.device)
    print(f"saved {Path(out) / TOKENIZER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
