"""The exercises: where each is posed, where its solution lives, what it builds on.

An exercise has three homes, and nothing else lists it:

- **its text**, in its chapter: a heading ``### Exercise ch04_ex2 — the straight-through
  estimator`` and, right under it, ``Builds on: ch04_ex1.`` (or ``Builds on: nothing.``),
  then the task, the equation, a hint and the file to open;
- **its solution**, one or more regions of the real library code between the lines
  ``# BEGIN EXERCISE ch04_ex2`` and ``# END EXERCISE``: the code a student writes;
- **its tests**, ``tests/exercises/test_ch04.py``, named ``test_ch04_ex2_...`` (the name makes
  them carry the marker ``ch04_ex2``: ``pytest -m ch04_ex2`` runs them).

:func:`exercises` reads the first two from a checkout and checks that they agree: every
heading has a region and every region a heading, markers are balanced and never nested, what
an exercise builds on exists and comes before it.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Exercise", "Region", "CourseError", "exercises", "regions", "select_chapters",
           "BEGIN", "END"]

BEGIN = "# BEGIN EXERCISE"
END = "# END EXERCISE"
_ID = r"ch(\d\d)_ex(\d+)"
_HEADING = re.compile(rf"^### Exercise ({_ID}) — (.+?)\s*$", re.M)
_BUILDS_ON = re.compile(r"^Builds on: (.+?)\.?\s*$")
_BEGIN = re.compile(rf"^(\s*){re.escape(BEGIN)} ({_ID})\s*$")
_END = re.compile(rf"^\s*{re.escape(END)}\s*$")


class CourseError(ValueError):
    """The exercises' three homes do not agree (a heading without code, a marker unclosed)."""


@dataclass(frozen=True)
class Region:
    """Lines ``start``..``end`` (0-based, the marker lines themselves) of ``path``, the package
    file relative to the checkout; ``indent`` is the markers' indentation."""

    exercise: str
    path: str
    start: int
    end: int
    indent: str


@dataclass(frozen=True)
class Exercise:
    id: str
    chapter: int
    number: int
    title: str
    requires: tuple[str, ...]
    chapter_file: str
    regions: tuple[Region, ...]

    @property
    def stub_message(self) -> str:
        """What the stub of a blanked region raises: the exercise and where it is posed."""
        return (f"Chapter {self.chapter}, exercise {self.number}: {self.title} — see "
                f"{self.chapter_file} §Exercise {self.id}")


def regions(root: Path) -> list[Region]:
    """Every exercise region of the package under ``root`` (a checkout or a student copy)."""
    found = []
    for path in sorted((root / "tinymuse").rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        relative = path.relative_to(root).as_posix()
        open_at = None
        for number, line in enumerate(lines):
            begin, end = _BEGIN.match(line), _END.match(line)
            if begin:
                if open_at is not None:
                    raise CourseError(f"{relative}:{number + 1}: exercise {begin.group(2)} "
                                      f"begins inside exercise {open_at[1]}")
                open_at = (number, begin.group(2), begin.group(1))
            elif end:
                if open_at is None:
                    raise CourseError(f"{relative}:{number + 1}: {END} without a begin")
                found.append(Region(open_at[1], relative, open_at[0], number, open_at[2]))
                open_at = None
        if open_at is not None:
            raise CourseError(f"{relative}:{open_at[0] + 1}: exercise {open_at[1]} never ends")
    return found


def _posed(root: Path) -> dict[str, tuple[str, str, tuple[str, ...]]]:
    """id → (title, chapter file, builds on), from the chapters' exercise headings."""
    posed = {}
    for chapter in sorted((root / "tutorials").glob("[0-9][0-9]-*.md")):
        text = chapter.read_text(encoding="utf-8")
        for heading in _HEADING.finditer(text):
            exercise, title = heading.group(1), heading.group(4)
            following = text[heading.end():].lstrip("\n").splitlines()
            builds = _BUILDS_ON.match(following[0]) if following else None
            if builds is None:
                raise CourseError(f"{chapter.name}: exercise {exercise} needs a line "
                                  f"'Builds on: ...' right under its heading")
            requires = () if builds.group(1).strip() == "nothing" else tuple(
                part.strip() for part in builds.group(1).split(","))
            if int(heading.group(2)) != int(chapter.name[:2]):
                raise CourseError(f"{chapter.name} poses {exercise}, another chapter's id")
            if exercise in posed:
                raise CourseError(f"exercise {exercise} is posed twice")
            posed[exercise] = (title, f"tutorials/{chapter.name}", requires)
    return posed


def _order(exercise: str) -> tuple[int, int]:
    chapter, number = re.fullmatch(_ID, exercise).groups()
    return int(chapter), int(number)


def exercises(root: Path) -> list[Exercise]:
    """The exercises of the checkout at ``root``, in order, checked (:class:`CourseError`)."""
    posed, found = _posed(root), regions(root)
    coded = {region.exercise for region in found}
    problems = [f"{e} is posed in its chapter but has no code region" for e in posed
                if e not in coded]
    problems += [f"{e} has a code region but no heading in its chapter" for e in coded
                 if e not in posed]
    for exercise, (_, _, requires) in posed.items():
        for needed in requires:
            if needed not in posed:
                problems.append(f"{exercise} builds on {needed}, which no chapter poses")
            elif _order(needed) >= _order(exercise):
                problems.append(f"{exercise} builds on {needed}, which comes after it")
    if problems:
        raise CourseError("; ".join(problems))
    return [Exercise(exercise, *_order(exercise), title, requires, chapter_file,
                     tuple(r for r in found if r.exercise == exercise))
            for exercise, (title, chapter_file, requires) in sorted(
                posed.items(), key=lambda item: _order(item[0]))]


def select_chapters(spec: str | None, available) -> set[int]:
    """``"4"``, ``"3-5"``, ``"2,4,7-8"`` or None (every chapter) → chapter numbers."""
    available = set(available)
    if spec is None:
        return available
    chosen = set()
    for part in spec.split(","):
        low, dash, high = part.strip().partition("-")
        try:
            numbers = range(int(low), int(high if dash else low) + 1)
        except ValueError:
            raise CourseError(f"--chapters takes numbers and ranges such as 4, 3-5 or 2,7-8; "
                              f"got {spec!r}") from None
        chosen.update(numbers)
    unknown = sorted(chosen - available)
    if unknown or not chosen:
        raise CourseError(f"--chapters {spec}: no exercises in chapter(s) "
                          f"{unknown or spec}; the chapters with exercises are "
                          f"{sorted(available)}")
    return chosen
