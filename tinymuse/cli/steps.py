"""``generate --steps-gif FILE.gif`` and ``--steps-grid FILE.png``: the decoding, step by step.

Every decoding step of both stages becomes a picture of each image
(:func:`tinymuse.step_pictures.decoding_frames`: the grid as decoded so far, still-masked
tokens dark gray, the base stage's pictures enlarged to the final size), the base stage's
steps first, then the super-resolution stage's:

- the GIF has one frame per step, each laid out as the ``--out`` picture (a grid for several
  images) with its step written under it ("base 3/24", "super-res 2/8"); the last frame, the
  finished picture, stays longest. The caption also keeps every frame distinct, so that no
  GIF writer merges two steps that happen to look alike;
- the grid PNG has one row per image and one column per step; with ``--labels`` each row's
  first cell names its prompt and every other cell its step.

Both are named, checked and written as ``--out`` is (:mod:`tinymuse.cli.outputs`): checked
before anything is drawn, never over an existing file without ``--overwrite``, never over an
input or ``--out``, and written atomically.
"""
from __future__ import annotations

from pathlib import Path

from .limits import MAX_GIF_PIXELS
from .options import CommandError
from .outputs import check_picture_size, checked_output, picture_size, write_file


def steps_outputs(args, out: Path) -> tuple[Path | None, Path | None]:
    """The files of ``--steps-gif`` and ``--steps-grid`` (None for a flag not given), checked
    as ``--out`` is; the grid may not be ``out``, the picture the command writes anyway."""
    inputs = (getattr(args, "prompt_file", None),)
    gif = grid = None
    if args.steps_gif is not None:
        gif = checked_output(args.steps_gif, "--steps-gif", ".gif", args.overwrite, inputs)
    if args.steps_grid is not None:
        grid = checked_output(args.steps_grid, "--steps-grid", ".png", args.overwrite, inputs)
        if grid.resolve() == out.resolve():
            raise CommandError(f"--steps-grid {grid} is also the picture of the images "
                               f"(--out): give the two pictures different names")
    return gif, grid


def check_steps_size(args, count: int, per_row: int, side: int, steps: int) -> None:
    """Refuse, before anything is drawn, a grid PNG wider or taller than
    :data:`~tinymuse.cli.limits.MAX_SIDE`, or a GIF whose frames hold more than
    :data:`~tinymuse.cli.limits.MAX_GIF_PIXELS` pixels together (``steps`` of both stages)."""
    if args.steps_grid is not None:
        check_picture_size(count * steps, steps, side, args.scale, "the --steps-grid PNG")
    if args.steps_gif is not None:
        width, height = picture_size(count, per_row, side, args.scale)
        if steps * width * height > MAX_GIF_PIXELS:
            raise CommandError(f"the --steps-gif GIF would hold {steps} frames of "
                               f"{width}×{height} pixels, more than {MAX_GIF_PIXELS} pixels in "
                               f"all: lower --scale (now {args.scale}), --steps or --sr-steps, "
                               f"or draw fewer images")


def step_names(base_steps: int, superres_steps: int) -> list[str]:
    """What each step is called, in order: ``base 1/24`` ... then ``super-res 1/8`` ..."""
    return ([f"base {step}/{base_steps}" for step in range(1, base_steps + 1)]
            + [f"super-res {step}/{superres_steps}" for step in range(1, superres_steps + 1)])


def gif_frames(frames, names: list[str], per_row: int, scale: int, labels=None) -> list:
    """One GIF frame per step: the step's pictures laid out as ``--out`` lays out the images
    (one picture alone, else a grid of ``per_row`` a row, ``labels`` under them), with the
    step's name under the whole."""
    from ..data.grid import image_grid

    shown = []
    for pictures, name in zip(frames, names):
        if len(pictures) == 1 and labels is None:
            layout = pictures[0].repeat(scale, axis=0).repeat(scale, axis=1)
        else:
            layout = image_grid(pictures, nrow=per_row, scale=scale, labels=labels)
        shown.append(image_grid(layout[None], nrow=1, padding=0, labels=[name]))
    return shown


def grid_cells(frames, names: list[str], labels=None):
    """The steps grid's cells, row by row (one row per image, one column per step), and
    their labels: None without ``labels``, else the image's label in the first column and
    the step's name in the others."""
    import numpy as np

    cells = np.stack(frames, axis=1)                  # (B, steps, S, S, 3)
    cells = cells.reshape(-1, *cells.shape[2:])
    if labels is None:
        return cells, None
    return cells, [label if column == 0 else name
                   for label in labels for column, name in enumerate(names)]


def write_steps(frames, names: list[str], paths, args, per_row: int, recorded: dict,
                labels=None) -> list[Path]:
    """Write the GIF and the grid PNG of ``paths`` (from :func:`steps_outputs`; None: not
    asked for) of ``frames``, one uint8 array (B, S, S, 3) per step. The grid PNG carries
    ``recorded`` as ``--out`` does. Returns the files written."""
    from ..data.grid import encode_grid_png
    from ..data.images import encode_gif

    gif, grid = paths
    written = []
    if gif is not None:
        data = encode_gif(gif_frames(frames, names, per_row, args.scale, labels))
        written.append(write_file(gif, data, args.overwrite, "the pictures were drawn"))
    if grid is not None:
        cells, cell_labels = grid_cells(frames, names, labels)
        data = encode_grid_png(cells, nrow=len(frames), scale=args.scale, labels=cell_labels,
                               parameters=recorded)
        written.append(write_file(grid, data, args.overwrite, "the pictures were drawn"))
    return written
