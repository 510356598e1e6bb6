"""Converting images between the two layouts tinymuse uses.

* For looking at and saving: ``uint8`` arrays, channels last, ``[H, W, 3]`` (or ``[N, H, W, 3]``),
  values 0 to 255, as Pillow reads and writes them.
* For models: ``float32`` arrays, channels first, ``[N, 3, H, W]``, values in ``[-1, 1]``: zero
  mean-ish inputs suit a network better than 0 to 255.
"""

import numpy as np


def to_model_images(images):
    """uint8 ``[H, W, 3]``, ``[N, H, W, 3]`` or a list of ``[H, W, 3]`` -> float32 NCHW in [-1, 1]."""
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4 or batch.shape[-1] != 3 or batch.dtype != np.uint8:
        raise ValueError(
            f"expected uint8 images of shape [N, H, W, 3], got {batch.dtype} {batch.shape}"
        )
    return (batch.transpose(0, 3, 1, 2).astype(np.float32) / 127.5) - 1.0


def to_uint8_images(images):
    """Any image layout tinymuse uses -> uint8 ``[N, H, W, 3]``.

    Accepts float NCHW (or CHW) in [-1, 1], which is clipped and rounded, and uint8 NHWC
    (or HWC) or a list of ``[H, W, 3]`` uint8 arrays, which pass through.
    """
    batch = np.asarray(images)
    if batch.ndim == 3:
        batch = batch[None]
    if batch.ndim != 4:
        raise ValueError(f"expected a batch of images [N, ...], got shape {batch.shape}")
    if batch.dtype == np.uint8:
        if batch.shape[-1] != 3:
            raise ValueError(f"uint8 images are [N, H, W, 3]; got shape {batch.shape}")
        return batch
    if not np.issubdtype(batch.dtype, np.floating) or batch.shape[1] != 3:
        raise ValueError(
            f"float images are [N, 3, H, W] in [-1, 1]; got {batch.dtype} {batch.shape}"
        )
    pixels = np.rint((np.clip(batch, -1.0, 1.0) + 1.0) * 127.5)
    return pixels.astype(np.uint8).transpose(0, 2, 3, 1)
