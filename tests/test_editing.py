"""Editing without fine-tuning: inpainting, outpainting and mask-free editing keep every
token outside the edited region exactly; images and masks in every layout; clear errors."""
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from tinymuse import Tensor
from tinymuse.data import ShapesDataset
from tinymuse.editing import (downsample, extend_canvas, load_images, load_pixel_mask,
                              shift_canvas, token_mask)
from tinymuse.pipeline import Pipeline
from tinymuse.data import shapes_captions
from tinymuse.text.tokenizer import Tokenizer

FAST = dict(base={"steps": 2}, superres={"steps": 2})
PROPERTY = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


@pytest.fixture(scope="module")
def small(tokenizer):
    """32×32 images, 4×4 base and 8×8 super-resolution tokens: cheap for property tests."""
    return Pipeline.tiny(seed=0, tokenizer=tokenizer, image_size=32)


@pytest.fixture(scope="module")
def full(tokenizer):
    return Pipeline.tiny(seed=1, tokenizer=tokenizer)


def pictures(size, count=2, seed=0):
    dataset = ShapesDataset(resolution=size, seed=seed)
    return np.stack([dataset[i][0] for i in range(count)])


def brute_force_token_mask(pixel_mask, grid):
    batch, size, _ = pixel_mask.shape
    patch = size // grid
    out = np.zeros((batch, grid, grid), bool)
    for b in range(batch):
        for i in range(grid):
            for j in range(grid):
                out[b, i, j] = pixel_mask[b, i * patch:(i + 1) * patch,
                                          j * patch:(j + 1) * patch].any()
    return out


@st.composite
def pixel_masks(draw, size, batch=2):
    """Rectangles, scattered pixels, or both; never empty in any image."""
    masks = np.zeros((batch, size, size), bool)
    for b in range(batch):
        for _ in range(draw(st.integers(1, 3))):
            top, left = draw(st.integers(0, size - 1)), draw(st.integers(0, size - 1))
            height, width = draw(st.integers(1, size)), draw(st.integers(1, size))
            masks[b, top:top + height, left:left + width] = True
    if draw(st.booleans()):
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        masks &= rng.random(masks.shape) < 0.3
        masks[:, draw(st.integers(0, size - 1)), draw(st.integers(0, size - 1))] = True
    return masks


# ------------------------------------------------------------------ masks
@settings(max_examples=40, deadline=None)
@given(data=st.data(), grid=st.sampled_from([1, 2, 4, 8]))
def test_a_token_is_masked_if_any_pixel_of_its_patch_is(data, grid):
    masks = data.draw(pixel_masks(16))
    np.testing.assert_array_equal(token_mask(masks, grid), brute_force_token_mask(masks, grid))


def test_masks_in_every_layout(tmp_path):
    mask = np.zeros((8, 8), bool)
    mask[2:5, 1:3] = True
    expected = np.stack([mask, mask])
    paint = np.where(mask[..., None], 255, 0).astype(np.uint8).repeat(3, axis=2)
    Image.fromarray(paint).save(tmp_path / "mask.png")
    for layout in [mask, mask.astype(np.float32), expected, paint, Image.fromarray(paint),
                   tmp_path / "mask.png", str(tmp_path / "mask.png"), Tensor(mask.astype(float))]:
        np.testing.assert_array_equal(load_pixel_mask(layout, 8, 2), expected)
    with pytest.raises(ValueError, match=r"\(8, 8\) for every image or \(2, 8, 8\)"):
        load_pixel_mask(np.ones((3, 8, 8)), 8, 2)
    with pytest.raises(ValueError, match=r"pixel by pixel.*got shape \(16, 16\)"):
        load_pixel_mask(np.ones((16, 16)), 8, 2)
    with pytest.raises(FileNotFoundError, match="no mask file"):
        load_pixel_mask(tmp_path / "missing.png", 8, 2)


