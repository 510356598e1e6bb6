"""A student copy: the package, its tests and the chapters, with chosen exercises blanked.

Blanking an exercise replaces the code between its markers by one line,

    raise NotImplementedError("Chapter 4, exercise 2: the straight-through estimator — see ...")

at the region's indentation, and keeps the markers, so the student sees where to write and a
copy can be blanked again. Everything else is copied as it is, so the chapters not selected
keep their solutions and a teacher can set one chapter of a working system. The copy is a
plain folder (no git history that could hold a solution) that installs and tests with the
same commands as the checkout.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .. import files
from .catalogue import CourseError, Exercise, exercises

__all__ = ["export", "blank", "COPIED"]

# What a student copy holds, from the checkout's top folder.
COPIED = ("tinymuse", "tests", "tutorials", "pyproject.toml", "LICENSE", ".gitignore")
_SKIPPED = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", ".hypothesis",
                                  "*.egg-info")


def blank(root: Path, chosen: list[Exercise]) -> None:
    """Replace the solution of every region of ``chosen`` under ``root`` by its stub."""
    by_file: dict[str, list] = {}
    for exercise in chosen:
        for region in exercise.regions:
            by_file.setdefault(region.path, []).append((region, exercise.stub_message))
    for path, found in by_file.items():
        file = root / path
        lines = file.read_text(encoding="utf-8").splitlines(keepends=True)
        for region, message in sorted(found, key=lambda item: -item[0].start):
            stub = f"{region.indent}raise NotImplementedError({message!r})\n"
            lines[region.start + 1:region.end] = [stub]
        files.write_text(file, "".join(lines))


def _student_readme(blanked: list[Exercise], kept: list[Exercise]) -> str:
    listed = "\n".join(f"- `{e.id}` — {e.title} ({e.chapter_file}; builds on "
                       f"{', '.join(e.requires) or 'nothing'})" for e in blanked)
    return f"""# tinymuse — your copy

This is tinymuse, a small text-to-image system written from scratch, with some of its code
left for you to write. Each missing piece raises `NotImplementedError` naming its exercise and
the chapter section that poses it; the chapters are in `tutorials/`, read them in order.

Set up (a fresh virtual environment):

```sh
python -m venv .venv && . .venv/bin/activate && pip install -e '.[test]'
```

Your exercises ({len(blanked)}; the other {len(kept)} are solved for you):

{listed}

Check one exercise with `pytest -m ch04_ex2` (its id), and all of them with
`tinymuse course grade`: it runs every exercise's tests and says, for each one that fails,
whether it is wrong or blocked by an earlier exercise it builds on. Until you write them, the
rest of the test suite fails where it needs your code.
"""


def export(root: Path, out: Path, chapters: set[int] | None = None) -> list[Exercise]:
    """Write a student copy of the checkout ``root`` into the new folder ``out``, blanking the
    exercises of ``chapters`` (all of them for None). Returns the blanked exercises."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise CourseError(f"{out} exists and is not an empty folder: export writes a new "
                          f"folder; choose another name")
    catalogue = exercises(root)
    chosen = [e for e in catalogue if chapters is None or e.chapter in chapters]
    out.mkdir(parents=True, exist_ok=True)
    for name in COPIED:
        source = root / name
        if source.is_dir():
            shutil.copytree(source, out / name, ignore=_SKIPPED)
        elif source.is_file():
            shutil.copy2(source, out / name)
    blank(out, chosen)
    kept = [e for e in catalogue if e not in chosen]
    files.write_text(out / "README.md", _student_readme(chosen, kept))
    return chosen
