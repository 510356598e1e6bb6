"""What the command writes: file names that never replace a file unasked, PNGs that remember how
they were made, and progress bars on long work.

- ``--out`` onto an existing file is refused unless ``--overwrite`` is given, and an input
  picture is never written over, ``--overwrite`` or not. Without ``--out`` the command picks
  the default name, or the first free ``NAME-2.png``, ``NAME-3.png``, ... beside it.
- Every write is atomic (:mod:`tinymuse.files`): a full disk or a Ctrl-C leaves the old file.
- Every PNG carries its parameters as PNG text (the prompts, seed, settings, the pipeline and
  the command line); ``tinymuse info FILE`` prints them.
- A progress bar goes to stderr while pictures are drawn; it is silent when stderr is not a
  terminal and with ``--quiet``.
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import time
from pathlib import Path

from .. import __version__, files
from .limits import MAX_SIDE
from .options import CommandError

# The PNG text key that holds the parameters, as JSON (also read by `tinymuse info`).
PARAMETERS_KEY = "tinymuse"


def output_path(args, suffix: str = ".png", inputs=()) -> Path:
    """The file a command writes: ``--out`` (checked: its suffix, that it is not one of the
    ``inputs``, that it is free unless ``--overwrite``) or the first free name after the
    command's default, ``args.default_out``."""
    if args.out is None:
        return free_name(Path(args.default_out))
    return checked_output(args.out, "--out", suffix, args.overwrite, inputs)


def checked_output(name, flag: str, suffix: str, overwrite: bool, inputs=()) -> Path:
    """The file ``name`` that a flag such as ``--out`` gives, checked: it ends in ``suffix``,
    is none of the ``inputs``, is no folder, and is free unless ``overwrite``."""
    out = Path(name)
    if out.suffix.lower() != suffix:
        raise CommandError(f"{flag} {out} must name a {suffix} file (e.g. {flag} "
                           f"{out.with_suffix(suffix).name})")
    for given in inputs:
        if given is not None and Path(given).exists() and out.exists() \
                and os.path.samefile(given, out):
            raise CommandError(f"{flag} {out} is the input picture {given}: tinymuse never "
                               f"writes over its input; choose another {flag}")
    if out.is_dir():
        raise CommandError(f"{flag} {out} is a folder; give a file name inside it, such as "
                           f"{out / ('picture' + suffix)}")
    if out.exists() and not overwrite:
        raise CommandError(f"{flag} {out} exists already: pass --overwrite to replace it, or "
                           f"choose another name")
    return out


def free_name(path: Path) -> Path:
    """``path`` if no file has that name, else the first of ``stem-2``, ``stem-3``, ..."""
    number = 1
    candidate = path
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return candidate


def picture_size(count: int, per_row: int, side: int, scale: int) -> tuple[int, int]:
    """(width, height) of the picture of ``count`` images, ``per_row`` a row, labels aside:
    one image alone, or a grid with 2 pixels of padding around every cell."""
    columns = min(per_row, count)
    rows = -(-count // columns)
    width = columns * (side * scale + 2) + 2 if count > 1 else side * scale
    height = rows * (side * scale + 2) + 2 if count > 1 else side * scale
    return width, height


def check_picture_size(count: int, per_row: int, side: int, scale: int,
                       what: str = "the PNG") -> None:
    """Refuse, before anything is drawn, a PNG whose side would exceed :data:`MAX_SIDE`."""
    width, height = picture_size(count, per_row, side, scale)
    if max(width, height) > MAX_SIDE:
        raise CommandError(f"{what} would be {width}×{height} pixels, more than {MAX_SIDE} a "
                           f"side: lower --scale (now {scale}) or draw fewer images")


def parameters(args, command: str, **values) -> dict:
    """What a PNG records of the command that made it."""
    recorded = {"tinymuse": __version__, "command": command}
    for key, value in values.items():
        if dataclasses.is_dataclass(value):
            value = dataclasses.asdict(value)
        if value is not None:
            recorded[key] = value
    recorded["pipeline"] = str(args.pipeline) if args.pipeline else "bundled"
    recorded["seed"] = args.seed
    recorded["command_line"] = shlex.join(["tinymuse", *args.argv])
    return recorded


def write_pictures(images, out: Path, args, per_row: int, recorded: dict,
                   labels=None) -> Path:
    """One image → a PNG of it; several → a grid PNG with ``per_row`` images per row. The
    PNG carries ``recorded``; it is written atomically and never over a file unasked."""
    from ..data.grid import encode_grid_png
    from ..data.images import encode_png

    if len(images) == 1 and labels is None:
        picture = images[0]
        if args.scale != 1:
            picture = picture.repeat(args.scale, axis=0).repeat(args.scale, axis=1)
        data = encode_png(picture, recorded)
    else:
        data = encode_grid_png(images, nrow=per_row, scale=args.scale, labels=labels,
                               parameters=recorded)
    return write_file(out, data, args.overwrite, "the pictures were drawn")


def write_file(out: Path, data: bytes, overwrite: bool, meanwhile: str) -> Path:
    """Write ``data`` to ``out`` atomically; an error names ``out``, not the temporary file
    the write went through."""
    try:
        return files.write_bytes(out, data, overwrite=overwrite)
    except FileExistsError:
        raise CommandError(f"{out} appeared while {meanwhile}: nothing was replaced; run again "
                           f"with another --out, or --overwrite") from None
    except OSError as error:
        raise CommandError(f"cannot write {out}: {error.strerror or error}; nothing was "
                           f"replaced") from None


class Progress:
    """A progress bar over the decoding steps of a command: call it as the pipeline's
    ``callback(stage, done, total)``. Silent with ``quiet`` or when stderr is not a
    terminal."""

    def __init__(self, total_steps: int, what: str, quiet: bool):
        from tqdm.auto import tqdm

        self.what = what
        self.bar = tqdm(total=total_steps, desc=what, unit="step", file=sys.stderr,
                        disable=True if quiet else None, leave=False, dynamic_ncols=True)

    def __call__(self, stage: str, done: int, total: int) -> None:
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


def done(path: Path, what: str, started: float) -> None:
    print(f"wrote {path} ({what} in {time.perf_counter() - started:.1f} s)")
