"""Grading: run every exercise's tests in a checkout or a student copy, and tell apart an
exercise that is wrong from one blocked by an earlier exercise it builds on.

The tests run once, in a separate Python process whose working directory and import path are
the copy (so its own package is what runs), and pytest's JUnit report says which test passed.
An exercise passes when all of its tests (``tests/exercises/test_chNN.py::test_chNN_exM_*``)
pass; a failed exercise is *blocked* when something it builds on, directly or through others,
failed too. Results come as a table, as JSON, or as the ``results.json`` that Gradescope's
autograder reads.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from pathlib import Path

from .catalogue import Exercise, exercises

__all__ = ["Result", "grade", "as_json", "as_gradescope", "as_table"]


@dataclass(frozen=True)
class Result:
    exercise: Exercise
    tests: int
    passed: bool
    blocked_by: str | None
    output: str


def _run_tests(root: Path, timeout: float) -> dict[str, tuple[bool, str]]:
    """test name → (passed, what went wrong), for every test of ``tests/exercises``."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.xml"
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [str(root)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        env.setdefault("OMP_NUM_THREADS", "1")
        command = [sys.executable, "-m", "pytest", "tests/exercises", "-q", "-o", "addopts=",
                   "-p", "no:cacheprovider", f"--junitxml={report}"]
        subprocess.run(command, cwd=root, env=env, capture_output=True, text=True,
                       timeout=timeout)
        if not report.is_file():
            raise RuntimeError(f"pytest wrote no report in {root}: is pytest installed there?")
        outcomes = {}
        for case in ElementTree.parse(report).getroot().iter("testcase"):
            problem = next((child for child in case if child.tag in ("failure", "error",
                                                                      "skipped")), None)
            text = "" if problem is None else (problem.get("message") or problem.tag)
            outcomes[case.get("name")] = (problem is None, " ".join(text.split())[:500])
    return outcomes


def _blocker(exercise: Exercise, failed: set[str], catalogue: dict[str, Exercise]):
    """The first exercise that ``exercise`` builds on, directly or not, that failed."""
    seen, queue = set(), list(exercise.requires)
    while queue:
        needed = queue.pop(0)
        if needed in seen:
            continue
        seen.add(needed)
        if needed in failed:
            return needed
        queue.extend(catalogue[needed].requires)
    return None


def grade(root: Path, timeout: float = 1800) -> list[Result]:
    """Every exercise of the copy at ``root``, graded."""
    catalogue = exercises(root)
    outcomes = _run_tests(Path(root), timeout)
    verdicts = {}
    for exercise in catalogue:
        mine = {name: outcome for name, outcome in outcomes.items()
                if name.startswith(f"test_{exercise.id}_")}
        problems = [f"{name}: {why}" for name, (ok, why) in mine.items() if not ok]
        verdicts[exercise.id] = (len(mine), bool(mine) and not problems,
                                 "; ".join(problems) if mine else "no tests found")
    failed = {e for e, (_, passed, _) in verdicts.items() if not passed}
    index = {e.id: e for e in catalogue}
    return [Result(e, verdicts[e.id][0], verdicts[e.id][1],
                   None if verdicts[e.id][1] else _blocker(e, failed, index), verdicts[e.id][2])
            for e in catalogue]


def as_json(results: list[Result]) -> dict:
    return {"exercises": [{"id": r.exercise.id, "chapter": r.exercise.chapter,
                           "title": r.exercise.title, "requires": list(r.exercise.requires),
                           "passed": r.passed} for r in results],
            "score": sum(r.passed for r in results), "total": len(results)}


def as_gradescope(results: list[Result]) -> dict:
    """The ``results.json`` of Gradescope's autograder: one test per exercise, worth 1."""
    tests = []
    for r in results:
        output = "passed" if r.passed else (f"blocked by {r.blocked_by}, which it builds on; "
                                            if r.blocked_by else "") + r.output
        tests.append({"name": f"{r.exercise.id}: {r.exercise.title}", "score": int(r.passed),
                      "max_score": 1, "output": output})
    return {"score": sum(r.passed for r in results), "tests": tests}


def as_table(results: list[Result]) -> str:
    width = max(len(r.exercise.title) for r in results)
    lines = [f"{'exercise':<9}  {'title':<{width}}  result"]
    for r in results:
        verdict = "passed" if r.passed else (f"blocked by {r.blocked_by}" if r.blocked_by
                                             else "failed")
        lines.append(f"{r.exercise.id:<9}  {r.exercise.title:<{width}}  {verdict}")
    lines.append(f"score: {sum(r.passed for r in results)} / {len(results)}")
    return "\n".join(lines)
