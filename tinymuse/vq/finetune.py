"""Fine-tuning only the decoder of a trained tokenizer.

Once a token cache exists and a transformer has been trained on it, the
tokenizer's *encoder and codebook* are frozen for good: change them and every
cached grid means something else. The *decoder* is free. MaskGIT and Muse both
exploit this: after the tokens are fixed they train the decoder further (Muse,
§2.1, fine-tunes a larger decoder), so pictures get sharper while every token
keeps its meaning.

One step here: encode a batch with the frozen encoder (no gradient, no codebook
update), decode it with the decoder in training mode, and minimise the same
reconstruction loss as :mod:`tinymuse.vq.train`. Only the decoder's parameters
are in the optimizer, so ``encode`` gives bit-identical tokens before and after.

Command line::

    python -m tinymuse.vq.finetune runs/vq-base/tokenizer.safetensors --steps 1500 \\
        --out runs/vq-base-finetuned

writes ``OUT/tokenizer.safetensors`` (and resumes from ``OUT/checkpoint.safetensors``
if the run was interrupted).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

from tqdm.auto import tqdm

from .. import backend, checkpoint
from ..data import ShapesDataset
from ..optim import AdamW, WarmupCosine, clip_grad_norm
from ..tensor import Tensor, no_grad
from .config import VQTrainConfig
from .tokenizer import VQTokenizer
from .train import CHECKPOINT, TOKENIZER, _dataset_size, batch_indices, load_images, \
    reconstruction_loss, save_reconstructions

__all__ = ["finetune_decoder", "finetune_config", "FINETUNE_LR"]

FINETUNE_LR = 5e-4  # a quarter of training from scratch: the decoder only needs polishing


def finetune_config(steps: int = VQTrainConfig.steps, batch_size: int = VQTrainConfig.batch_size,
                    lr: float = FINETUNE_LR, **changes) -> VQTrainConfig:
    """The training settings of decoder fine-tuning: :data:`FINETUNE_LR` and a 50-step
    warm-up; ``changes`` are other :class:`VQTrainConfig` fields."""
    return VQTrainConfig(steps=steps, batch_size=batch_size, lr=lr, warmup_steps=50, **changes)


def finetune_decoder(tokenizer: VQTokenizer, train: VQTrainConfig | None = None, dataset=None,
                     out_dir="runs/vq-finetuned", resume: bool = True,
                     progress: bool = True) -> VQTokenizer:
    """Train ``tokenizer.decoder`` for ``train.steps`` more steps with the encoder and the
    codebook frozen; save and return the tokenizer.

    ``dataset`` defaults to the shapes world at the tokenizer's image size (train split, a
    seed the tokenizer's own training did not use, so the decoder sees new scenes).
    Raises ``FloatingPointError`` on a NaN/inf loss before the step is taken.
    """
    train = train if train is not None else finetune_config()
    config = tokenizer.config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if dataset is None:
        dataset = ShapesDataset(resolution=config.image_size, seed=2, split="train")
    size = _dataset_size(dataset)
    samples = load_images(dataset, range(min(16, size or 16)))

    tokenizer.eval()                 # the encoder and the codebook never change
    tokenizer.decoder.train()
    parameters = list(tokenizer.decoder.parameters())
    optimizer = AdamW(parameters, lr=train.lr, betas=train.betas, weight_decay=0.0)
    schedule = WarmupCosine(optimizer, min(train.warmup_steps, train.steps), train.steps,
                            min_lr_ratio=train.min_lr / train.lr)
    run_config = {"model": config.to_dict(), "finetune": "decoder"}
    state_path, step = out_dir / CHECKPOINT, 0
    if resume and state_path.exists():
        step = checkpoint.load_training_state(state_path, tokenizer, optimizer, schedule, {},
                                              config=run_config).step

    def save_state(at_step: int) -> None:
        checkpoint.save_training_state(state_path, tokenizer, optimizer, schedule, {},
                                       step=at_step, config=run_config)

    device = tokenizer.device
    bar = tqdm(total=train.steps, initial=step, disable=not progress,
               desc=f"decoder {config.image_size}px", dynamic_ncols=True)
    started = time.perf_counter()
    try:
        while step < train.steps:
            images = Tensor(load_images(dataset, batch_indices(step, train.batch_size, size,
                                                               train.seed)), device=device)
            with no_grad():
                codes = tokenizer.quantizer.embed(tokenizer.encode(images)).permute(0, 3, 1, 2)
            loss = reconstruction_loss(tokenizer.decoder(codes), images, train.recon_loss)
            value = loss.item()
            if not math.isfinite(value):
                raise FloatingPointError(
                    f"the loss became {value} at step {step}; {state_path} still holds the "
                    f"last good state. Lower the learning rate (--lr) and run again.")
            optimizer.zero_grad()
            loss.backward()
            clip_grad_norm(parameters, train.grad_clip)
            optimizer.step()
            schedule.step()
            step += 1
            bar.update(1)
            if step % train.log_every == 0:
                bar.set_postfix(recon=f"{value:.4f}")
            if step % train.checkpoint_every == 0 or step == train.steps:
                save_state(step)
    finally:
        bar.close()
    tokenizer.eval()
    save_reconstructions(tokenizer, samples, out_dir / f"recon_{step:06d}.png")
    tokenizer.save(out_dir / TOKENIZER)
    if progress:
        print(f"decoder fine-tuned to step {step} in {(time.perf_counter() - started) / 60:.1f} "
              f"min; tokens unchanged", flush=True)
    return tokenizer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinymuse.vq.finetune",
        description="Fine-tune the decoder of a trained tokenizer; its tokens stay the same, so "
                    "token caches and transformers trained on them stay valid.")
    parser.add_argument("tokenizer", help="a tokenizer.safetensors written by training")
    parser.add_argument("--out", required=True, help="run folder for the fine-tuned tokenizer")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=FINETUNE_LR)
    parser.add_argument("--device", default=None, help="cpu or cuda")
    args = parser.parse_args(argv)
    tokenizer = VQTokenizer.load(args.tokenizer, device=args.device or backend.get_default_device())
    train = finetune_config(args.steps, args.batch_size or 2048 // tokenizer.config.token_size ** 2,
                            args.lr)
    finetune_decoder(tokenizer, train, out_dir=args.out)
    print(f"saved {Path(args.out) / TOKENIZER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
