"""The coursework kit: the exercises' three homes agree, the reference passes them all, and a
student copy fails exactly what it should.

For a chapter K, a copy exported with ``--chapters K`` must fail exactly chapter K's exercises
and those that build on them (directly or not), and pass every other one; putting one blanked
solution back must make that exercise pass and change nothing else outside what builds on it.
Two chapters are checked in the default run, every chapter in the slow one.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tinymuse import cli
from tinymuse.course import (CHECKOUT, CourseError, as_gradescope, exercises, export, grade,
                             select_chapters)
from tinymuse.course.catalogue import regions

CATALOGUE = exercises(CHECKOUT)
BY_ID = {exercise.id: exercise for exercise in CATALOGUE}


def builds_on(exercise_id: str) -> set[str]:
    """Everything ``exercise_id`` builds on, directly or through others."""
    found, queue = set(), list(BY_ID[exercise_id].requires)
    while queue:
        needed = queue.pop()
        if needed not in found:
            found.add(needed)
            queue.extend(BY_ID[needed].requires)
    return found


def should_fail(blanked: set[str]) -> set[str]:
    return {e.id for e in CATALOGUE if e.id in blanked or builds_on(e.id) & blanked}


def failing(results) -> set[str]:
    return {r.exercise.id for r in results if not r.passed}


@pytest.fixture(scope="module")
def reference():
    return grade(CHECKOUT)


def test_there_are_thirty_exercises_or_more_and_three_in_every_chapter_that_poses_any():
    # Chapters 1-10 each build a part of the system and pose exercises on it; a later chapter
    # may be a guide with none (chapter 11 trains a cascade with the command).
    chapters = sorted(int(p.name[:2]) for p in (CHECKOUT / "tutorials").glob("[0-9][0-9]-*.md"))
    per_chapter = {chapter: [e for e in CATALOGUE if e.chapter == chapter] for chapter in chapters}
    assert len(CATALOGUE) >= 30
    assert all(per_chapter[chapter] for chapter in range(1, 11)), per_chapter.keys()
    assert all(len(found) >= 3 for found in per_chapter.values() if found), \
        {chapter: len(found) for chapter, found in per_chapter.items()}


def test_every_exercise_has_tests_and_its_stub_names_its_section():
    names = set()
    for path in (CHECKOUT / "tests" / "exercises").glob("test_ch*.py"):
        names |= set(re.findall(r"^def (test_ch\d\d_ex\d+)_", path.read_text(), re.M))
    for exercise in CATALOGUE:
        assert f"test_{exercise.id}" in names, f"{exercise.id} has no tests"
        chapter = (CHECKOUT / exercise.chapter_file).read_text(encoding="utf-8")
        assert f"### Exercise {exercise.id} — {exercise.title}" in chapter
        assert f"pytest -m {exercise.id}" in chapter, f"{exercise.id}: say how to check it"


def test_the_reference_passes_every_exercise(reference):
    assert all(r.tests > 0 for r in reference)
    assert failing(reference) == set(), [(r.exercise.id, r.output) for r in reference
                                         if not r.passed]


@pytest.mark.parametrize("chapter", [4, 7])
def test_a_copy_with_one_chapter_blanked_fails_exactly_what_builds_on_it(chapter, tmp_path):
    copy = tmp_path / "copy"
    blanked = {e.id for e in export(CHECKOUT, copy, {chapter})}
    assert blanked == {e.id for e in CATALOGUE if e.chapter == chapter}
    results = grade(copy)
    assert failing(results) == should_fail(blanked)
    for r in results:
        if r.exercise.id in blanked and not builds_on(r.exercise.id) & blanked:
            assert r.exercise.stub_message in r.output, (r.exercise.id, r.output)
    # Putting one solution back makes it pass, and changes nothing it does not feed.
    first = min(blanked)
    restore_solution(copy, BY_ID[first])
    again = grade(copy)
    assert first not in failing(again)
    changed = failing(results) ^ failing(again)
    assert all(e == first or first in builds_on(e) for e in changed), changed


def restore_solution(copy: Path, exercise) -> None:
    """Put the reference's code back between the markers of ``exercise`` in ``copy``: its
    regions pair with the reference's in file order, and are filled from the last one up, so
    that the lines above keep their numbers."""
    ours = sorted((r for r in regions(copy) if r.exercise == exercise.id),
                  key=lambda r: (r.path, r.start))
    theirs = sorted(exercise.regions, key=lambda r: (r.path, r.start))
    assert [r.path for r in ours] == [r.path for r in theirs]
    for mine, region in sorted(zip(ours, theirs), key=lambda pair: (pair[0].path,
                                                                    -pair[0].start)):
        reference = (CHECKOUT / region.path).read_text(encoding="utf-8").splitlines(True)
        target = copy / mine.path
        lines = target.read_text(encoding="utf-8").splitlines(True)
        lines[mine.start + 1:mine.end] = reference[region.start + 1:region.end]
        target.write_text("".join(lines), encoding="utf-8")


@pytest.fixture(scope="module")
def all_blanked(tmp_path_factory):
    copy = tmp_path_factory.mktemp("student") / "copy"
    export(CHECKOUT, copy)
    return copy


def test_a_copy_with_everything_blanked_imports_and_fails_every_exercise_by_name(all_blanked):
    done = subprocess.run([sys.executable, "-c", "import tinymuse, tinymuse.cli, tinymuse.pipeline"],
                          cwd=all_blanked, capture_output=True, text=True,
                          env={"PYTHONPATH": str(all_blanked), "PATH": ""})
    assert done.returncode == 0, done.stderr
    results = grade(all_blanked)
    assert failing(results) == set(BY_ID)
    for r in results:
        own = [r.exercise.stub_message] + [BY_ID[e].stub_message for e in builds_on(r.exercise.id)]
        assert any(message in r.output for message in own), (r.exercise.id, r.output)
        assert "ImportError" not in r.output and "SyntaxError" not in r.output


def test_no_line_of_a_blanked_solution_survives_anywhere_in_the_copy(all_blanked):
    sources = [p.read_text(encoding="utf-8") for p in (CHECKOUT / "tinymuse").rglob("*.py")]
    unique = set()
    for exercise in CATALOGUE:
        for region in exercise.regions:
            lines = (CHECKOUT / region.path).read_text(encoding="utf-8").splitlines()
            for line in lines[region.start + 1:region.end]:
                text = line.strip()
                if len(text) >= 20 and sum(s.count(text) for s in sources) == 1:
                    unique.add(text)
    assert unique, "the solutions should have lines of their own"
    survivors = []
    for path in all_blanked.rglob("*"):
        if path.is_file() and path.suffix in (".py", ".md", ".txt", ".toml", ".json", ".cfg"):
            text = path.read_text(encoding="utf-8", errors="replace")
            survivors += [(path.name, line) for line in unique if line in text]
    assert not survivors, survivors[:5]
    assert not (all_blanked / ".git").exists()


def test_the_student_readme_installs_and_lists_the_exercises(all_blanked):
    readme = (all_blanked / "README.md").read_text(encoding="utf-8")
    assert "pip install -e '.[test]'" in readme
    assert all(f"`{e.id}`" in readme for e in CATALOGUE)
    assert (all_blanked / "pyproject.toml").is_file()
    assert (all_blanked / "tinymuse" / "assets" / "pipeline.json").is_file()


def test_gradescope_results_and_json_have_their_fields(reference, tmp_path, capsys):
    results = as_gradescope(reference)
    assert results["score"] == len(reference)
    assert {tuple(sorted(t)) for t in results["tests"]} == {("max_score", "name", "output",
                                                             "score")}
    out = tmp_path / "results.json"
    assert cli.main(["course", "grade", "--json", "--gradescope", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["score"] == printed["total"] == len(CATALOGUE)
    assert set(printed["exercises"][0]) == {"id", "chapter", "title", "requires", "passed"}
    assert json.loads(out.read_text())["score"] == len(CATALOGUE)
    assert cli.main(["course", "grade", "--gradescope", str(out)]) == 2  # it exists now


def test_export_refuses_a_folder_that_holds_something(tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("keep me")
    assert cli.main(["course", "export", str(tmp_path), "--chapters", "4"]) == 2
    assert "is not an empty folder" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").read_text() == "keep me"


def test_grading_a_folder_that_is_no_copy_says_so(tmp_path, capsys):
    assert cli.main(["course", "grade", str(tmp_path)]) == 2
    assert "is not a copy of tinymuse to grade" in capsys.readouterr().err
    assert cli.main(["course", "export"]) == 2
    assert "needs the new folder" in capsys.readouterr().err
    assert cli.main(["course", "export", str(tmp_path / "new"), "--chapters", "12"]) == 2
    assert "no exercises in chapter" in capsys.readouterr().err


def test_chapter_specs():
    assert select_chapters("4", range(1, 11)) == {4}
    assert select_chapters("3-5", range(1, 11)) == {3, 4, 5}
    assert select_chapters("2,7-8", range(1, 11)) == {2, 7, 8}
    assert select_chapters(None, [1, 2]) == {1, 2}
    for bad in ("x", "12", "4-2x"):
        with pytest.raises(CourseError, match="--chapters"):
            select_chapters(bad, range(1, 11))


def test_markers_that_do_not_balance_are_refused(tmp_path):
    package = tmp_path / "tinymuse"
    package.mkdir()
    (tmp_path / "tutorials").mkdir()
    (package / "a.py").write_text("def f():\n    # BEGIN EXERCISE ch01_ex1\n    return 1\n")
    with pytest.raises(CourseError, match="never ends"):
        exercises(tmp_path)
    (package / "a.py").write_text("def f():\n    # BEGIN EXERCISE ch01_ex1\n    # BEGIN EXERCISE "
                                  "ch01_ex2\n    return 1\n    # END EXERCISE\n")
    with pytest.raises(CourseError, match="begins inside"):
        exercises(tmp_path)
    (package / "a.py").write_text("def f():\n    # BEGIN EXERCISE ch01_ex1\n    return 1\n"
                                  "    # END EXERCISE\n")
    with pytest.raises(CourseError, match="no heading"):
        exercises(tmp_path)
    (tmp_path / "tutorials" / "01-x.md").write_text(
        "### Exercise ch01_ex1 — one\n\nBuilds on: ch01_ex2.\n")
    with pytest.raises(CourseError, match="which no chapter poses"):
        exercises(tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("chapter", sorted({e.chapter for e in CATALOGUE}))
def test_every_chapter_blanked_alone_fails_exactly_what_builds_on_it(chapter, tmp_path):
    copy = tmp_path / "copy"
    blanked = {e.id for e in export(CHECKOUT, copy, {chapter})}
    results = grade(copy)
    assert failing(results) == should_fail(blanked)
    first = min(blanked)
    restore_solution(copy, BY_ID[first])
    assert first not in failing(grade(copy))
