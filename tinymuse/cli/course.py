"""``tinymuse course``: list the exercises, export a student copy, grade a copy."""
from __future__ import annotations

import json
from pathlib import Path

from .options import CommandError
from .outputs import write_file


def cmd_course(args) -> int:
    from ..course import (CHECKOUT, CourseError, as_gradescope, as_json, as_table, exercises,
                          export, grade, select_chapters)

    try:
        if args.action == "list":
            return _list(exercises(CHECKOUT))
        if args.action == "export":
            if not args.dir:
                raise CommandError("course export needs the new folder: tinymuse course "
                                   "export DIR [--chapters 4]")
            chapters = select_chapters(args.chapters, {e.chapter for e in exercises(CHECKOUT)})
            blanked = export(CHECKOUT, Path(args.dir), chapters)
            print(f"wrote a student copy to {args.dir}: {len(blanked)} exercises blanked "
                  f"(chapters {', '.join(map(str, sorted(chapters)))}); install it with "
                  f"pip install -e '{args.dir}[test]'")
            return 0
        root = Path(args.dir) if args.dir else CHECKOUT
        if not (root / "tests" / "exercises").is_dir() or not (root / "tinymuse").is_dir():
            raise CommandError(f"{root} is not a copy of tinymuse to grade: it needs tinymuse/ "
                               f"and tests/exercises/ (write one with tinymuse course export)")
        if args.gradescope and Path(args.gradescope).exists() and not args.overwrite:
            raise CommandError(f"--gradescope {args.gradescope} exists already: pass "
                               f"--overwrite to replace it, or choose another name")
        results = grade(root)
    except CourseError as error:
        raise CommandError(str(error)) from None
    if args.gradescope:
        write_file(Path(args.gradescope), json.dumps(as_gradescope(results), indent=1).encode(),
                   args.overwrite, "the exercises were graded")
    print(json.dumps(as_json(results), indent=1) if args.json else as_table(results))
    return 0


def _list(catalogue) -> int:
    for exercise in catalogue:
        lines = sum(region.end - region.start - 1 for region in exercise.regions)
        places = ", ".join(sorted({region.path for region in exercise.regions}))
        builds = ", ".join(exercise.requires) or "nothing"
        print(f"{exercise.id}  {exercise.title} ({places}, {lines} lines; builds on {builds})")
    print(f"{len(catalogue)} exercises in {len({e.chapter for e in catalogue})} chapters")
    return 0
