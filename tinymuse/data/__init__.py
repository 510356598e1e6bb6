"""Data: the shapes world, image-caption folders, batching, and helpers to look at images.

Plain NumPy, Pillow and SentencePiece; nothing here needs the autograd engine.
"""

from .folder import ImageCaptionFolder, load_square_image
from .grammar import (
    CaptionError,
    CaptionSyntaxError,
    UnknownWordError,
    check_words,
    known_words,
    parse_caption,
    write_caption,
    written_form,
)
from .grid import encode_grid_png, image_grid, save_image_grid
from .images import (MAX_PICTURE_PIXELS, PictureError, encode_png, parameters_summary,
                     read_picture, read_png_parameters, to_model_images, to_uint8_images)
from .loader import Batch, DataLoader
from .render import render_scene
from .shapes import (WORLDS, ShapesDataset, ShapesExample, sample_spec, sample_text,
                     shapes_captions, uses_heldout)
from .spec import GlyphSpec, ObjectSpec, PlacedGlyph, PlacedObject, Scene, SceneSpec, sample_scene
from .token_cache import TokenCache, encode_dataset_captions, load_token_cache, save_token_cache

__all__ = [
    "MAX_PICTURE_PIXELS",
    "Batch",
    "CaptionError",
    "CaptionSyntaxError",
    "DataLoader",
    "GlyphSpec",
    "ImageCaptionFolder",
    "ObjectSpec",
    "PictureError",
    "PlacedGlyph",
    "PlacedObject",
    "Scene",
    "SceneSpec",
    "ShapesDataset",
    "ShapesExample",
    "TokenCache",
    "UnknownWordError",
    "check_words",
    "encode_dataset_captions",
    "encode_grid_png",
    "encode_png",
    "image_grid",
    "known_words",
    "load_square_image",
    "load_token_cache",
    "parameters_summary",
    "parse_caption",
    "read_picture",
    "read_png_parameters",
    "render_scene",
    "sample_scene",
    "sample_spec",
    "sample_text",
    "save_image_grid",
    "save_token_cache",
    "shapes_captions",
    "to_model_images",
    "to_uint8_images",
    "uses_heldout",
    "WORLDS",
    "write_caption",
    "written_form",
]
