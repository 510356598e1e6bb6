"""Watching the decoder work: every decoding step of both stages, from the library
(``Pipeline.generate(..., return_steps=True)``, :mod:`tinymuse.step_pictures`) and from the
command (``tinymuse generate --steps-gif / --steps-grid``).

The bundled weights draw, with few steps to stay fast. What is checked is what a picture of
a step promises: one frame per step, gray exactly where the step's tokens are still masked,
and elsewhere the pixels of the finished grid.
"""
import numpy as np
import pytest
from PIL import Image

from tinymuse import Pipeline
from tinymuse.data.images import read_png_parameters, to_uint8_images
from tinymuse.step_pictures import MASKED_GRAY, decoding_frames, step_picture

from cli_helpers import error_line, png, run

PROMPTS = ["a red circle", "two blue squares"]
BASE_STEPS, SR_STEPS = 3, 2
FAST = ("--steps", BASE_STEPS, "--sr-steps", SR_STEPS)




def blocks(mask, size: int) -> np.ndarray:
    """A token mask (B, g, g) as a pixel mask (B, size, size): each token a square block."""
    mask = np.asarray(mask, bool)
    block = size // mask.shape[-1]
    return mask.repeat(block, axis=1).repeat(block, axis=2)


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.from_pretrained()


@pytest.fixture(scope="module")
def drawn(pipeline):
    return pipeline.generate(PROMPTS, base={"steps": BASE_STEPS}, superres={"steps": SR_STEPS},
                             seed=0, output="uint8", return_steps=True)


# ------------------------------------------------------------------------------- the API


def test_the_pipeline_returns_every_step_of_both_stages(pipeline, drawn):
    assert len(drawn.base_steps) == BASE_STEPS and len(drawn.superres_steps) == SR_STEPS
    for steps, final, mask_id in ((drawn.base_steps, drawn.base_tokens, pipeline.base.mask_id),
                                  (drawn.superres_steps, drawn.superres_tokens,
                                   pipeline.superres.mask_id)):
        assert all(step.tokens.shape == step.mask.shape == final.shape for step in steps)
        np.testing.assert_array_equal(steps[-1].tokens, final)
        assert not steps[-1].mask.any()
        for step in steps:
            assert (step.tokens[step.mask] == mask_id).all()
            np.testing.assert_array_equal(step.tokens[~step.mask], final[~step.mask])
        still = [int(step.mask.sum()) for step in steps]
        assert still == sorted(still, reverse=True) and still[0] > 0


def test_keeping_the_steps_draws_the_same_pictures(pipeline, drawn):
    plain = pipeline.generate(PROMPTS, base={"steps": BASE_STEPS}, superres={"steps": SR_STEPS},
                              seed=0, output="uint8", return_tokens=True)
    np.testing.assert_array_equal(plain.images, drawn.images)
    np.testing.assert_array_equal(plain.base_tokens, drawn.base_tokens)
    assert plain.base_steps is None and plain.superres_steps is None


def test_a_frame_is_gray_exactly_where_its_step_is_still_masked(pipeline, drawn):
    frames = decoding_frames(pipeline, drawn)
    assert len(frames) == BASE_STEPS + SR_STEPS
    assert all(frame.shape == (len(PROMPTS), 64, 64, 3) for frame in frames)
    # Outside the mask a frame shows the finished grid of its stage, decoded.
    base = to_uint8_images(pipeline.base_vq.decode(drawn.base_tokens).numpy())
    base = base.repeat(2, axis=1).repeat(2, axis=2)
    finished = {0: base, BASE_STEPS: drawn.images}
    for index, step in ((0, drawn.base_steps[0]), (BASE_STEPS, drawn.superres_steps[0])):
        frame, hidden = frames[index], blocks(step.mask, 64)
        assert hidden.any() and (~hidden).any()
        assert (frame[hidden] == MASKED_GRAY).all()
        np.testing.assert_array_equal(frame[~hidden], finished[index][~hidden])
    # After the last step of a stage nothing is gray: the frame is the stage's picture.
    np.testing.assert_array_equal(frames[BASE_STEPS - 1], base)
    np.testing.assert_array_equal(frames[-1], drawn.images)


def test_a_step_picture_takes_flat_grids_and_refuses_a_wrong_final_grid(pipeline, drawn):
    step = drawn.base_steps[0]
    flat = type(step)(step.tokens.reshape(len(PROMPTS), -1), step.mask.reshape(len(PROMPTS), -1))
    np.testing.assert_array_equal(step_picture(pipeline.base_vq, flat, drawn.base_tokens),
                                  step_picture(pipeline.base_vq, step, drawn.base_tokens))
    with pytest.raises(ValueError, match="final_tokens"):
        step_picture(pipeline.base_vq, step, drawn.base_tokens[:1])


