"""``tinymuse tutorials``: the chapters of ``tutorials/`` as something to run, check and open.

A chapter is a Markdown file whose ```python blocks run in order in one namespace, from the
``tutorials/`` folder, exactly as a student pastes them; a ```text block right after a
python block shows what that block prints. This module reads chapters into cells and runs
them, for three users:

- the test suite (``tests/test_tutorials.py``), which checks that every block's printed output
  is the text that follows it, and that the figures in ``tutorials/figures/`` are what the
  code draws now;
- ``tinymuse tutorials --figures``, which runs every chapter in ``tutorials/`` and so draws the
  figures again, in place;
- ``tinymuse tutorials --notebooks DIR``, which writes each chapter as a Jupyter notebook
  (Markdown and code cells, the figures copied beside them), with the ``nbformat`` library
  (``pip install 'tinymuse[notebooks]'``).

Printed output is compared exactly, line by line (trailing spaces and blank lines at the end
aside), with one rule for what cannot repeat: a number followed by a unit of time (``0.8 s``,
``12 ms``) matches any number before that unit.
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import shutil
import sys
import types
from pathlib import Path
from typing import NamedTuple

from .. import files
from .options import CommandError

# The chapters ship with the source: a checkout of the repository has them beside the package.
TUTORIALS = Path(__file__).resolve().parents[2] / "tutorials"
FIGURES = "figures"  # the folder, inside the working directory, that chapters draw into

_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$\n?", re.S | re.M)
_TIME = re.compile(r"\d+(?:\.\d+)?(?=\s?(?:s|ms|µs|min)\b)")


class Cell(NamedTuple):
    """A piece of a chapter: ``kind`` "markdown" (its text) or "code" (its source, and the
    output the chapter shows for it, None if it shows none)."""

    kind: str
    source: str
    expected: str | None = None


def chapters(folder: Path = TUTORIALS) -> list[Path]:
    """The chapter files, in reading order."""
    if not folder.is_dir():
        raise CommandError(f"no tutorials folder at {folder}: the chapters ship with the source "
                           f"of tinymuse (git clone it and install it with pip install -e .)")
    return sorted(folder.glob("[0-9][0-9]-*.md"))


def cells(chapter: Path) -> list[Cell]:
    """The chapter as cells: Markdown between the code, each ```python block, and with it the
    ```text block that follows it directly (its printed output). Other fenced blocks stay in
    the Markdown."""
    text = chapter.read_text(encoding="utf-8")
    found, position, markdown = [], 0, ""
    fences = list(_FENCE.finditer(text))
    skip = set()
    for index, fence in enumerate(fences):
        if index in skip:
            continue
        if fence.group(1) != "python":
            continue
        markdown += text[position:fence.start()]
        if markdown.strip():
            found.append(Cell("markdown", markdown.strip("\n")))
        markdown, position = "", fence.end()
        expected = None
        following = fences[index + 1] if index + 1 < len(fences) else None
        if following is not None and following.group(1) == "text" \
                and not text[fence.end():following.start()].strip():
            expected, position = following.group(2), following.end()
            skip.add(index + 1)
        found.append(Cell("code", fence.group(2), expected))
    markdown += text[position:]
    if markdown.strip():
        found.append(Cell("markdown", markdown.strip("\n")))
    return found


def run_chapter(chapter: Path, folder: Path) -> list[tuple[Cell, str]]:
    """Run the chapter's code cells in order in one namespace with ``folder`` as the working
    directory; each code cell with what it printed."""
    # A module of its own, as a pasted session has (dataclasses look their module up).
    module = types.ModuleType(f"tutorial_{chapter.stem.replace('-', '_')}")
    ran = []
    previous = Path.cwd()
    os.chdir(folder)
    sys.modules[module.__name__] = module
    try:
        for number, cell in enumerate((c for c in cells(chapter) if c.kind == "code"), 1):
            printed = io.StringIO()
            with contextlib.redirect_stdout(printed):
                exec(compile(cell.source, f"{chapter.name}, block {number}", "exec"),
                     module.__dict__)
            ran.append((cell, printed.getvalue()))
    finally:
        os.chdir(previous)
        del sys.modules[module.__name__]
    return ran


def _lines(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def same_output(printed: str, expected: str) -> bool:
    """Whether ``printed`` is the ``expected`` text of a chapter: the same lines, trailing
    spaces and final blank lines aside, any number before a unit of time matching any."""
    ours, theirs = _lines(printed), _lines(expected)
    return len(ours) == len(theirs) and all(
        _TIME.sub("#", a) == _TIME.sub("#", b) for a, b in zip(ours, theirs))


# --------------------------------------------------------------------------- #
# Notebooks.
# --------------------------------------------------------------------------- #


def write_notebooks(folder: Path, out: Path) -> list[Path]:
    """Each chapter of ``folder`` as ``out/<chapter>.ipynb`` (nbformat 4), with the chapters'
    figures copied to ``out/figures`` so that the Markdown's links to them work."""
    try:
        import nbformat
    except ImportError:
        raise CommandError("writing notebooks needs the nbformat library: pip install "
                           "'tinymuse[notebooks]'") from None
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for chapter in chapters(folder):
        notebook = nbformat.v4.new_notebook()
        notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                           "language": "python"}
        for cell in cells(chapter):
            if cell.kind == "markdown":
                notebook.cells.append(nbformat.v4.new_markdown_cell(cell.source))
            else:
                notebook.cells.append(nbformat.v4.new_code_cell(cell.source.rstrip("\n")))
        path = out / f"{chapter.stem}.ipynb"
        nbformat.validate(notebook)
        files.write_text(path, nbformat.writes(notebook))
        written.append(path)
    if (folder / FIGURES).is_dir():
        shutil.copytree(folder / FIGURES, out / FIGURES, dirs_exist_ok=True)
    return written


def draw_figures(folder: Path) -> list[Path]:
    """Run every chapter, each in a fresh temporary folder (what else a chapter writes stays
    out of ``tutorials/``), and copy the figures it drew into ``folder/figures``."""
    import tempfile

    drawn = []
    (folder / FIGURES).mkdir(exist_ok=True)
    for chapter in chapters(folder):
        with tempfile.TemporaryDirectory() as scratch:
            run_chapter(chapter, Path(scratch))
            figures = Path(scratch) / FIGURES  # pictures, and animations (chapter 7)
            for figure in sorted([*figures.glob("*.png"), *figures.glob("*.gif")]):
                drawn.append(Path(shutil.copy(figure, folder / FIGURES / figure.name)))
        print(f"ran {chapter.name}")
    print(f"drew {len(drawn)} figures into {folder / FIGURES}")
    return drawn


def cmd_tutorials(args) -> int:
    folder = Path(args.folder) if args.folder else TUTORIALS
    if not args.notebooks and not args.figures:
        for chapter in chapters(folder):
            print(chapter.name)
        return 0
    if args.figures:
        draw_figures(folder)
    if args.notebooks:
        written = write_notebooks(folder, Path(args.notebooks))
        count = f"{len(written)} notebook" + ("" if len(written) == 1 else "s")
        print(f"wrote {count} in {args.notebooks} (open them with jupyter notebook "
              f"{args.notebooks})")
    return 0
