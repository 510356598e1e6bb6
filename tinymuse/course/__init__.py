"""The coursework kit: exercises that are regions of the real code, student copies with them
blanked, and a grader (``tinymuse course list | export | grade``; the teachers' guide is in
``docs/TEACHING.md``).

- :mod:`~tinymuse.course.catalogue`: the exercises, read from the chapters and the code;
- :mod:`~tinymuse.course.export`: a student copy with chosen chapters' exercises blanked;
- :mod:`~tinymuse.course.grade`: each exercise's tests run, passed, failed or blocked.
"""
from pathlib import Path

from .catalogue import CourseError, Exercise, exercises, select_chapters
from .export import export
from .grade import as_gradescope, as_json, as_table, grade

__all__ = ["CHECKOUT", "CourseError", "Exercise", "exercises", "select_chapters", "export",
           "grade", "as_json", "as_gradescope", "as_table"]

CHECKOUT = Path(__file__).resolve().parents[2]  # the repository this package was installed from