def test_images_in_every_layout_are_the_same_floats(tmp_path):
    picture = pictures(16, 1)[0]
    expected = picture.transpose(2, 0, 1)[None].astype(np.float32) / 127.5 - 1
    Image.fromarray(picture).save(tmp_path / "picture.png")
    for layout in [picture, picture[None], Image.fromarray(picture), tmp_path / "picture.png",
                   str(tmp_path / "picture.png"), expected, expected[0], Tensor(expected),
                   [picture]]:
        images = load_images(layout, 16)
        assert images.dtype == np.float32
        np.testing.assert_allclose(images, expected, atol=1e-6)


def test_images_of_the_wrong_size_or_kind_get_clear_errors(tmp_path):
    Image.fromarray(pictures(32, 1)[0]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match=r"32×32 pixels, but this pipeline works on 64×64.*"
                                         r"load_square_image\(path, 64\)"):
        load_images(tmp_path / "small.png", 64)
    with pytest.raises(ValueError, match="works on 64×64"):
        load_images(np.zeros((1, 3, 32, 32), np.float32), 64)
    with pytest.raises(ValueError, match="channels first"):
        load_images(np.zeros((1, 64, 64, 3), np.float32), 64)
    with pytest.raises(ValueError, match=r"values in \[-1, 1\]"):
        load_images(np.full((1, 3, 64, 64), 255.0, np.float32), 64)
    with pytest.raises(TypeError, match="uint8 pictures or floats"):
        load_images(np.zeros((1, 3, 64, 64), np.int64), 64)
    with pytest.raises(FileNotFoundError, match="no image file"):
        load_images(tmp_path / "missing.png", 64)


def test_downsample_averages_blocks():
    images = np.arange(2 * 3 * 4 * 4, dtype=np.float32).reshape(2, 3, 4, 4)
    small = downsample(images, 2)
    assert small.shape == (2, 3, 2, 2) and small.dtype == np.float32
    assert small[1, 2, 1, 0] == images[1, 2, 2:4, 0:2].mean()


# ------------------------------------------------------------------ inpainting
@PROPERTY
@given(data=st.data(), seed=st.integers(0, 2**16))
def test_inpainting_keeps_every_token_outside_the_mask(small, data, seed):
    masks = data.draw(pixel_masks(32))
    images = pictures(32, 2, seed=seed % 5)
    low, high = small.encode_images(images)
    out = small.inpaint(images, masks, ["a green circle", "a blue square"], seed=seed,
                        return_tokens=True, **FAST)
    keep_low = ~token_mask(masks, 4)
    keep_high = ~token_mask(masks, 8)
    np.testing.assert_array_equal(out.base_tokens[keep_low], low[keep_low])
    np.testing.assert_array_equal(out.superres_tokens[keep_high], high[keep_high])
    np.testing.assert_array_equal(out.images, small.decode_tokens(out.superres_tokens))


def test_inpainting_redraws_the_masked_tokens_at_both_resolutions(full):
    images = pictures(64, 2)
    mask = np.zeros((64, 64), bool)
    mask[8:40, 16:48] = True
    low, high = full.encode_images(images)
    out = full.inpaint(images, mask, "a green circle", seed=0, return_tokens=True, **FAST)
    assert out.images.shape == (2, 3, 64, 64)
    inside_low, inside_high = token_mask(mask[None], 8)[0], token_mask(mask[None], 16)[0]
    assert inside_low.sum() == 4 * 4 and inside_high.sum() == 8 * 8
    assert (out.base_tokens[:, inside_low] != low[:, inside_low]).any()
    assert (out.superres_tokens[:, inside_high] != high[:, inside_high]).any()
    np.testing.assert_array_equal(out.base_tokens[:, ~inside_low], low[:, ~inside_low])
    again = full.inpaint(images, mask, "a green circle", seed=0, return_tokens=True, **FAST)
    np.testing.assert_array_equal(out.images, again.images)


