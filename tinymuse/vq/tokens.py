"""Using a trained tokenizer: reconstruction metrics and token caches.

The transformers of later stages never see pixels: they train on token grids.
Encoding the same images every epoch would waste time, so :func:`pre_encode`
runs the tokenizer once over a dataset and writes an *image-token cache*: one
``.safetensors`` file (via :mod:`tinymuse.checkpoint`: atomic, checksummed,
never pickle) holding

- ``tokens``: int32 (N, h, w), the token grid of every image,
- ``indices``: int64 (N,), which dataset example each grid came from,

with the captions and the tokenizer's config as JSON metadata.

**PSNR** (peak signal-to-noise ratio) measures reconstructions: with pixel
values in [0, 1] (ours are in [−1, 1], a range of 2),

    PSNR = 10 · log10(range² / MSE)  dB,

so every 10 dB divides the mean squared error by 10; 28 dB is an RMS error of
about 4% of the range.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from .. import checkpoint
from ..data import to_model_images
from .quantizer import codebook_statistics
from .tokenizer import VQTokenizer

IMAGE_TOKENS = "vq_image_tokens"


def psnr(images, reference, value_range: float = 2.0) -> float:
    """PSNR in dB of ``images`` against ``reference`` (arrays of one shape),
    from the mean squared error over all their pixels; inf if they are equal."""
    mse = float(np.mean((np.asarray(images, np.float64) - np.asarray(reference, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(value_range ** 2 / mse)


def load_examples(dataset, indices) -> tuple[np.ndarray, list]:
    """float32 images (B, 3, H, W) in [-1, 1] and captions of ``dataset[i]``
    (any dataset whose items are ``(uint8 image [H, W, 3], caption)``)."""
    examples = [dataset[int(i)] for i in indices]
    return to_model_images(np.stack([image for image, _ in examples])), [c for _, c in examples]


def _batches(dataset, count: int, batch_size: int, progress: bool, desc: str):
    for start in tqdm(range(0, count, batch_size), desc=desc, disable=not progress):
        yield load_examples(dataset, range(start, min(start + batch_size, count)))


@dataclass
class ReconstructionReport:
    """How well a tokenizer reconstructs a set of images."""

    images: int
    psnr: float                 # from the MSE over all images' pixels
    psnr_per_image: float       # mean of each image's own PSNR (capped at 60 dB)
    usage: float                # share of the codebook used at least once
    perplexity: float           # exp(entropy) of the code frequencies
    codes_used: int
    codebook_size: int

    def __str__(self) -> str:
        return (f"{self.images} images: PSNR {self.psnr:.2f} dB (per-image mean "
                f"{self.psnr_per_image:.2f} dB), codes used {self.codes_used}/"
                f"{self.codebook_size} ({100 * self.usage:.1f}%), perplexity {self.perplexity:.0f}")


def evaluate_reconstruction(tokenizer: VQTokenizer, dataset, count: int = 1000,
                            batch_size: int = 100, progress: bool = False,
                            keep: bool = False):
    """Encode and decode ``count`` examples of ``dataset`` (indices 0…count−1).

    Returns a :class:`ReconstructionReport`; with ``keep=True`` also the uint8
    reconstructions (count, H, W, 3) and the originals, for the oracle.
    """
    tokenizer.eval()
    squared_error, per_image, all_ids = 0.0, [], []
    kept_recon, kept_images = [], []
    for images, _ in _batches(dataset, count, batch_size, progress, "reconstructing"):
        ids = tokenizer.encode(images)
        recon = tokenizer.decode(ids).numpy()
        diff = (recon.astype(np.float64) - images) ** 2
        squared_error += diff.sum()
        image_mse = diff.reshape(len(images), -1).mean(axis=1)
        per_image.append(np.minimum(10 * np.log10(4.0 / np.maximum(image_mse, 1e-12)), 60.0))
        all_ids.append(ids.numpy())
        if keep:
            kept_recon.append(recon)
            kept_images.append(images)
    ids = np.concatenate(all_ids)
    mse = squared_error / (count * images[0].size)
    usage, perplexity = codebook_statistics(ids, tokenizer.config.codebook_size)
    report = ReconstructionReport(
        images=count, psnr=float(10 * np.log10(4.0 / mse)) if mse > 0 else float("inf"),
        psnr_per_image=float(np.concatenate(per_image).mean()), usage=usage,
        perplexity=perplexity, codes_used=int(round(usage * tokenizer.config.codebook_size)),
        codebook_size=tokenizer.config.codebook_size)
    if keep:
        return report, np.concatenate(kept_recon), np.concatenate(kept_images)
    return report


@dataclass
class ImageTokens:
    """An image-token cache read back by :func:`load_image_tokens`."""

    tokens: np.ndarray          # int32 (N, h, w)
    indices: np.ndarray         # int64 (N,): dataset index of each grid
    captions: list              # N captions ([] if the dataset had none)
    tokenizer_config: dict      # the VQConfig of the tokenizer that made them

    def __len__(self) -> int:
        return len(self.tokens)


def pre_encode(tokenizer: VQTokenizer, dataset, path, count: int | None = None,
               batch_size: int = 100, progress: bool = True) -> Path:
    """Encode examples 0…count−1 of ``dataset`` (all of them by default; an
    infinite dataset needs ``count``) and write an image-token cache to ``path``."""
    if count is None:
        try:
            count = len(dataset)
        except TypeError:
            raise ValueError("this dataset is infinite: pass count= (how many examples to "
                             "encode)") from None
    tokenizer.eval()
    grids, captions = [], []
    for images, batch_captions in _batches(dataset, count, batch_size, progress, "encoding images"):
        grids.append(tokenizer.encode(images).numpy().astype(np.int32))
        captions += batch_captions
    size = tokenizer.config.token_size
    tokens = np.concatenate(grids) if grids else np.zeros((0, size, size), np.int32)
    return checkpoint.save(path, {"tokens": tokens, "indices": np.arange(count)},
                           config=tokenizer.config.to_dict(),
                           metadata={"kind": IMAGE_TOKENS, "captions": captions})


def load_image_tokens(path) -> ImageTokens:
    """Read a cache written by :func:`pre_encode` (no tokenizer needed)."""
    saved = checkpoint.load(path)
    if saved.metadata.get("kind") != IMAGE_TOKENS:
        raise checkpoint.CheckpointError(f"{path} is not an image-token cache (write one with "
                                         f"tinymuse.vq.pre_encode)")
    return ImageTokens(saved.tensors["tokens"], saved.tensors["indices"],
                       saved.metadata["captions"], saved.config)
