"""Saving a batch of images as one grid picture, to look at samples.

A grid can carry labels: each cell then gets a strip under it in the padding colour, with
its text (say, the prompt) in the default font, wrapped to at most :data:`LABEL_LINES` lines
of the cell's width and shortened with an ellipsis beyond. Without labels there is no strip.
"""

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from ..files import write_bytes
from .images import encode_png, to_uint8_images

LABEL_LINES = 2


def image_grid(images, nrow=8, padding=2, scale=1, pad_value=255, labels=None):
    """Tile images into one uint8 ``[H, W, 3]`` array, ``nrow`` images per row.

    ``images`` is any layout :func:`~tinymuse.data.images.to_uint8_images` accepts (float NCHW
    in [-1, 1], or uint8 HWC). ``scale`` enlarges each pixel into a ``scale`` x ``scale`` block,
    so that 32x32 samples are big enough to see. ``labels`` (one string, or None, per image)
    adds a strip of text under every cell.
    """
    batch = to_uint8_images(images)
    if scale != 1:
        batch = batch.repeat(scale, axis=1).repeat(scale, axis=2)
    n, h, w, _ = batch.shape
    font = strip = None
    if labels is not None:
        labels = _check_labels(labels, n)
        font = ImageFont.load_default()
        strip = 2 + LABEL_LINES * _line_height(font)
    cell = h + (strip or 0)
    ncol = max(1, min(nrow, n))
    rows = -(-n // ncol)
    grid = np.full(
        (rows * cell + (rows + 1) * padding, ncol * w + (ncol + 1) * padding, 3),
        pad_value,
        dtype=np.uint8,
    )
    corners = []
    for i, image in enumerate(batch):
        top = padding + (i // ncol) * (cell + padding)
        left = padding + (i % ncol) * (w + padding)
        grid[top : top + h, left : left + w] = image
        corners.append((left, top + h + 1))
    if labels is not None:
        grid = _draw_labels(grid, labels, corners, w, font, pad_value)
    return grid


def encode_grid_png(images, nrow=8, scale=1, labels=None, parameters=None, padding=2) -> bytes:
    """The bytes of a grid PNG (:func:`image_grid`), carrying ``parameters`` as
    :func:`~tinymuse.data.images.encode_png` does; write them with
    :func:`tinymuse.files.write_bytes`."""
    grid = image_grid(images, nrow=nrow, padding=padding, scale=scale, labels=labels)
    return encode_png(grid, parameters)


def save_image_grid(images, path, nrow=8, padding=2, scale=1, labels=None, parameters=None):
    """Save images as a grid PNG (or any format Pillow knows from ``path``'s suffix), written
    atomically; ``parameters`` need a ``.png`` path. Returns the grid as uint8 ``[H, W, 3]``."""
    path = Path(path)
    grid = image_grid(images, nrow=nrow, padding=padding, scale=scale, labels=labels)
    suffix = path.suffix.lower()
    if suffix == ".png":
        data = encode_png(grid, parameters)
    elif parameters is not None:
        raise ValueError(f"parameters are kept in PNG text chunks; save {path.name} as .png")
    else:
        known = Image.registered_extensions()
        if suffix not in known:
            raise ValueError(f"cannot tell a picture format from the suffix of {path}; "
                             f"use .png")
        buffer = io.BytesIO()
        Image.fromarray(grid).save(buffer, format=known[suffix])
        data = buffer.getvalue()
    write_bytes(path, data)
    return grid


# --------------------------------------------------------------------------- #
# Labels.
# --------------------------------------------------------------------------- #


def _check_labels(labels, n):
    if isinstance(labels, str) or len(labels) != n:
        given = "one string" if isinstance(labels, str) else f"{len(labels)} labels"
        raise ValueError(f"labels must be a list with one string (or None) per image: "
                         f"{n} images, {given}")
    return ["" if label is None else str(label) for label in labels]


def _line_height(font):
    return font.getbbox("Ag|")[3] + 1


def _ellipsis(font):
    return "…" if isinstance(font, ImageFont.FreeTypeFont) else "..."


def _width(text, font):
    """Pixels ``text`` covers: glyphs may reach left of the pen or right of the advance."""
    left, _, right, _ = font.getbbox(text)
    return max(right, font.getlength(text)) - min(left, 0)


def _longest_prefix(text, font, width):
    """How many leading characters of ``text`` fit in ``width`` pixels (at least one)."""
    count = 1
    while count < len(text) and _width(text[: count + 1], font) <= width:
        count += 1
    return count


def _wrap(text, font, width, lines=LABEL_LINES):
    """``text`` as at most ``lines`` lines no wider than ``width``: words wrap, a word wider
    than a line is cut, and text beyond the last line ends in an ellipsis."""
    out, current = [], ""
    for word in text.split():
        joined = f"{current} {word}" if current else word
        if _width(joined, font) <= width:
            current = joined
            continue
        if current:
            out.append(current)
        current = word
        while len(current) > 1 and _width(current, font) > width:
            cut = _longest_prefix(current, font, width)
            out.append(current[:cut])
            current = current[cut:]
    if current:
        out.append(current)
    if len(out) <= lines:
        return out
    last, dots = out[lines - 1], _ellipsis(font)
    while last and _width(last + dots, font) > width:
        last = last[:-1]
    return out[: lines - 1] + [last.rstrip() + dots]


def _draw_labels(grid, labels, corners, width, font, pad_value):
    """Draw each label at its (left, top) corner, dark on a light padding, light on dark."""
    ink = (20, 20, 20) if np.mean(pad_value) >= 128 else (235, 235, 235)
    picture = Image.fromarray(grid)
    draw = ImageDraw.Draw(picture)
    step = _line_height(font)
    room = max(width - 2, 1)  # a little space before the neighbour's text
    for label, (left, top) in zip(labels, corners):
        if not isinstance(font, ImageFont.FreeTypeFont):  # the bitmap font is Latin-1 only
            label = label.encode("latin-1", "replace").decode("latin-1")
        for number, line in enumerate(_wrap(label, font, room)):
            overhang = min(font.getbbox(line)[0], 0)  # keep a glyph's left edge in the cell
            draw.text((left - overhang, top + number * step), line, fill=ink, font=font)
    return np.array(picture)
