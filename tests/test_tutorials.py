"""Every tutorial chapter runs as written.

Each ```python block of a chapter is executed in order, in one namespace, in a
fresh temporary directory, exactly as a student would paste them. Blocks fenced
as ```text show output and are not run.
"""
import re
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parent.parent / "tutorials").glob("*.md"))
PYTHON_BLOCK = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)


def python_blocks(path: Path) -> list[str]:
    return PYTHON_BLOCK.findall(path.read_text(encoding="utf-8"))


def test_there_are_tutorials():
    assert TUTORIALS, "tutorials/ holds no chapters"


@pytest.mark.parametrize("chapter", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_chapter_runs_as_written(chapter, tmp_path, monkeypatch):
    blocks = python_blocks(chapter)
    assert blocks, f"{chapter.name} has no ```python blocks to run"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    namespace = {"__name__": f"tutorial_{chapter.stem}"}
    for number, source in enumerate(blocks, 1):
        code = compile(source, f"{chapter.name}, block {number}", "exec")
        exec(code, namespace)
