"""Saving a batch of images as one grid picture, to look at samples."""

from pathlib import Path

import numpy as np
from PIL import Image

from .images import to_uint8_images


def image_grid(images, nrow=8, padding=2, scale=1, pad_value=255):
    """Tile images into one uint8 ``[H, W, 3]`` array, ``nrow`` images per row.

    ``images`` is any layout :func:`~tinymuse.data.images.to_uint8_images` accepts (float NCHW
    in [-1, 1], or uint8 HWC). ``scale`` enlarges each pixel into a ``scale`` x ``scale`` block,
    so that 32x32 samples are big enough to see.
    """
    batch = to_uint8_images(images)
    if scale != 1:
        batch = batch.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = batch.shape
    ncol = max(1, min(nrow, n))
    rows = -(-n // ncol)
    grid = np.full(
        (rows * h + (rows + 1) * padding, ncol * w + (ncol + 1) * padding, 3),
        pad_value,
        dtype=np.uint8,
    )
    for i, image in enumerate(batch):
        top = padding + (i // ncol) * (h + padding)
        left = padding + (i % ncol) * (w + padding)
        grid[top : top + h, left : left + w] = image
    return grid


def save_image_grid(images, path, nrow=8, padding=2, scale=1):
    """Save images as a grid PNG (or any format Pillow knows from ``path``'s suffix).

    Returns the grid as a uint8 ``[H, W, 3]`` array."""
    grid = image_grid(images, nrow=nrow, padding=padding, scale=scale)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid).save(path)
    return grid
