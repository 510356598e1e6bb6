"""Training a VQ image tokenizer, and fine-tuning its decoder (chapter 4).

**Training.** The model is a :class:`~tinymuse.vq.VQTokenizer` and its loss
:meth:`~tinymuse.vq.VQTokenizer.training_loss` (reconstruction + codebook + commitment); the
batches are images of a dataset, drawn by step; :func:`tinymuse.training.fit` does the rest.
Every ``sample_every`` steps a grid of sample images above their reconstructions is saved
(``recon_<step>.png``) and their PSNR logged.

**Fine-tuning the decoder.** Once a token cache exists and a transformer has been trained on
it, the tokenizer's *encoder and codebook* are frozen for good: change them and every cached
grid means something else. The *decoder* is free. MaskGIT and Muse both exploit this: after
the tokens are fixed they train the decoder further (Muse §2.1 fine-tunes a larger decoder),
so pictures get sharper while every token keeps its meaning. One step: encode a batch with the
frozen encoder (no gradient, no codebook update), decode it in training mode, and minimise the
same reconstruction loss; only the decoder's parameters learn, so ``encode`` gives the same
tokens before and after.

Either run folder ends with ``tokenizer.safetensors`` (:meth:`VQTokenizer.load`) beside the
loop's checkpoint and log.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend
from ..data import ShapesDataset, save_image_grid
from ..tensor import Tensor, no_grad
from ..vq import VQConfig, VQTokenizer, load_examples, psnr, reconstruction_loss
from .loop import TrainConfig, batch_rows, fit

__all__ = ["TRAINING", "FINETUNING", "TOKENIZER", "stage_training", "train_tokenizer",
           "finetune_decoder", "shapes_training_set"]

TOKENIZER = "tokenizer.safetensors"

# A higher peak than the transformers (the model is small and convolutional), no weight decay,
# and a cosine down to a twentieth of it.
TRAINING = TrainConfig(steps=2000, batch_size=32, lr=2e-3, min_lr_ratio=0.05, warmup_steps=100,
                       betas=(0.9, 0.99), weight_decay=0.0, checkpoint_every=500)

# A quarter of training's peak and a short warm-up: the decoder only needs polishing.
FINETUNING = TRAINING.replace(lr=5e-4, min_lr_ratio=0.2, warmup_steps=50)

# Each batch holds this many token positions, whatever the stage: 32 images of 8×8 tokens, or
# 8 images of 16×16.
TOKENS_PER_BATCH = 2048


def stage_training(config: VQConfig, base: TrainConfig = TRAINING) -> TrainConfig:
    """``base`` with the batch size that gives :data:`TOKENS_PER_BATCH` token positions."""
    return base.replace(batch_size=max(1, TOKENS_PER_BATCH // config.token_size ** 2))


def shapes_training_set(config: VQConfig, split: str = "train") -> ShapesDataset:
    """The shapes-world stream a tokenizer trains on: seed 0 (held-out images use other
    seeds), ``split="train"`` without the held-out colour-shape pairs, ``"all"`` with them."""
    return ShapesDataset(resolution=config.image_size, seed=0, split=split)


def _size(dataset) -> int | None:
    try:
        return len(dataset)
    except TypeError:  # an infinite ShapesDataset
        return None


def _images_at(dataset, config: TrainConfig, device):
    def batch_at(step: int) -> Tensor:
        rows = batch_rows(config.seed, step, config.batch_size, _size(dataset))
        return Tensor(load_examples(dataset, rows)[0], device=device)
    return batch_at


def _reconstructions(tokenizer: VQTokenizer, images: np.ndarray, out_dir: Path):
    """An evaluation: save originals above their reconstructions, and return their PSNR."""
    def show(step: int) -> dict:
        recon = tokenizer.reconstruct(images).numpy()
        per_row = min(8, len(images))
        rows = []
        for start in range(0, len(images), per_row):
            rows += [images[start:start + per_row], recon[start:start + per_row]]
        save_image_grid(np.concatenate(rows), out_dir / f"recon_{step:06d}.png", nrow=per_row,
                        scale=max(1, 128 // images.shape[-1]))
        return {"psnr": psnr(recon, images)}
    return show


def train_tokenizer(config: VQConfig, train: TrainConfig | None = None, dataset=None,
                    out_dir="runs/vq", *, recon_loss: str = "mse", resume: bool = True,
                    device: str | None = None, sample_images: np.ndarray | None = None
                    ) -> VQTokenizer:
    """Train (or resume training) a tokenizer in ``out_dir`` and return it.

    ``train`` defaults to :data:`TRAINING` with the stage's batch size (:func:`stage_training`);
    ``dataset`` to the shapes world at ``config.image_size`` (train split). ``sample_images``
    (float NCHW) are shown in the reconstruction grids; by default the first 16 of a held-out
    stream (seed 1 of the shapes world, or the dataset's first 16).
    """
    train = stage_training(config) if train is None else train
    device = device or backend.get_default_device()
    out_dir = Path(out_dir)
    dataset = shapes_training_set(config) if dataset is None else dataset
    if sample_images is None:
        source = (ShapesDataset(resolution=config.image_size, seed=1, split="all",
                                world=dataset.world)
                  if isinstance(dataset, ShapesDataset) else dataset)
        sample_images = load_examples(source, range(min(16, _size(source) or 16)))[0]
    backend.manual_seed(train.seed)  # the initial weights
    tokenizer = VQTokenizer(config, seed=train.seed).to(device)
    fit(tokenizer, lambda images, _: tokenizer.training_loss(images, recon_loss),
        _images_at(dataset, train, device), train, out_dir,
        run_config={"model": config.to_dict(), "recon_loss": recon_loss},
        generators={"quantizer": tokenizer.quantizer.generator},
        save_weights=lambda step: tokenizer.save(out_dir / TOKENIZER, {"step": step}),
        evaluations={"reconstructions": _reconstructions(tokenizer, sample_images, out_dir)},
        resume=resume, title=f"vq {config.image_size}px")
    return tokenizer.eval()


def finetune_decoder(tokenizer: VQTokenizer, train: TrainConfig | None = None, dataset=None,
                     out_dir="runs/vq-finetuned", *, recon_loss: str = "mse",
                     resume: bool = True) -> VQTokenizer:
    """Train ``tokenizer.decoder`` for ``train.steps`` more steps with the encoder and the
    codebook frozen (module docstring), in ``out_dir``; save and return the tokenizer.

    ``train`` defaults to :data:`FINETUNING` with the stage's batch size; ``dataset`` to the
    shapes world at the tokenizer's image size (train split, seed 2, which the tokenizer's own
    training did not use, so the decoder sees new scenes).
    """
    config = tokenizer.config
    train = stage_training(config, FINETUNING) if train is None else train
    out_dir = Path(out_dir)
    if dataset is None:
        dataset = ShapesDataset(resolution=config.image_size, seed=2, split="train")
    samples = load_examples(dataset, range(min(16, _size(dataset) or 16)))[0]

    def loss_fn(images, _):
        with no_grad():
            codes = tokenizer.quantizer.embed(tokenizer.encode(images)).permute(0, 3, 1, 2)
        recon = reconstruction_loss(tokenizer.decoder(codes), images, recon_loss)
        return recon, {"recon": recon.item()}

    fit(tokenizer, loss_fn, _images_at(dataset, train, tokenizer.device), train, out_dir,
        run_config={"model": config.to_dict(), "finetune": "decoder", "recon_loss": recon_loss},
        trainable=tokenizer.decoder,
        save_weights=lambda step: tokenizer.save(out_dir / TOKENIZER, {"step": step}),
        evaluations={"reconstructions": _reconstructions(tokenizer, samples, out_dir)},
        resume=resume, title=f"decoder {config.image_size}px")
    return tokenizer.eval()
