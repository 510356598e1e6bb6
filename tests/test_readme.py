"""The README's command examples, run as written in a fresh folder with the bundled weights: each
must succeed and draw what its prompt says, as the shapes oracle reads it.

The ``eval`` and ``train`` lines are left out here (minutes of work); ``tests/test_cli.py``
runs both commands on a tiny cascade.
"""
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tinymuse import cli
from tinymuse.evaluate.oracle import score_prompts

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_commands() -> list[list[str]]:
    """The lines of the README's first ``sh`` block after the set-up commands, as argv lists
    without the leading ``tinymuse`` and without comments."""
    blocks = re.findall(r"```sh\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    commands = next(block for block in blocks if "tinymuse generate" in block)
    return [shlex.split(line, comments=True)[1:] for line in commands.splitlines()
            if line.startswith("tinymuse ")]


def picture(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


@pytest.fixture(scope="module")
def ran(tmp_path_factory):
    """Every image command of the README, run in order in one folder."""
    folder = tmp_path_factory.mktemp("readme")
    mask = np.zeros((64, 64), np.uint8)
    mask[:32, :32] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    commands = [c for c in readme_commands() if c[0] not in ("eval", "train")]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        codes = {shlex.join(command): cli.main(command) for command in commands}
    return folder, codes


def test_the_readme_shows_every_command():
    shown = {command[0] for command in readme_commands()}
    assert shown == {"demo", "generate", "inpaint", "outpaint", "edit", "info", "vocab", "eval",
                     "train"}


def test_every_readme_example_runs(ran):
    _, codes = ran
    assert codes and all(code == 0 for code in codes.values()), codes


@pytest.mark.parametrize("file, caption", [
    ("circle.png", "a red circle on a black background"),
    ("inpainted.png", "a yellow square on a black background"),
    ("masked.png", "a yellow square on a black background"),
    ("moved.png", "a purple square above a red circle"),
    ("zoomed.png", "a small red circle on a black background"),
    ("edited.png", "a blue circle on a black background"),
])
def test_each_readme_picture_shows_its_prompt(ran, file, caption):
    folder, _ = ran
    scores = score_prompts([caption], picture(folder / file)[None])
    assert scores["all"] == 1.0, scores


def test_the_negative_prompt_example_turns_the_grey_background_away(ran):
    folder, _ = ran
    plain = cli.main(["generate", "a red circle", "--out", str(folder / "plain.png")])
    assert plain == 0
    assert score_prompts(["a red circle on a gray background"],
                         picture(folder / "plain.png")[None])["background"] == 1.0
    steered = picture(folder / "not-gray.png")[None]
    assert score_prompts(["a red circle"], steered)["all"] == 1.0
    assert score_prompts(["a red circle on a gray background"], steered)["background"] == 0.0


def test_the_grid_example_has_a_row_per_prompt_and_a_column_per_sample(ran):
    folder, _ = ran
    assert picture(folder / "grid.png").shape == (2 * 66 + 2, 4 * 66 + 2, 3)
    assert (folder / "tinymuse-demo.png").is_file()
