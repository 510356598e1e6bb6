"""Reading a shapes-world picture back from its pixels: the oracle's eyes.

The oracle (:mod:`tinymuse.evaluate`) asks this module what an image shows and compares the
answer with what its caption said. Nothing here knows the scene that was drawn; everything is
measured from RGB values, so it works just as well on a model's generations. The steps:

1. **Background.** Objects never touch the border, so the border pixels show the background.
   Their median is snapped to the nearest background colour.
2. **Mixing lines.** An edge pixel of a red circle on white is pink: part red, part white. Any
   pixel of an object in colour ``c`` is ``background + alpha * (c - background)``, a point on
   the line from the background to ``c``, where ``alpha`` is how much of the pixel the object
   covers. So colours are judged by the line that passes closest, not by the nearest colour.
3. **Foreground.** A pixel is foreground when it is at least half covered by some colour, so
   the blurred fringes between two nearby objects do not join them (or when it is far from the
   background in a colour off every line, so odd colours in a generation still count).
4. **Objects.** Foreground pixels that touch (also diagonally) form one object: the connected
   components of the foreground mask, found by letting every pixel repeatedly take the
   smallest label among its neighbours until no label changes. Each object then claims the
   faint fringe pixels within a few pixels of it.
5. **Colour, area and centre.** An object's colour is the palette colour whose line best
   explains all its pixels. With the colour known, summing ``alpha`` gives the object's area
   to a fraction of a pixel, and the ``alpha``-weighted mean position its centre; blurring the
   image changes neither.
6. **Shape and size.** The oracle draws each candidate shape (circle, square, triangle) with
   the object's area and centre, sharp and slightly blurred, and keeps the one that overlaps
   the object's ``alpha`` best. The size follows from the area of that shape.
7. **Glyphs.** The same idea: measure the glyph's height from its ink, draw all 36 characters
   of the 5x7 font at that height and position, and keep the best match.

Every threshold below is a fraction of the image (which is square, as all of tinymuse's are) or
a colour distance, so the same code reads 32x32 and 64x64 images.
"""

import functools
from dataclasses import dataclass

import numpy as np

from .glyphs import GLYPH_COLUMNS, GLYPH_ROWS, all_glyph_bitmaps
from .vocabulary import BACKGROUNDS, COLOURS, SIZES

BACKGROUND_TOLERANCE = 60.0  # how far (RGB distance) the border may be from a background colour
FOREGROUND_THRESHOLD = 45.0  # RGB distance from the background of a foreground pixel off-palette
MIN_OBJECT_AREA = 0.004  # components smaller than this fraction of the image are specks
COLOUR_TOLERANCE = 50.0  # mean RGB distance from the best mixing line, above which no colour fits
SHAPE_TOLERANCE = 0.45  # mismatch per unit of area, above which no shape fits
GLYPH_TOLERANCE = 0.45  # mismatch per unit of ink, above which no glyph fits

FILL = {"circle": np.pi / 4, "square": 1.0, "triangle": 0.5}  # area / bounding-box area
SIZE_THRESHOLD = (SIZES["small"] + SIZES["large"]) / 2
BLURS = (0.0, 0.5, 0.8, 1.2)  # blur widths (pixels) at which candidate shapes are drawn

_BACKGROUND_NAMES = list(BACKGROUNDS)
_BACKGROUND_RGB = np.array(list(BACKGROUNDS.values()), dtype=np.float32)
_COLOUR_NAMES = list(COLOURS)
_COLOUR_RGB = np.array(list(COLOURS.values()), dtype=np.float32)


@dataclass(frozen=True)
class SeenObject:
    """What the oracle sees of one object. Positions and sizes are fractions of the image side;
    an attribute is ``None`` when no candidate fits well enough."""

    colour: str | None
    shape: str | None
    size: str | None
    x: float
    y: float
    extent: float  # side of the bounding box the shape's area implies
    pixels: int  # foreground pixels in the component