def test_the_super_resolution_stage_is_conditioned_on_the_new_base_tokens(full, monkeypatch):
    from tinymuse import pipeline as pipeline_module

    images = pictures(64, 1)
    mask = np.zeros((64, 64), bool)
    mask[:32] = True
    seen = {}
    original = pipeline_module.sample_stage

    def spy(model, prompts, settings, **kwargs):
        if kwargs.get("low_tokens") is not None:
            seen["low"] = np.array(kwargs["low_tokens"])
        return original(model, prompts, settings, **kwargs)

    monkeypatch.setattr(pipeline_module, "sample_stage", spy)
    out = full.inpaint(images, mask, "a red square", seed=2, return_tokens=True, **FAST)
    np.testing.assert_array_equal(seen["low"], out.base_tokens)


def test_inpainting_errors_name_the_problem(full, tmp_path):
    images = pictures(64, 2)
    with pytest.raises(ValueError, match="the mask covers no pixel, so there is nothing"):
        full.inpaint(images, np.zeros((64, 64), bool), "a red circle", **FAST)
    one_empty = np.zeros((2, 64, 64), bool)
    one_empty[0, :4, :4] = True
    with pytest.raises(ValueError, match=r"covers no pixel of image\(s\) \[1\]"):
        full.inpaint(images, one_empty, "a red circle", **FAST)
    with pytest.raises(ValueError, match="3 prompts for 2 images"):
        full.inpaint(images, one_empty | True, ["a red circle"] * 3, **FAST)
    Image.fromarray(pictures(32, 1)[0]).save(tmp_path / "small.png")
    with pytest.raises(ValueError, match="works on 64×64"):
        full.inpaint(tmp_path / "small.png", np.ones((64, 64), bool), "a red circle", **FAST)
    from tinymuse.text import OutOfVocabularyError
    with pytest.raises(OutOfVocabularyError, match="'unicorn'"):
        full.inpaint(images, one_empty | True, "a unicorn", **FAST)


def test_an_image_file_can_be_inpainted(full, tmp_path):
    Image.fromarray(pictures(64, 1)[0]).save(tmp_path / "picture.png")
    mask = np.zeros((64, 64, 3), np.uint8)
    mask[40:, :] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = full.inpaint(tmp_path / "picture.png", tmp_path / "mask.png", "a blue circle",
                       seed=0, output="uint8", **FAST)
    assert out.shape == (1, 64, 64, 3) and out.dtype == np.uint8


# ------------------------------------------------------------------ outpainting
@settings(max_examples=30, deadline=None)
@given(dy=st.integers(-7, 7), dx=st.integers(-7, 7))
def test_shifting_the_canvas_moves_the_picture_and_uncovers_the_rest(dy, dx):
    if (dy, dx) == (0, 0):
        return
    images = np.random.default_rng(0).uniform(-1, 1, (2, 3, 8, 8)).astype(np.float32)
    canvas, uncovered = shift_canvas(images, dy, dx, fill=0.5)
    for y in range(8):
        for x in range(8):
            sy, sx = y - dy, x - dx
            if 0 <= sy < 8 and 0 <= sx < 8:
                assert not uncovered[0, y, x]
                np.testing.assert_array_equal(canvas[:, :, y, x], images[:, :, sy, sx])
            else:
                assert uncovered[:, y, x].all() and (canvas[:, :, y, x] == 0.5).all()


def test_extending_the_canvas_zooms_out(tmp_path):
    images = np.full((1, 3, 16, 16), -1.0, np.float32)
    canvas, uncovered = extend_canvas(images, (8, 8, 0, 16), fill=1.0)
    assert canvas.shape == (1, 3, 16, 16) and uncovered.shape == (1, 16, 16)
    # a 32×32 canvas shrunk by 2: the old picture sits in rows 4..11 and columns 0..7
    assert not uncovered[0, 4:12, 0:8].any() and uncovered[0, :4].all()
    assert uncovered[0, :, 8:].all()
    np.testing.assert_allclose(canvas[0, :, 4:12, 0:8], -1.0, atol=1e-6)
    np.testing.assert_allclose(canvas[0, :, :4], 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="models draw square images"):
        extend_canvas(images, (8, 0, 0, 0))
    with pytest.raises(ValueError, match="no margin"):
        extend_canvas(images, 0)


