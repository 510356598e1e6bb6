"""Every tutorial chapter runs as written, prints what its text says, and draws its figures.

Each ```python block of a chapter runs in order, in one namespace, in a fresh temporary folder
(as a student runs them from ``tutorials/``); the ```text block right after a python block is
what it must print (``tinymuse.cli.tutorials.same_output``: exact, trailing spaces aside, any
number before a unit of time matching any). The figures a chapter draws into ``figures/`` must
be, pixel for pixel, the ones committed in ``tutorials/figures/`` (draw them again with
``tinymuse tutorials --figures``). ``tinymuse tutorials --notebooks`` writes valid notebooks.
"""
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinymuse.cli import tutorials as chapters_of

FOLDER = Path(__file__).parent.parent / "tutorials"
TUTORIALS = chapters_of.chapters(FOLDER)


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGBA"))


def same_up_to_rounding(drawn: np.ndarray, committed: np.ndarray) -> bool:
    """The same picture, but for a decoded pixel that sits on a rounding boundary: float32
    sums come out in another order on another CPU's BLAS kernels, and such a pixel moves by
    one level. Anything a code change does moves more pixels, or further."""
    if drawn.shape != committed.shape:
        return False
    difference = np.abs(drawn.astype(np.int16) - committed.astype(np.int16))
    return int(difference.max()) <= 1 and np.count_nonzero(difference) <= difference.size // 1000


def test_rounding_tolerance_is_one_level_on_a_few_pixels():
    picture = np.zeros((100, 100, 4), np.uint8)
    nudged = picture.copy()
    nudged[0, :5, 0] = 1
    assert same_up_to_rounding(nudged, picture)
    nudged[0, 0, 0] = 2
    assert not same_up_to_rounding(nudged, picture), "two levels is a change"
    spread = picture.copy()
    spread[:, :, 0] = 1
    assert not same_up_to_rounding(spread, picture), "a whole channel moved is a change"
    assert not same_up_to_rounding(picture[:50], picture)


def test_there_are_ten_chapters_or_more():
    assert len(TUTORIALS) >= 10, [p.name for p in TUTORIALS]


@pytest.mark.parametrize("chapter", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_chapter_runs_as_written_and_prints_what_it_says(chapter, tmp_path, monkeypatch):
    monkeypatch.setenv("MPLBACKEND", "Agg")
    ran = chapters_of.run_chapter(chapter, tmp_path)
    assert ran, f"{chapter.name} has no ```python blocks to run"
    stale = [f"block {number}:\n--- the text says ---\n{cell.expected}--- it prints ---\n"
             f"{printed}" for number, (cell, printed) in enumerate(ran, 1)
             if cell.expected is not None and not chapters_of.same_output(printed, cell.expected)]
    assert not stale, f"{chapter.name}: printed output differs from the text\n" + "\n".join(stale)
    drawn = sorted((tmp_path / chapters_of.FIGURES).glob("*.png"))
    number = int(chapter.name[:2])
    if number >= 3:
        assert drawn, f"{chapter.name} draws no figure into figures/"
    for figure in drawn:
        assert figure.name.startswith(chapter.name[:3]), \
            f"{chapter.name} draws {figure.name}; its figures are named {chapter.name[:3]}*.png"
        committed = FOLDER / chapters_of.FIGURES / figure.name
        assert committed.is_file(), f"{committed} is missing: run tinymuse tutorials --figures"
        assert same_up_to_rounding(pixels(figure), pixels(committed)), \
            f"{committed} is not what {chapter.name} draws now: run tinymuse tutorials --figures"
    committed = sorted((FOLDER / chapters_of.FIGURES).glob(f"{chapter.name[:3]}*.png"))
    assert [f.name for f in committed] == [f.name for f in drawn], \
        "a committed figure that the chapter no longer draws"
    text = chapter.read_text(encoding="utf-8")
    for figure in drawn:
        assert f"figures/{figure.name}" in text, f"{chapter.name} never shows {figure.name}"


def test_the_output_rule_is_exact_but_for_timings():
    same = chapters_of.same_output
    assert same("loss 0.25\ntook 1.3 s\n", "loss 0.25  \ntook 0.9 s\n\n")
    assert same("step in 12 ms", "step in 7.5 ms")
    assert not same("loss 0.25", "loss 0.26")
    assert not same("3 seconds", "4 seconds"), "only a number right before a unit"
    assert not same("12 of 12 base tokens", "11 of 12 base tokens")
    assert not same("a\nb", "a")


def test_cells_pair_each_block_with_the_output_right_after_it(tmp_path):
    chapter = tmp_path / "01-x.md"
    chapter.write_text("# Title\n\nText.\n\n```python\nprint(1)\n```\n\n```text\n1\n```\n\n"
                       "More.\n\n```python\nx = 2\n```\n\nProse.\n\n```text\nnot output\n```\n",
                       encoding="utf-8")
    found = chapters_of.cells(chapter)
    assert [c.kind for c in found] == ["markdown", "code", "markdown", "code", "markdown"]
    assert found[1] == chapters_of.Cell("code", "print(1)\n", "1\n")
    assert found[3].expected is None, "a text block after prose is not the block's output"
    assert "not output" in found[4].source


def test_the_chapters_become_valid_notebooks(tmp_path):
    import nbformat  # the test extra installs it
    written = chapters_of.write_notebooks(FOLDER, tmp_path / "notebooks")
    assert len(written) >= 10
    for path in written:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
        kinds = {cell.cell_type for cell in notebook.cells}
        assert kinds == {"markdown", "code"}, (path.name, kinds)
    figures = list((tmp_path / "notebooks" / "figures").glob("*.png"))
    assert len(figures) == len(list((FOLDER / "figures").glob("*.png")))


def test_the_command_draws_figures_in_place_and_writes_notebooks(tmp_path, capsys):
    from tinymuse import cli

    folder = tmp_path / "chapters"
    folder.mkdir()
    (folder / "03-a-figure.md").write_text(
        "# A figure\n\n```python\nimport os\nimport numpy as np\nfrom PIL import Image\n"
        "os.makedirs('figures', exist_ok=True)\n"
        "Image.fromarray(np.full((4, 4, 3), 200, np.uint8)).save('figures/03-grey.png')\n"
        "open('scratch.txt', 'w').write('left in the working folder')\nprint('drawn')\n```\n\n"
        "```text\ndrawn\n```\n\n![grey](figures/03-grey.png)\n", encoding="utf-8")
    assert cli.main(["tutorials", "--folder", str(folder), "--figures"]) == 0
    assert (pixels(folder / "figures" / "03-grey.png")[..., :3] == 200).all()
    assert sorted(p.name for p in folder.iterdir()) == ["03-a-figure.md", "figures"], \
        "what else a chapter writes stays out of the chapters' folder"
    assert cli.main(["tutorials", "--folder", str(folder), "--notebooks",
                     str(tmp_path / "nb")]) == 0
    assert (tmp_path / "nb" / "03-a-figure.ipynb").is_file()
    assert (tmp_path / "nb" / "figures" / "03-grey.png").is_file()
    assert "wrote 1 notebook in" in capsys.readouterr().out
