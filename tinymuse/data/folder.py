"""Image-caption pairs from a folder of your own pictures.

Two layouts are understood, the same ones other text-to-image tools read:

* a ``metadata.jsonl`` file in the folder, one JSON object per line with the image's path
  relative to the folder and its caption::

      {"file_name": "cat.png", "text": "a cat on a sofa"}

* or, without ``metadata.jsonl``, a ``.txt`` file beside each image with the same name
  (``cat.png`` and ``cat.txt``) holding its caption. Images in sub-folders count too.

Every image is checked when the dataset is made. An image that cannot be decoded, a caption
that is empty, or a file that is missing is skipped with a warning naming the file, and listed
in ``dataset.skipped`` as ``(path, reason)``, so a few bad files never stop a training run.
Images are center-cropped to a square and resized to the stage's resolution.
"""

import json
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps
from tqdm.auto import tqdm

from .images import read_picture

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
METADATA_FILE = "metadata.jsonl"


def load_square_image(path, resolution):
    """Open an image file, center-crop it to a square, resize it to ``resolution`` pixels and
    return it as uint8 RGB ``[resolution, resolution, 3]``. Transparent pixels become white.

    The file is read by :func:`~tinymuse.data.images.read_picture` (16-bit, CMYK, palette,
    sideways photos; a bad file is a :class:`~tinymuse.data.images.PictureError`), letting a
    JPEG decode at a smaller scale that is still at least ``resolution`` on a side."""
    picture = read_picture(path, draft_size=(resolution, resolution))
    square = ImageOps.fit(Image.fromarray(picture), (resolution, resolution),
                          method=Image.LANCZOS)
    return np.asarray(square)


class ImageCaptionFolder:
    """A folder of images with captions. ``dataset[i]`` is ``(image, caption)``: a uint8 RGB
    array ``[resolution, resolution, 3]`` and a str."""

    def __init__(self, root, resolution=64, progress=None):
        self.root = Path(root)
        self.resolution = int(resolution)
        if not self.root.is_dir():
            raise FileNotFoundError(f"no folder at {self.root}")
        self.skipped = []
        if (self.root / METADATA_FILE).is_file():
            candidates = self._read_metadata()
        else:
            candidates = self._read_text_files()
        if progress is None:
            progress = len(candidates) >= 1000
        self.items = []
        for path, caption in tqdm(candidates, desc="checking images", disable=not progress):
            try:
                load_square_image(path, 8)
            except Exception as error:  # Pillow raises many kinds of errors on a bad file
                self._skip(path, f"unreadable image ({type(error).__name__}: {error})")
                continue
            self.items.append((path, caption))
        if not self.items:
            raise ValueError(
                f"found no usable image-caption pairs in {self.root} (skipped {len(self.skipped)}); "
                f"expected {METADATA_FILE} or images with same-named .txt captions"
            )

    @property
    def num_skipped(self):
        return len(self.skipped)

    def _skip(self, path, reason):
        self.skipped.append((Path(path), reason))
        warnings.warn(f"skipping {path}: {reason}", stacklevel=3)

    def _read_metadata(self):
        metadata = self.root / METADATA_FILE
        found = []
        for number, line in enumerate(metadata.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{metadata} line {number}"
            try:
                entry = json.loads(line)
                file_name, caption = entry["file_name"], entry["text"]
            except (json.JSONDecodeError, KeyError, TypeError):
                self._skip(where, 'not a JSON object with "file_name" and "text"')
                continue
            path = self.root / str(file_name)
            if not path.is_file():
                self._skip(path, f"missing file (listed in {where})")
            elif not isinstance(caption, str) or not caption.strip():
                self._skip(path, "empty caption")
            else:
                found.append((path, caption.strip()))
        return found

    def _read_text_files(self):
        found = []
        images = sorted(p for p in self.root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in images:
            caption_file = path.with_suffix(".txt")
            if not caption_file.is_file():
                self._skip(path, f"missing caption file {caption_file.name}")
                continue
            caption = caption_file.read_text(encoding="utf-8", errors="replace").strip()
            if not caption:
                self._skip(path, f"empty caption in {caption_file.name}")
            else:
                found.append((path, caption))
        return found

    def __len__(self):
        return len(self.items)

    def __getitem__(self, index):
        path, caption = self.items[index]
        return load_square_image(path, self.resolution), caption

    def caption(self, index):
        """The caption of item ``index``, without loading its image."""
        return self.items[index][1]

    def __repr__(self):
        return (
            f"ImageCaptionFolder({str(self.root)!r}, resolution={self.resolution}, "
            f"items={len(self)}, skipped={self.num_skipped})"
        )
