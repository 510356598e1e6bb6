"""Converting images between the two layouts tinymuse uses.

* For looking at and saving: ``uint8`` arrays, channels last, ``[H, W, 3]`` (or ``[N, H, W, 3]``),
  values 0 to 255, as Pillow reads and writes them.
* For models: ``float32`` arrays, channels first, ``[N, 3, H, W]``, values in ``[-1, 1]``: zero
  mean-ish inputs suit a network better than 0 to 255.

And the two ends where pictures meet files: :func:`read_picture` reads any picture a user
gives (16-bit, palette, CMYK, transparent, ...) as uint8 RGB with one-line errors, and
:func:`encode_png` writes a PNG that remembers the parameters that made it, and
:func:`encode_gif` an animation.
"""

import contextlib
import io
import json
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, PngImagePlugin, UnidentifiedImageError


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


# --------------------------------------------------------------------------- #
# Reading a user's picture file.
# --------------------------------------------------------------------------- #

# tinymuse's models draw small pictures, so a bigger file is almost surely a mistake, and
# decoding one would hold width × height × 3 bytes (and more on the way) in memory.
MAX_PICTURE_SIDE = 4096
MAX_PICTURE_PIXELS = MAX_PICTURE_SIDE * MAX_PICTURE_SIDE

# What Pillow raises on a damaged file: a truncated or corrupt data stream is an OSError, a
# broken chunk a SyntaxError, an impossible header one of the others.
_DECODING_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, struct.error,
                    zlib.error)

# Modes with more than 8 bits per sample: Pillow's own convert("RGB") clips them to 0..255.
_DEEP_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


class PictureError(ValueError):
    """A picture file tinymuse cannot read; the message is one line naming the file and the fix."""


def _one_line(error) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _header_size(path: Path):
    """(width, height) from a PNG's IHDR chunk, read without decoding; None for other files."""
    with open(path, "rb") as file:
        head = file.read(24)
    if head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR":
        return struct.unpack(">II", head[16:24])
    return None


def _too_big(path: Path, what: str, size) -> PictureError:
    shown = f"is {size[0]}×{size[1]} pixels, more" if size else "has more pixels"
    return PictureError(f"the {what} file {path} {shown} than the {MAX_PICTURE_SIDE}×"
                        f"{MAX_PICTURE_SIDE} tinymuse reads; shrink the {what} first")