def test_outpainting_keeps_the_tokens_of_the_covered_region(small):
    images = pictures(32, 2)
    canvas, uncovered = shift_canvas(load_images(images, 32), 0, 12)
    low, high = small.encode_images(canvas)
    out = small.outpaint(images, ["a red circle", "a blue square"], shift=(0, 12), seed=0,
                         return_tokens=True, **FAST)
    keep_low, keep_high = ~token_mask(uncovered, 4), ~token_mask(uncovered, 8)
    assert keep_low.any() and (~keep_low).any()
    np.testing.assert_array_equal(out.base_tokens[keep_low], low[keep_low])
    np.testing.assert_array_equal(out.superres_tokens[keep_high], high[keep_high])
    zoomed = small.outpaint(images, "a red circle", extend=(4, 4, 4, 4), seed=0, **FAST)
    assert zoomed.shape == (2, 3, 32, 32)
    with pytest.raises(ValueError, match="exactly one of shift"):
        small.outpaint(images, "a red circle", **FAST)
    with pytest.raises(ValueError, match="shift must be \\(dy, dx\\)"):
        small.outpaint(images, "a red circle", shift=3, **FAST)
    with pytest.raises(ValueError, match="by 1 to 31 pixels"):
        small.outpaint(images, "a red circle", shift=(0, 32), **FAST)


# ------------------------------------------------------------------ mask-free editing
@PROPERTY
@given(data=st.data(), seed=st.integers(0, 2**16), fraction=st.sampled_from([0.1, 0.3]))
def test_mask_free_editing_stays_in_its_region(small, data, seed, fraction):
    region = data.draw(pixel_masks(32))
    images = pictures(32, 2, seed=seed % 5)
    low, high = small.encode_images(images)
    iterations = 3
    out = small.edit(images, "a green circle", base={"iterations": iterations,
                                                     "fraction": fraction},
                     region=region, seed=seed, return_tokens=True, superres={"steps": 2})
    allowed = token_mask(region, 4)
    np.testing.assert_array_equal(out.base_tokens[~allowed], low[~allowed])
    per_iteration = np.ceil(fraction * allowed.reshape(2, -1).sum(axis=1))
    changed = (out.base_tokens != low).reshape(2, -1).sum(axis=1)
    assert (changed <= iterations * per_iteration).all()
    # super-resolution tokens change only under base tokens that changed
    under_changed = (out.base_tokens != low).repeat(2, axis=1).repeat(2, axis=2)
    np.testing.assert_array_equal(out.superres_tokens[~under_changed], high[~under_changed])


def test_mask_free_editing_is_seeded_and_moves_the_image(full):
    images = pictures(64, 1)
    low, _ = full.encode_images(images)
    quick = dict(base={"iterations": 4}, superres={"steps": 2}, seed=3, return_tokens=True)
    a = full.edit(images, "a green circle", **quick)
    b = full.edit(images, "a green circle", **quick)
    np.testing.assert_array_equal(a.images, b.images)
    assert (a.base_tokens != low).any()
    # 4 iterations of ⌈8% · 64⌉ = 6 tokens: at most 24 base tokens can change
    assert (a.base_tokens != low).sum() <= 24


def test_mask_free_editing_errors(full):
    images = pictures(64, 1)
    with pytest.raises(ValueError, match="iterations must be a whole number from 1 to 1000"):
        full.edit(images, "a red circle", base={"iterations": 0})
    with pytest.raises(ValueError, match=r"must lie in \(0, 1\]"):
        full.edit(images, "a red circle", base={"fraction": 1.5})
    with pytest.raises(ValueError, match="region covers no pixel"):
        full.edit(images, "a red circle", region=np.zeros((64, 64), bool))
    with pytest.raises(ValueError, match="guidance_scale must be a number from 0 to 100"):
        full.edit(images, "a red circle", base={"guidance_scale": -2.0})