@dataclass(frozen=True)
class SeenGlyph:
    char: str | None
    colour: str | None


@dataclass(frozen=True)
class Observation:
    """Everything the oracle read from one image."""

    background: str | None
    objects: tuple[SeenObject, ...]  # top to bottom, by each object's highest pixel
    glyph: SeenGlyph | None = None  # only read when asked for


def look(image, read_glyph=False):
    """Read a uint8 RGB image ``[H, W, 3]``: its background, its objects and, when
    ``read_glyph`` is true, the glyph it shows."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    pixels = image.astype(np.float32)
    background, background_rgb = read_background(pixels)
    mask = foreground(pixels, background_rgb)
    labels, n = connected_components(mask)
    territory = grow_labels(labels, steps=3)  # each object's faint fringe belongs to it
    min_pixels = MIN_OBJECT_AREA * mask.size
    objects = []
    for label in range(1, n + 1):
        if np.count_nonzero(labels == label) >= min_pixels:
            objects.append(_read_object(pixels, background_rgb, labels, territory, label))
    glyph = _read_glyph(pixels, background_rgb, mask) if read_glyph else None
    return Observation(background, tuple(objects), glyph)


def read_background(pixels):
    """``(name, rgb)`` of the background: the median of the border pixels, named by the nearest
    background colour (name ``None`` when none is within ``BACKGROUND_TOLERANCE``)."""
    border = np.concatenate([pixels[0], pixels[-1], pixels[1:-1, 0], pixels[1:-1, -1]])
    rgb = np.median(border, axis=0)
    distances = np.linalg.norm(_BACKGROUND_RGB - rgb, axis=1)
    nearest = int(np.argmin(distances))
    if distances[nearest] > BACKGROUND_TOLERANCE:
        return None, rgb
    return _BACKGROUND_NAMES[nearest], _BACKGROUND_RGB[nearest]


def foreground(pixels, background_rgb):
    """The pixels that are mostly object: at least half covered by some palette colour (so the
    blurred fringes of two nearby objects do not join them), or far from the background in a
    colour off every mixing line (so a model's odd colours still count as something)."""
    offsets = (pixels - background_rgb).reshape(-1, 3)
    alpha, residuals = mixing_lines(offsets, _COLOUR_RGB - background_rgb)  # [N, K] each
    # BEGIN EXERCISE ch03_ex3
    nearest = residuals.argmin(axis=1)
    rows = np.arange(len(offsets))
    covered = alpha[rows, nearest] >= 0.5
    odd = (residuals[rows, nearest] > COLOUR_TOLERANCE) & (
        np.linalg.norm(offsets, axis=1) > FOREGROUND_THRESHOLD
    )
    return (covered | odd).reshape(pixels.shape[:2])
    # END EXERCISE


def mixing_lines(offsets, directions):
    """Where ``offsets`` ``[N, 3]`` (pixels minus the background) lie against the mixing lines
    that run from the background along ``directions`` ``[K, 3]`` (each colour minus the
    background): ``(alpha, residuals)``, both ``[N, K]``. ``alpha`` is how far along each line
    a pixel projects, clipped to [0, 1] (how much of the pixel that colour covers);
    ``residuals`` is the pixel's distance from the point ``alpha`` along that line."""
    # BEGIN EXERCISE ch03_ex3
    alpha = np.clip(offsets @ directions.T / (directions**2).sum(axis=1), 0.0, 1.0)  # [N, K]
    mixes = alpha[:, :, None] * directions[None]  # [N, K, 3]
    residuals = np.linalg.norm(offsets[:, None] - mixes, axis=-1)  # [N, K]
    return alpha, residuals
    # END EXERCISE


def connected_components(mask):
    """Label the 8-connected regions of a boolean mask: ``(labels, n)`` with labels 1..n on
    the regions and 0 elsewhere.

    Each foreground pixel starts with its own number. Repeatedly, each takes the smallest number
    among itself and its 8 neighbours, then jumps to the number *that* pixel holds (pointer
    jumping, which spreads a label across a long region in few rounds). When nothing changes,
    each region holds one number: the smallest in it.
    """
    # BEGIN EXERCISE ch03_ex4
    h, w = mask.shape
    flat = np.arange(h * w).reshape(h, w)
    none = h * w  # a number larger than any pixel's
    labels = np.where(mask, flat, none)
    while True:
        padded = np.pad(labels, 1, constant_values=none)
        smallest = labels.copy()
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                np.minimum(smallest, padded[dy : dy + h, dx : dx + w], out=smallest)
        smallest = np.where(mask, smallest, none)
        on = smallest < none
        smallest[on] = np.minimum(smallest[on], smallest.flat[smallest[on]])  # jump
        if np.array_equal(smallest, labels):
            break
        labels = smallest
    roots, dense = np.unique(labels, return_inverse=True)
    dense = dense.reshape(h, w) + 1
    dense[~mask] = 0
    return dense, int(len(roots) - (none in roots))
    # END EXERCISE


def classify_colour(pixels, background_rgb, palette=_COLOUR_RGB):
    """Index of the palette colour whose mixing line with the background best explains
    ``pixels`` ``[N, 3]``, and the mean distance of the pixels from that line."""
    offsets = pixels - background_rgb  # [N, 3]
    _, residuals = mixing_lines(offsets, palette - background_rgb)  # [N, K]
    weights = np.linalg.norm(offsets, axis=-1, keepdims=True)  # trust the purest pixels most
    cost = (residuals * weights).sum(axis=0) / max(float(weights.sum()), 1e-6)
    best = int(np.argmin(cost))
    return best, float(cost[best])


def opacity(pixels, background_rgb, colour_rgb):
    """How much of each pixel the colour covers: its colour's position on the line from the
    background to ``colour_rgb``, clipped to [0, 1]."""
    direction = colour_rgb - background_rgb
    alpha = (pixels - background_rgb) @ direction / float(direction @ direction)
    return np.clip(alpha, 0.0, 1.0)


def grow_labels(labels, steps):
    """Spread each label into unlabelled neighbouring pixels, ``steps`` pixels deep, so that
    the faint, blurred fringe around an object is counted as that object's and not its
    neighbour's."""
    h, w = labels.shape
    for _ in range(steps):
        padded = np.pad(labels, 1)
        neighbours = [padded[dy : dy + h, dx : dx + w] for dy in (0, 1, 2) for dx in (0, 1, 2)]
        labels = np.where(labels > 0, labels, np.max(neighbours, axis=0))
    return labels


def _read_object(pixels, background_rgb, labels, territory, label):
    component = labels == label
    height, width = component.shape
    index, distance = classify_colour(pixels[component], background_rgb)
    colour = _COLOUR_NAMES[index] if distance <= COLOUR_TOLERANCE else None
    # The alpha of this object alone, in a window around it (blurred edges reach past the mask).
    ys, xs = np.nonzero(component)
    top, left = max(ys.min() - 3, 0), max(xs.min() - 3, 0)
    bottom, right = min(ys.max() + 4, labels.shape[0]), min(xs.max() + 4, labels.shape[1])
    window = (slice(top, bottom), slice(left, right))
    alpha = opacity(pixels[window], background_rgb, _COLOUR_RGB[index])
    alpha[territory[window] != label] = 0.0
    if alpha.sum() < 1.0:  # colours off every mixing line: fall back to the hard mask
        alpha = component[window].astype(np.float32)
    area = float(alpha.sum())
    gy, gx = np.mgrid[top:bottom, left:right] + 0.5  # pixel centres
    cy, cx = float((alpha * gy).sum() / area), float((alpha * gx).sum() / area)
    shape, mismatch = _best_shape(alpha, (top, left), (cy, cx), area)
    extent = np.sqrt(area / FILL[shape]) / height
    return SeenObject(
        colour=colour,
        shape=shape if mismatch <= SHAPE_TOLERANCE else None,
        size="small" if extent < SIZE_THRESHOLD else "large",
        x=cx / width,
        y=cy / height,
        extent=float(extent),
        pixels=int(component.sum()),
    )


def shape_coverage(shape, centre, extent, origin, window_shape, samples=4):
    """Anti-aliased alpha of ``shape`` (bounding box of side ``extent`` pixels centred at
    ``centre`` = (y, x)) over a window of pixels starting at ``origin`` = (top, left): the
    fraction of ``samples`` x ``samples`` points in each pixel that fall inside the shape."""
    h, w = window_shape
    offsets = (np.arange(samples) + 0.5) / samples
    y = origin[0] + (np.arange(h)[:, None] + offsets).reshape(-1, 1)  # [h*samples, 1]
    x = origin[1] + (np.arange(w)[:, None] + offsets).reshape(1, -1)  # [1, w*samples]
    cy, cx = centre
    half = extent / 2
    if shape == "circle":
        inside = (y - cy) ** 2 + (x - cx) ** 2 <= half**2
    elif shape == "square":
        inside = (np.abs(y - cy) <= half) & (np.abs(x - cx) <= half)
    else:  # upright triangle: apex at the top centre, base along the bottom
        down = y - (cy - half)  # distance below the apex
        inside = (down >= 0) & (down <= extent) & (np.abs(x - cx) <= down / 2)
    return inside.reshape(h, samples, w, samples).mean(axis=(1, 3))


@functools.lru_cache(maxsize=64)
def blur_matrix(n, sigma):
    """``[n, n]`` matrix that blurs a length-``n`` signal with a Gaussian of width ``sigma``
    pixels (treating the outside as zero). ``M @ image @ M.T`` blurs an image; because blurring
    is linear, it can also be applied to the factors of a template before multiplying them."""
    if sigma <= 0:
        return np.eye(n, dtype=np.float32)
    offsets = np.arange(n)[:, None] - np.arange(n)[None, :]
    radius = int(np.ceil(2.5 * sigma))
    taps = np.exp(-(offsets**2) / (2 * sigma**2)) * (np.abs(offsets) <= radius)
    total = np.exp(-(np.arange(-radius, radius + 1) ** 2) / (2 * sigma**2)).sum()
    return (taps / total).astype(np.float32)


def blur(image, sigma):
    """Gaussian blur of a 2-D array (zero outside it)."""
    h, w = image.shape[-2:]
    return blur_matrix(h, sigma) @ image @ blur_matrix(w, sigma).T


def _best_shape(alpha, origin, centroid, area):
    """The shape whose drawing, with the object's area and centroid, best overlaps ``alpha``;
    and its mismatch (sum of absolute differences per unit area).

    Each candidate is also tried a little blurred, the way a VQ decoder softens edges: blurred,
    a square's corners round off and it looks like a circle, but it still matches a blurred
    square better than any circle."""
    best, best_mismatch = None, np.inf
    for shape, fill in FILL.items():
        extent = np.sqrt(area / fill)
        cy, cx = centroid
        if shape == "triangle":  # a triangle's centroid sits 2/3 of the way down from the apex
            cy -= extent / 6
        drawn = shape_coverage(shape, (cy, cx), extent, origin, alpha.shape)
        for sigma in BLURS:
            mismatch = float(np.abs(alpha - blur(drawn, sigma)).sum()) / area
            if mismatch < best_mismatch:
                best, best_mismatch = shape, mismatch
    return best, best_mismatch


# --- Glyphs ---------------------------------------------------------------------------------

_GLYPH_CHARS, _GLYPH_BITMAPS = all_glyph_bitmaps()
_GLYPH_BITMAPS = _GLYPH_BITMAPS.astype(np.float32)


def _edges(profile):
    """Where ``profile`` first rises through half its peak and last falls through it, in
    pixels, interpolating between pixel centres. (A blurred edge still crosses half height
    where the sharp edge was.) None when there is nothing to measure."""
    level = profile.max() / 2
    if level < 0.1:
        return None
    above = np.nonzero(profile >= level)[0]
    first, last = above[0], above[-1]
    start = float(first)
    if first > 0:
        start = first - 0.5 + (level - profile[first - 1]) / (profile[first] - profile[first - 1])
    end = float(len(profile))
    if last < len(profile) - 1:
        end = last + 0.5 + (profile[last] - level) / (profile[last] - profile[last + 1])
    return start, end


def _overlaps(n_pixels, starts, cell, n_cells):
    """``[..., n_pixels, n_cells]``: how much of pixel i lies in cell j of a row of cells that
    begins at ``starts`` (an array of positions, giving the leading dimensions)."""
    starts = np.asarray(starts, dtype=np.float32)[..., None, None]
    pixel = np.arange(n_pixels, dtype=np.float32)[:, None]
    lo = starts + cell * np.arange(n_cells, dtype=np.float32)
    return np.clip(np.minimum(pixel + 1, lo + cell) - np.maximum(pixel, lo), 0.0, None)


def _read_glyph(pixels, background_rgb, mask):
    if not mask.any():
        return SeenGlyph(None, None)
    index, distance = classify_colour(pixels[mask], background_rgb)
    colour = _COLOUR_NAMES[index] if distance <= COLOUR_TOLERANCE else None
    ys, xs = np.nonzero(mask)  # work in a window around the ink: less to compare
    window = (slice(max(ys.min() - 3, 0), ys.max() + 4), slice(max(xs.min() - 3, 0), xs.max() + 4))
    alpha = opacity(pixels[window], background_rgb, _COLOUR_RGB[index])
    vertical, horizontal = _edges(alpha.max(axis=1)), _edges(alpha.max(axis=0))
    if vertical is None or horizontal is None:
        return SeenGlyph(None, colour)
    (top, bottom), (ink_left, ink_right) = vertical, horizontal
    cell = (bottom - top) / GLYPH_ROWS
    # Place each candidate so that its ink lines up with the image's ink, from both sides at
    # once; draw all 36 (sharp and blurred, as shapes are) and keep the closest.
    inked = _GLYPH_BITMAPS.any(axis=1)  # [36, 5] columns with ink
    first = inked.argmax(axis=1)
    last = GLYPH_COLUMNS - 1 - inked[:, ::-1].argmax(axis=1)
    lefts = (ink_left - first * cell + ink_right - (last + 1) * cell) / 2  # [36]
    height, width = alpha.shape
    rows = _overlaps(height, top, cell, GLYPH_ROWS)  # [H, 7]
    columns = _overlaps(width, lefts, cell, GLYPH_COLUMNS)  # [36, W, 5]
    mismatch = []
    for sigma in BLURS:  # blurring is linear: blur the factors of rows @ bitmap @ columns^T
        blurred_rows = blur_matrix(height, sigma) @ rows
        blurred_columns = blur_matrix(width, sigma) @ columns
        drawn = blurred_rows @ _GLYPH_BITMAPS @ blurred_columns.swapaxes(-1, -2)  # [36, H, W]
        ink = drawn.sum(axis=(-2, -1))
        mismatch.append(np.abs(drawn - alpha).sum(axis=(-2, -1)) / ink)
    mismatch = np.stack(mismatch)  # [blurs, 36]
    _, best = np.unravel_index(np.argmin(mismatch), mismatch.shape)
    best_mismatch = mismatch[:, best].min()
    char = _GLYPH_CHARS[best] if best_mismatch <= GLYPH_TOLERANCE else None
    return SeenGlyph(char, colour)
