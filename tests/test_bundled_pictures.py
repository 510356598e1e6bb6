"""The bundled weights draw the same pictures as before: every call recorded in
``fixtures/bundled_tokens.json`` (generation, inpainting, outpainting and mask-free editing,
with fixed seeds) gives the same base and super-resolution token grids, token for token.

The grids were recorded before the package was reorganised; the pictures are these tokens
decoded, so equal grids mean equal pictures."""
import json
from pathlib import Path

import numpy as np
import pytest

from tinymuse import Pipeline
from tinymuse.pipeline_files import BUNDLED
from tinymuse.data import ShapesDataset

RECORDED = json.loads((Path(__file__).parent / "fixtures" / "bundled_tokens.json").read_text())
CALLS = RECORDED["calls"]


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.load(BUNDLED)


def _picture(index: int) -> np.ndarray:
    return ShapesDataset(resolution=64, seed=11)[index][0]


def _box(left: int, top: int, right: int, bottom: int) -> np.ndarray:
    mask = np.zeros((64, 64), bool)
    mask[top:bottom, left:right] = True
    return mask


def _replay(pipeline, call: dict):
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in call["options"].items()}
    if "region_box" in options:
        options["region"] = _box(*options.pop("region_box"))
    common = dict(return_tokens=True, output="uint8")
    if call["call"] == "generate":
        return pipeline.generate(call["prompts"], **common, **options)
    image = _picture(call["image"])
    if call["call"] == "inpaint":
        return pipeline.inpaint(image, _box(*call["box"]), call["prompt"], **common, **options)
    if call["call"] == "outpaint":
        return pipeline.outpaint(image, call["prompt"], **common, **options)
    return pipeline.edit(image, call["prompt"], **common, **options)


@pytest.mark.parametrize("call", CALLS, ids=[c["name"] for c in CALLS])
def test_the_bundled_weights_draw_the_recorded_tokens(pipeline, call):
    out = _replay(pipeline, call)
    np.testing.assert_array_equal(out.base_tokens, np.array(call["base_tokens"]))
    np.testing.assert_array_equal(out.superres_tokens, np.array(call["superres_tokens"]))
