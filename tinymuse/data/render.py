"""Drawing a :class:`~tinymuse.data.spec.Scene` into pixels with Pillow.

Pillow draws hard-edged shapes, so the renderer draws the scene several times larger than asked
(supersampling) and then shrinks it with a box filter: each output pixel becomes the average of
the block it covers, so an edge pixel half covered by a red circle comes out half red. That is
anti-aliasing, and it is why the same scene looks the same at 32x32 and at 64x64, only sharper.
"""

import math

import numpy as np
from PIL import Image, ImageDraw

from .glyphs import GLYPH_COLUMNS, GLYPH_ROWS, glyph_bitmap
from .vocabulary import BACKGROUNDS, COLOURS

_SUPERSAMPLED_SIDE = 256  # draw at least this many pixels across before shrinking


def render_scene(scene, resolution):
    """The scene as a uint8 RGB array of shape ``[resolution, resolution, 3]``."""
    if int(resolution) != resolution or resolution < 8:
        raise ValueError(f"resolution must be an integer of at least 8, got {resolution!r}")
    resolution = int(resolution)
    factor = max(4, math.ceil(_SUPERSAMPLED_SIDE / resolution))
    side = resolution * factor
    canvas = Image.new("RGB", (side, side), BACKGROUNDS[scene.background])
    draw = ImageDraw.Draw(canvas)
    for obj in scene.objects:
        _draw_object(draw, obj, side)
    if scene.glyph is not None:
        _draw_glyph(draw, scene.glyph, side)
    return np.asarray(canvas.resize((resolution, resolution), Image.BOX))


def _draw_object(draw, obj, side):
    left, top, right, bottom = (round(v * side) for v in obj.box)
    colour = COLOURS[obj.colour]
    if obj.shape == "circle":
        draw.ellipse([left, top, right - 1, bottom - 1], fill=colour)
    elif obj.shape == "square":
        draw.rectangle([left, top, right - 1, bottom - 1], fill=colour)
    elif obj.shape == "triangle":  # upright: apex at the top centre, base along the bottom
        apex = ((left + right) / 2, top)
        draw.polygon([apex, (right, bottom), (left, bottom)], fill=colour)
    else:
        raise ValueError(f"cannot draw shape {obj.shape!r}")


def _draw_glyph(draw, glyph, side):
    bitmap = glyph_bitmap(glyph.char)
    cell = glyph.height / GLYPH_ROWS
    left = glyph.x - cell * GLYPH_COLUMNS / 2
    top = glyph.y - glyph.height / 2
    # Round the cell edges once, so neighbouring cells share an edge and leave no seams.
    xs = [round((left + c * cell) * side) for c in range(GLYPH_COLUMNS + 1)]
    ys = [round((top + r * cell) * side) for r in range(GLYPH_ROWS + 1)]
    colour = COLOURS[glyph.colour]
    for r, c in zip(*np.nonzero(bitmap)):
        draw.rectangle([xs[c], ys[r], xs[c + 1] - 1, ys[r + 1] - 1], fill=colour)
