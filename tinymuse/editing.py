"""Editing images with a trained cascade, without any fine-tuning (Muse §2.6 and §4.4).

A masked token model has been trained to fill in *any* subset of hidden tokens given the
rest. Editing is that and nothing more: encode the image into tokens, hide the ones that
should change, and decode them again under a new prompt; every token that is not hidden is
kept exactly.

**Inpainting** (:func:`inpaint`): the user paints a pixel mask (True = replace). A token is
hidden if *any* pixel of its patch is masked, so a token that only partly overlaps the mask
is redrawn too: with images of side ``S`` and a token grid of side ``g``, token ``(i, j)``
covers pixels ``[i·S/g, (i+1)·S/g) × [j·S/g, (j+1)·S/g)``, and

    token_mask[i, j] = any(pixel_mask[patch(i, j)]).

Across the cascade, as in Muse: first the base tokens (8×8) under the mask are redrawn by
the base transformer, then the super-resolution tokens (16×16) under the mask are redrawn by
the super-resolution transformer, conditioned on the *new* base tokens. A mask that covers
no pixel at all is an error (there would be nothing to draw).

**Outpainting** (:func:`outpaint`): the models draw a fixed-size canvas, so "beyond the
border" means moving the canvas. ``shift=(dy, dx)`` moves the picture by that many pixels
(down and right for positive values); ``extend=(top, bottom, left, right)`` adds margins and
shrinks the larger canvas back to the model's size (zooming out). Either way the uncovered
pixels are masked and inpainted.

**Mask-free editing** (:func:`edit`): no mask at all. Start from the image's base tokens and,
for many iterations, hide a small random subset (``fraction``, Muse: 8%) and resample it
under the new prompt with strong guidance (Muse: scale 4) and top-k sampling (Muse: k = 3)
(:func:`tinymuse.decoding.mask_free_edit`). The picture drifts towards the prompt while
keeping the structure that already fits it. The super-resolution tokens are then redrawn
only under the base tokens that changed.

Every editing function returns what :meth:`tinymuse.Pipeline.generate` returns (the images,
or a :class:`tinymuse.pipeline.PipelineOutput` with ``return_tokens=True``) and takes its
``base``, ``superres``, ``negative_prompt``, ``seed`` and ``output`` options; the settings
default to :data:`tinymuse.sampling.BASE` and ``SUPERRES`` for inpainting and outpainting,
and to :data:`~tinymuse.sampling.EDIT` and ``EDIT_SUPERRES`` for mask-free editing.

Images in: float NCHW (or CHW) in [-1, 1], uint8 HWC (or NHWC), a ``PIL.Image``, a
:class:`~tinymuse.tensor.Tensor`, or a path to an image file, always at the pipeline's size
(64×64 by default); anything else is refused with a message naming the size expected.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from . import backend, sampling
from .data.images import read_picture
from .decoding import edit_stage, sample_stage, stage_hook
from .tensor import Tensor

__all__ = ["load_images", "load_pixel_mask", "token_mask", "downsample", "shift_canvas",
           "extend_canvas", "inpaint", "outpaint", "edit"]


# --------------------------------------------------------------------------- #
# Images and masks in.
# --------------------------------------------------------------------------- #


def _read_picture(path, what: str) -> np.ndarray:
    """A picture file → uint8 (H, W, 3), through the one reader of users' files (16-bit and
    transparent pictures included; a bad file is a one-line PictureError naming it). A mask's
    transparent pixels are unpainted, so they read as black: keep."""
    return read_picture(path, what, background=0 if what == "mask" else 255)


def load_images(images, size: int) -> np.ndarray:
    """Images in any layout tinymuse accepts → float32 (B, 3, size, size) in [-1, 1].

    Accepted: a path (``str`` or ``Path``) to an image file, a ``PIL.Image``, a uint8 array
    (H, W, 3) or (B, H, W, 3), a float array or Tensor (3, H, W) or (B, 3, H, W) in [-1, 1],
    or a list of any of those. Images must already be ``size``×``size``: nothing is resized
    silently (a picture's content would move under a mask drawn for it).
    """
    if isinstance(images, (list, tuple)) and images and not np.isscalar(images[0]):
        return np.concatenate([load_images(image, size) for image in images])
    if isinstance(images, (str, Path)):
        images = _read_picture(images, "image")
    elif isinstance(images, Image.Image):
        images = np.asarray(images.convert("RGB"))
    elif isinstance(images, Tensor):
        images = images.numpy()
    array = np.asarray(backend.to_numpy(images) if hasattr(images, "shape") else images)
    fix = (f"give {size}×{size} images: float (B, 3, {size}, {size}) in [-1, 1], uint8 "
           f"({size}, {size}, 3), a PIL image or a path; resize a picture with "
           f"tinymuse.data.load_square_image(path, {size})")
    if array.dtype == np.uint8:
        if array.ndim == 3:
            array = array[None]
        if array.ndim != 4 or array.shape[-1] != 3:
            raise ValueError(f"uint8 images must be (H, W, 3) or (B, H, W, 3) RGB; got shape "
                             f"{array.shape}. {fix}")
        if array.shape[1:3] != (size, size):
            raise ValueError(f"the image is {array.shape[2]}×{array.shape[1]} pixels, but this "
                             f"pipeline works on {size}×{size}; {fix}")
        return array.transpose(0, 3, 1, 2).astype(np.float32) / 127.5 - 1.0
    if array.dtype.kind != "f":
        raise TypeError(f"images must be uint8 pictures or floats in [-1, 1]; got dtype "
                        f"{array.dtype}. {fix}")
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1] != 3:
        raise ValueError(f"float images must be (3, H, W) or (B, 3, H, W) (channels first); "
                         f"got shape {array.shape}. {fix}")
    if array.shape[2:] != (size, size):
        raise ValueError(f"the image is {array.shape[3]}×{array.shape[2]} pixels, but this "
                         f"pipeline works on {size}×{size}; {fix}")
    if not np.isfinite(array).all() or array.min() < -1.001 or array.max() > 1.001:
        raise ValueError(f"float images must hold values in [-1, 1]; got values from "
                         f"{np.nanmin(array):.3g} to {np.nanmax(array):.3g} (uint8 pictures "
                         f"can be passed as they are)")
    return np.clip(array, -1.0, 1.0).astype(np.float32)


def load_pixel_mask(mask, size: int, batch: int) -> np.ndarray:
    """A pixel mask → bool (batch, size, size), True = replace this pixel.

    Accepted: a bool or numeric array (H, W) for every image or (B, H, W) one per image
    (nonzero = masked), a uint8 picture (H, W, 3) or a ``PIL.Image`` or a path to an image
    file (a pixel brighter than half in any channel = masked, so white paint on black, or on
    a transparent layer).
    """
    if isinstance(mask, (str, Path)):
        mask = _read_picture(mask, "mask")
    elif isinstance(mask, Image.Image):
        mask = np.asarray(mask.convert("RGB"))
    elif isinstance(mask, Tensor):
        mask = mask.numpy()
    array = np.asarray(mask)
    if array.dtype == np.uint8 and array.ndim == 3 and array.shape[-1] in (3, 4):
        array = (array[..., :3] > 127).any(axis=-1)
    if array.dtype.kind not in "biuf":
        raise TypeError(f"the mask must be an array of bools or numbers, got dtype {array.dtype}")
    given = array.shape
    if array.ndim == 2:
        array = np.broadcast_to(array[None], (batch,) + array.shape)
    if array.ndim != 3 or array.shape[1:] != (size, size) or array.shape[0] not in (1, batch):
        raise ValueError(f"the mask must cover the image pixel by pixel: ({size}, {size}) for "
                         f"every image or ({batch}, {size}, {size}), one per image; got shape "
                         f"{given}")
    return np.broadcast_to(array != 0, (batch, size, size)).copy()


def token_mask(pixel_mask, grid: int) -> np.ndarray:
    """Pixel mask (B, S, S) → token mask (B, grid, grid): a token is masked if any pixel of
    its patch (S/grid pixels on a side) is."""
    pixel_mask = np.asarray(pixel_mask, dtype=bool)
    batch, height, width = pixel_mask.shape
    if height != width or height % grid:
        raise ValueError(f"a {height}×{width} mask does not split into {grid}×{grid} patches")
    # BEGIN EXERCISE ch09_ex1
    patch = height // grid                                         # pixels per token side
    patches = pixel_mask.reshape(batch, grid, patch, grid, patch)  # (B, g, p, g, p)
    return patches.any(axis=(2, 4))
    # END EXERCISE


def downsample(images, factor: int) -> np.ndarray:
    """Shrink (B, C, H, W) images by a whole ``factor``, each output pixel the mean of a
    factor×factor block (box filter)."""
    images = np.asarray(images)
    if factor == 1:
        return images
    b, c, h, w = images.shape
    return images.reshape(b, c, h // factor, factor, w // factor, factor).mean(axis=(3, 5))


# --------------------------------------------------------------------------- #
# Outpainting: moving and widening the canvas.
# --------------------------------------------------------------------------- #


def shift_canvas(images, dy: int, dx: int, fill: float = 0.0):
    """Move (B, 3, S, S) images by ``dy`` pixels down and ``dx`` right on a canvas of the same
    size. Returns ``(canvas, uncovered)``: the moved images (``fill`` where nothing landed)
    and the bool mask (B, S, S) of the uncovered pixels."""
    images = np.asarray(images)
    size = images.shape[-1]
    if not all(isinstance(v, (int, np.integer)) for v in (dy, dx)):
        raise TypeError(f"shift must be whole pixels (dy, dx), got {(dy, dx)!r}")
    if abs(dy) >= size or abs(dx) >= size or (dy, dx) == (0, 0):
        raise ValueError(f"shift=(dy, dx) must move the picture by 1 to {size - 1} pixels "
                         f"along at least one axis; got {(dy, dx)}")
    # BEGIN EXERCISE ch09_ex2
    canvas = np.full_like(images, fill)
    uncovered = np.ones((images.shape[0], size, size), dtype=bool)
    rows = slice(max(dy, 0), size + min(dy, 0))
    cols = slice(max(dx, 0), size + min(dx, 0))
    source_rows = slice(max(-dy, 0), size + min(-dy, 0))
    source_cols = slice(max(-dx, 0), size + min(-dx, 0))
    canvas[:, :, rows, cols] = images[:, :, source_rows, source_cols]
    uncovered[:, rows, cols] = False
    return canvas, uncovered
    # END EXERCISE


def extend_canvas(images, extend, fill: float = 0.0):
    """Add margins ``extend = (top, bottom, left, right)`` pixels (or one number for all four)
    to (B, 3, S, S) images and shrink the result back to S×S (zooming out). The widened
    canvas must stay square. Returns ``(canvas, uncovered)`` as :func:`shift_canvas`; a pixel
    that the shrinking mixes from old and new pixels counts as uncovered."""
    images = np.asarray(images)
    size = images.shape[-1]
    if isinstance(extend, (int, np.integer)):
        extend = (extend,) * 4
    if len(extend) != 4 or not all(isinstance(v, (int, np.integer)) and v >= 0 for v in extend):
        raise ValueError(f"extend must be (top, bottom, left, right) in whole pixels >= 0, or "
                         f"one number for all four; got {extend!r}")
    top, bottom, left, right = (int(v) for v in extend)
    if top + bottom != left + right:
        raise ValueError(f"extend={extend!r} would make the canvas {size + left + right} wide "
                         f"and {size + top + bottom} high; the models draw square images, so "
                         f"add as much in height (top + bottom) as in width (left + right)")
    if top + bottom == 0:
        raise ValueError("extend adds no margin: give at least one positive side")
    # BEGIN EXERCISE ch09_ex3
    big = size + top + bottom
    canvas = np.full(images.shape[:2] + (big, big), fill, dtype=np.float32)
    canvas[:, :, top:top + size, left:left + size] = images
    new = np.ones((big, big), dtype=np.float32)
    new[top:top + size, left:left + size] = 0.0

    def shrink(plane):  # one float channel, box filter: every source pixel counts once
        return np.asarray(Image.fromarray(plane).resize((size, size), Image.BOX))

    shrunk = np.stack([np.stack([shrink(channel) for channel in image]) for image in canvas])
    uncovered = shrink(new) > 1e-6
    return np.clip(shrunk, -1.0, 1.0), np.broadcast_to(uncovered, (len(images), size, size)).copy()
    # END EXERCISE


# --------------------------------------------------------------------------- #
# The editing operations.
# --------------------------------------------------------------------------- #


def _check_covers_each_image(mask: np.ndarray, what: str) -> None:
    covered = mask.reshape(len(mask), -1).any(axis=1)
    if not covered.any():
        raise ValueError(f"the {what} covers no pixel, so there is nothing to redraw; mark the "
                         f"pixels to replace with True (or white in a mask picture)")
    if not covered.all():
        raise ValueError(f"the {what} covers no pixel of image(s) "
                         f"{np.flatnonzero(~covered).tolist()}; give every image a region "
                         f"(or leave those images out)")


def inpaint(pipeline, image, pixel_mask, prompt, *, base=None, superres=None,
            negative_prompt=None, seed: int | None = None, output: str = "float",
            return_tokens: bool = False, callback=None):
    """Redraw the pixels of ``image`` where ``pixel_mask`` is True to fit ``prompt``; every
    token outside the mask (at both resolutions) is kept exactly (see the module docstring).
    ``image`` as :func:`load_images`, ``pixel_mask`` as :func:`load_pixel_mask`; the other
    options as :meth:`tinymuse.Pipeline.generate`."""
    images = load_images(image, pipeline.image_size)
    mask = load_pixel_mask(pixel_mask, pipeline.image_size, len(images))
    _check_covers_each_image(mask, "mask")
    prompts = sampling.one_each(prompt, len(images), "image")
    low, high = pipeline.encode_images(images)
    masks = (token_mask(mask, low.shape[-1]), token_mask(mask, high.shape[-1]))
    return pipeline.redraw(prompts, (low, high), masks, base=base, superres=superres,
                           negative_prompt=negative_prompt, seed=seed, output=output,
                           return_tokens=return_tokens, callback=callback)


def outpaint(pipeline, image, prompt, *, shift=None, extend=None, fill: float = 0.0,
             **options):
    """Move (``shift=(dy, dx)`` pixels, positive = down/right) or widen (``extend=(top,
    bottom, left, right)``) the canvas and inpaint the uncovered region under ``prompt``.
    Exactly one of ``shift`` and ``extend``; ``fill`` is the value the uncovered pixels hold
    before they are redrawn; ``options`` as :func:`inpaint`."""
    if (shift is None) == (extend is None):
        raise ValueError("outpaint needs exactly one of shift=(dy, dx) (move the picture) and "
                         "extend=(top, bottom, left, right) (add margins and zoom out)")
    images = load_images(image, pipeline.image_size)
    if shift is not None:
        if not isinstance(shift, (tuple, list)) or len(shift) != 2:
            raise ValueError(f"shift must be (dy, dx) in pixels, got {shift!r}")
        canvas, uncovered = shift_canvas(images, shift[0], shift[1], fill)
    else:
        canvas, uncovered = extend_canvas(images, extend, fill)
    return inpaint(pipeline, canvas, uncovered, prompt, **options)


def edit(pipeline, image, prompt, *, base=None, superres=None, region=None,
         negative_prompt=None, seed: int | None = None, output: str = "float",
         return_tokens: bool = False, callback=None):
    """Mask-free editing (Muse §2.6): move ``image`` towards ``prompt`` without a mask.

    ``base`` (default :data:`tinymuse.sampling.EDIT`) says how: ``iterations`` times, about
    ``fraction`` of the base tokens (of ``region``, a pixel mask, if given; all of them
    otherwise) are hidden at random and resampled in one step with guidance and top-k sampling
    (:func:`tinymuse.decoding.mask_free_edit`). Then the super-resolution tokens under every
    base token that changed are redrawn with ``superres`` (default
    :data:`tinymuse.sampling.EDIT_SUPERRES`) on the new base tokens; the others are kept.
    ``base`` and ``superres`` are :class:`~tinymuse.sampling.Sampling` settings or dicts of
    changes to the defaults. ``callback(stage, done, total)`` is called after each editing
    iteration (stage ``"edit"``) and each super-resolution step (``"superres"``).
    """
    base = sampling.resolve(sampling.EDIT, base)
    superres = sampling.resolve(sampling.EDIT_SUPERRES, superres)
    images = load_images(image, pipeline.image_size)
    prompts = sampling.one_each(prompt, len(images), "image")
    negatives = sampling.negative_prompt_list(negative_prompt, len(prompts))
    pipeline.check_output(output)
    low, high = pipeline.encode_images(images)
    grid = low.shape[-1]
    allowed = None
    if region is not None:
        allowed = token_mask(load_pixel_mask(region, pipeline.image_size, len(images)), grid)
        _check_covers_each_image(allowed, "region")
    generator = pipeline.generator(seed)
    new_low = edit_stage(pipeline.base, prompts, low, base, region=allowed,
                         negative_prompts=negatives, generator=generator,
                         on_step=stage_hook(callback, "edit"))
    scale = high.shape[-1] // grid
    redraw = (new_low != low).repeat(scale, axis=1).repeat(scale, axis=2)
    if redraw.any():
        high = sample_stage(pipeline.superres, prompts, superres, low_tokens=new_low,
                            tokens=high, mask=redraw, negative_prompts=negatives,
                            generator=generator, on_step=stage_hook(callback, "superres")).tokens
    return pipeline.finish(new_low, high, output, return_tokens)