@contextlib.contextmanager
def _opened_picture(path, what: str):
    """``with _opened_picture(path, what) as image:`` a lazily opened PIL image; every way a
    file can fail to open or decode inside the block becomes one :class:`PictureError`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}; check the path")
    fix = f"save the {what} again (PNG or JPEG) or give another file"
    try:
        with warnings.catch_warnings():
            # Pillow only warns below twice its own limit; any such picture is far over ours.
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError:
        raise PictureError(f"the {what} file {path} is not a picture Pillow can read; "
                           f"{fix}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise _too_big(path, what, _header_size(path)) from None
    except _DECODING_ERRORS as error:
        raise PictureError(f"cannot read the {what} file {path} ({_one_line(error)}); "
                           f"{fix}") from error
    with image:
        try:
            yield image
        except PictureError:
            raise
        except _DECODING_ERRORS as error:
            raise PictureError(f"the {what} file {path} is damaged or cut short "
                               f"({_one_line(error)}); {fix}") from error


def _deep_to_uint8(pixels: np.ndarray, mode: str, path: Path, what: str) -> np.ndarray:
    """16-bit, 32-bit and float grey → uint8: 0..65535 is scaled by 1/257 (65535 → 255, the
    top byte rounded); float in [0, 1] by 255. Other ranges have no obvious meaning."""
    values = pixels.astype(np.float64)
    if not np.isfinite(values).all():
        raise PictureError(f"the {what} file {path} holds NaN or infinite values; save the "
                           f"{what} with finite values in 0..1 or as 8- or 16-bit integers")
    low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
    if mode == "F" and 0.0 <= low and high <= 1.0:
        return np.rint(values * 255.0).astype(np.uint8)
    if mode != "F" and 0 <= low and high <= 65535:
        return np.rint(values / 257.0).astype(np.uint8)
    expected = "0..1 as floats" if mode == "F" else "0..65535 (16-bit)"
    raise PictureError(f"the {what} file {path} holds {mode} values from {low:g} to {high:g}; "
                       f"tinymuse reads {expected}: save the {what} as an 8- or 16-bit picture")


def _to_rgb(image: Image.Image, path: Path, what: str, background: int = 255) -> np.ndarray:
    """A loaded PIL image of any mode → uint8 (H, W, 3). Transparent pixels take the grey
    level ``background``: white, as if the picture were printed on white paper."""
    if image.mode in _DEEP_MODES:
        pixels = np.asarray(image)
        grey = _deep_to_uint8(pixels, image.mode, path, what)
        transparent = image.info.get("transparency")
        if isinstance(transparent, int):
            grey[pixels == transparent] = background
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode in _ALPHA_MODES or "transparency" in image.info:
        rgba = image.convert("RGBA")
        image = Image.new("RGBA", rgba.size, (background,) * 3 + (255,))
        image.alpha_composite(rgba)
    # Grey, palette, 1-bit, CMYK, YCbCr, ... : Pillow's conversions are right for 8 bits.
    return np.array(image.convert("RGB"))


def read_picture(path, what: str = "image", draft_size=None, background: int = 255) -> np.ndarray:
    """Read a user's picture file as uint8 RGB ``(H, W, 3)``, whatever the file holds.

    * grey, palette, 1-bit, CMYK: converted by Pillow; alpha: composited onto white (or the
      grey level ``background``: a mask painted on a transparent layer wants black, "keep");
    * 16-bit grey (and 32-bit integers in 0..65535): ``value / 257`` rounded; float grey in
      [0, 1]: ``value × 255`` rounded. (Pillow itself reduces 16-bit-per-channel colour PNGs
      to the top byte of each value when it opens them.)
    * photos stored sideways are turned upright (EXIF orientation).

    ``draft_size=(w, h)`` lets a JPEG decode at a reduced scale still at least that big.
    A missing file is a ``FileNotFoundError``; a picture larger than
    :data:`MAX_PICTURE_PIXELS`, a damaged file or one that is no picture is a
    :class:`PictureError` whose one-line message names the file (``what`` names its role:
    "image", "mask") and what to do; the size is checked before any pixel is decoded.
    """
    path = Path(path)
    with _opened_picture(path, what) as image:
        if draft_size is not None:
            image.draft("RGB", tuple(draft_size))
        width, height = image.size
        if width * height > MAX_PICTURE_PIXELS:
            raise _too_big(path, what, image.size)
        image.load()
        return _to_rgb(ImageOps.exif_transpose(image), path, what, background)


# --------------------------------------------------------------------------- #
# PNGs that remember how they were made.
# --------------------------------------------------------------------------- #

PARAMETERS_KEY = "tinymuse"  # text chunk holding json.dumps(parameters)
SUMMARY_KEY = "parameters"  # the human-readable chunk, the key other image tools read


def _summary_value(value) -> str:
    if isinstance(value, str):
        # quoted like AUTOMATIC1111 does, when a comma or colon would split the entry
        return json.dumps(value, ensure_ascii=False) if ("," in value or ":" in value) else value
    if isinstance(value, (bool, int, float)) or value is None:
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def parameters_summary(parameters: dict) -> str:
    """The shape AUTOMATIC1111's web UI writes, which other tools parse: the prompt, then
    ``Negative prompt: ...``, then one line ``Key: value, Key: value``."""
    lines, rest = [], dict(parameters)
    if "prompt" in rest:
        lines.append(str(rest.pop("prompt")))
    if "negative_prompt" in rest:
        lines.append(f"Negative prompt: {rest.pop('negative_prompt')}")
    entries = [f"{str(key).replace('_', ' ').capitalize()}: {_summary_value(value)}"
               for key, value in rest.items()]
    if entries:
        lines.append(", ".join(entries))
    return "\n".join(lines)


def encode_png(image, parameters: dict | None = None) -> bytes:
    """uint8 ``(H, W, 3)`` → the bytes of a PNG file. With ``parameters`` (a dict of JSON
    data) the PNG carries them: ``json.dumps(parameters)`` in the text chunk "tinymuse",
    which :func:`read_png_parameters` reads back, and a readable summary in "parameters".
    Without them the bytes are those of a plain ``Image.save(..., "PNG")``."""
    pixels = np.asarray(image)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[-1] != 3:
        raise ValueError(f"encode_png takes a uint8 (H, W, 3) picture; got {pixels.dtype} "
                         f"{pixels.shape} (tinymuse.data.to_uint8_images converts)")
    info = None
    if parameters is not None:
        if not isinstance(parameters, dict):
            raise TypeError(f"parameters must be a dict, got {type(parameters).__name__}")
        try:
            text = json.dumps(parameters)
        except (TypeError, ValueError) as error:
            raise TypeError(f"parameters must be JSON data (str, numbers, bools, None, "
                            f"lists, dicts): {error}") from None
        info = PngImagePlugin.PngInfo()
        info.add_text(PARAMETERS_KEY, text)
        info.add_text(SUMMARY_KEY, parameters_summary(parameters))  # iTXt if not Latin-1
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def encode_gif(frames, duration: int = 150, hold: int = 2000) -> bytes:
    """uint8 (H, W, 3) pictures, all of one size → the bytes of an animated GIF that shows
    each for ``duration`` milliseconds, the last for ``hold``, and starts again.

    A GIF has at most 256 colours per frame, so each frame gets its own palette and close
    colours may merge. Pillow's GIF writer also merges a frame equal to the one before it
    into that one (showing it longer): frames that must all be counted have to differ."""
    pictures = [np.asarray(frame) for frame in frames]
    shapes = {picture.shape for picture in pictures}
    if len(shapes) != 1 or len(next(iter(shapes))) != 3 \
            or any(picture.dtype != np.uint8 for picture in pictures):
        raise ValueError(f"encode_gif takes uint8 (H, W, 3) pictures, all of one size; got "
                         f"{len(pictures)} of shapes {sorted(shapes)}")
    first, *rest = [Image.fromarray(picture) for picture in pictures]
    buffer = io.BytesIO()
    first.save(buffer, format="GIF", save_all=True, append_images=rest, loop=0,
               duration=[duration] * len(rest) + [hold])
    return buffer.getvalue()


def read_png_parameters(path) -> dict:
    """The parameters :func:`encode_png` stored in a PNG, as a dict; ``{}`` for a picture
    without them (another tool's PNG, a JPEG). A missing file is a ``FileNotFoundError``, a
    file that is no picture or whose "tinymuse" chunk is not a JSON object a
    :class:`PictureError`. Only the header chunks are read, never the pixels."""
    path = Path(path)
    with _opened_picture(path, "image") as image:
        text = image.info.get(PARAMETERS_KEY)
    if text is None:
        return {}
    try:
        parameters = json.loads(text)
    except json.JSONDecodeError as error:
        raise PictureError(f"the '{PARAMETERS_KEY}' text in {path} is not JSON ({error}); it "
                           f"was not written by tinymuse, or was edited") from None
    if not isinstance(parameters, dict):
        raise PictureError(f"the '{PARAMETERS_KEY}' text in {path} is JSON but not an object; "
                           f"it was not written by tinymuse, or was edited")
    return parameters