def test_outputs_without_steps_are_refused_with_the_fix(pipeline, drawn):
    with pytest.raises(ValueError, match="return_steps=True"):
        decoding_frames(pipeline, drawn._replace(base_steps=None))


# --------------------------------------------------------------------------- the command


@pytest.mark.parametrize("prompts, base_steps, sr_steps, scale",
                         [(PROMPTS, 3, 2, 1), (PROMPTS[:1], 2, 4, 2)])
def test_the_steps_gif_has_one_frame_per_step(tmp_path, prompts, base_steps, sr_steps, scale):
    out, gif = tmp_path / "picture.png", tmp_path / "steps.gif"
    assert run("generate", *prompts, "--steps", base_steps, "--sr-steps", sr_steps,
               "--scale", scale, "--out", out, "--steps-gif", gif, "--quiet") == 0
    with Image.open(gif) as animation:
        assert animation.format == "GIF"
        assert animation.n_frames == base_steps + sr_steps
        assert animation.info.get("loop") == 0
        # each frame is the --out picture as decoded so far, its step written under it
        assert animation.size[0] == png(out).shape[1]
        assert animation.size[1] > png(out).shape[0]


def test_the_steps_grid_has_a_row_per_image_and_a_column_per_step(tmp_path):
    out, grid = tmp_path / "picture.png", tmp_path / "steps.png"
    assert run("generate", *PROMPTS, *FAST, "--out", out, "--steps-grid", grid, "--quiet") == 0
    steps = BASE_STEPS + SR_STEPS
    cells = png(grid)
    assert cells.shape == (len(PROMPTS) * 66 + 2, steps * 66 + 2, 3)
    pictures = png(out)  # the two images side by side, 2 pixels of padding around each
    for row in range(len(PROMPTS)):
        top, image = 2 + row * 66, pictures[2:66, 2 + row * 66:66 + row * 66]
        first = cells[top:top + 64, 2:66]
        last = cells[top:top + 64, 2 + (steps - 1) * 66:steps * 66]
        np.testing.assert_array_equal(last, image)   # the last step is the finished picture
        assert (first == MASKED_GRAY).all(axis=-1).any()  # after the first step, some gray
    assert read_png_parameters(grid)["command"] == "generate"


def test_labels_name_the_prompt_and_the_steps_in_the_grid(tmp_path):
    plain, labelled = tmp_path / "plain.png", tmp_path / "labelled.png"
    for grid, extra in ((plain, ()), (labelled, ("--labels",))):
        assert run("generate", *PROMPTS, *FAST, "--out", tmp_path / f"{grid.stem}-out.png",
                   "--steps-grid", grid, "--quiet", *extra) == 0
    assert png(labelled).shape[1] == png(plain).shape[1]
    assert png(labelled).shape[0] > png(plain).shape[0]


@pytest.mark.parametrize("flag, name", [("--steps-gif", "steps.gif"),
                                        ("--steps-grid", "steps.png")])
def test_an_existing_steps_file_is_kept_unless_overwrite_is_given(tmp_path, capsys, flag, name):
    kept, out = tmp_path / name, tmp_path / "picture.png"
    kept.write_bytes(b"precious")
    assert run("generate", "a red circle", *FAST, "--out", out, flag, kept) == 2
    line = error_line(capsys)
    assert flag in line and "--overwrite" in line
    assert kept.read_bytes() == b"precious"
    assert not out.exists(), "refused before anything was drawn"
    assert run("generate", "a red circle", *FAST, "--out", out, flag, kept, "--overwrite",
               "--quiet") == 0
    with Image.open(kept) as picture:
        assert picture.format == ("GIF" if flag == "--steps-gif" else "PNG")


@pytest.mark.parametrize("flag, name, suffix", [("--steps-gif", "steps.png", ".gif"),
                                                ("--steps-gif", "steps", ".gif"),
                                                ("--steps-grid", "steps.gif", ".png")])
def test_a_steps_file_of_the_wrong_kind_is_one_line(tmp_path, capsys, flag, name, suffix):
    out = tmp_path / "picture.png"
    assert run("generate", "a red circle", *FAST, "--out", out, flag, tmp_path / name) == 2
    line = error_line(capsys)
    assert flag in line and f"must name a {suffix} file" in line
    assert not out.exists() and not (tmp_path / name).exists()


def test_the_steps_grid_is_never_the_picture_itself(tmp_path, capsys):
    out = tmp_path / "picture.png"
    assert run("generate", "a red circle", *FAST, "--out", out, "--steps-grid", out) == 2
    assert "--steps-grid" in error_line(capsys)
    assert not out.exists()
