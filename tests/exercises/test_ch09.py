"""Chapter 9's exercises (tutorials/09-editing.md): a pixel mask becomes token masks, the
canvas moves and widens for outpainting, and one step of mask-free editing resamples a few
random tokens. Every test compares with a reference written here, pixel by pixel or token by
token, and runs in well under a second."""
import math

import numpy as np
from hypothesis import given, settings, strategies as st

from tinymuse import backend
from tinymuse.decoding import mask_free_edit_step
from tinymuse.editing import extend_canvas, shift_canvas, token_mask
from tinymuse.sampling import Sampling

PROPERTY = settings(max_examples=25, deadline=None)


def random_images(batch, size, seed=0):
    return np.random.default_rng(seed).uniform(-1, 1, (batch, 3, size, size)).astype(np.float32)


# --------------------------------------------------------------------------- #
# ch09_ex1: from a pixel mask to a token mask.
# --------------------------------------------------------------------------- #


def loop_token_mask(pixels, grid):
    """token (i, j) is hidden when any pixel of its patch is painted: one patch at a time."""
    batch, size, _ = pixels.shape
    side = size // grid
    hidden = np.zeros((batch, grid, grid), bool)
    for b in range(batch):
        for i in range(grid):
            for j in range(grid):
                hidden[b, i, j] = bool(pixels[b, i * side:(i + 1) * side,
                                              j * side:(j + 1) * side].sum())
    return hidden


@PROPERTY
@given(batch=st.integers(1, 3), grid=st.sampled_from([1, 2, 4, 8]),
       side=st.integers(1, 4), density=st.sampled_from([0.02, 0.1, 0.5]),
       seed=st.integers(0, 10_000))
def test_ch09_ex1_a_token_is_hidden_when_any_pixel_of_its_patch_is(batch, grid, side, density,
                                                                  seed):
    pixels = np.random.default_rng(seed).random((batch, grid * side, grid * side)) < density
    hidden = token_mask(pixels, grid)
    assert hidden.shape == (batch, grid, grid) and hidden.dtype == bool
    np.testing.assert_array_equal(hidden, loop_token_mask(pixels, grid))


def test_ch09_ex1_the_chapters_brush_and_a_single_pixel():
    brush = np.zeros((1, 64, 64), bool)
    brush[0, 10:30, 20:44] = True                       # rows 10…29, columns 20…43
    base = token_mask(brush, 8)[0]
    expected = np.zeros((8, 8), bool)
    expected[1:4, 2:6] = True                           # pixels 8…31 × 16…47
    np.testing.assert_array_equal(base, expected)
    assert int(token_mask(brush, 16).sum()) == 36
    dot = np.zeros((2, 16, 16), bool)
    dot[1, 13, 2] = True                                # one pixel, in image 1 only
    hidden = token_mask(dot, 4)
    assert hidden.sum() == 1 and hidden[1, 3, 0]


# --------------------------------------------------------------------------- #
# ch09_ex2: outpainting's shift.
# --------------------------------------------------------------------------- #


def loop_shift(images, dy, dx, fill):
    """Pixel (y, x) of the moved canvas shows pixel (y − dy, x − dx) of the picture, if that
    pixel exists; otherwise it holds `fill` and is uncovered."""
    batch, channels, size, _ = images.shape
    moved = np.full(images.shape, fill, images.dtype)
    new = np.ones((batch, size, size), bool)
    for y in range(size):
        for x in range(size):
            if 0 <= y - dy < size and 0 <= x - dx < size:
                moved[:, :, y, x] = images[:, :, y - dy, x - dx]
                new[:, y, x] = False
    return moved, new


@PROPERTY
@given(size=st.integers(2, 9), data=st.data(), fill=st.sampled_from([0.0, -1.0, 0.5]))
def test_ch09_ex2_the_picture_moves_and_the_strip_it_leaves_is_uncovered(size, data, fill):
    dy = data.draw(st.integers(-(size - 1), size - 1))
    dx = data.draw(st.integers(-(size - 1), size - 1).filter(lambda v: (dy, v) != (0, 0)))
    images = random_images(2, size, seed=size)
    before = images.copy()
    canvas, uncovered = shift_canvas(images, dy, dx, fill)
    want_canvas, want_uncovered = loop_shift(images, dy, dx, fill)
    assert canvas.shape == images.shape and uncovered.shape == (2, size, size)
    assert uncovered.dtype == bool
    np.testing.assert_array_equal(canvas, want_canvas)
    np.testing.assert_array_equal(uncovered, want_uncovered)
    np.testing.assert_array_equal(images, before)       # the caller's pictures are untouched


def test_ch09_ex2_the_chapters_shift_uncovers_the_right_columns():
    images = random_images(1, 64)
    canvas, uncovered = shift_canvas(images, 0, -24)    # 24 pixels to the left
    columns = np.nonzero(uncovered[0].any(axis=0))[0]
    assert (columns[0], columns[-1], len(columns)) == (40, 63, 24)
    assert uncovered[0, :, 40:].all() and not uncovered[0, :, :40].any()
    np.testing.assert_array_equal(canvas[..., :40], images[..., 24:])
    down, hidden = shift_canvas(images, 32, 0)          # 32 pixels down: the top half is new
    assert hidden[0, :32].all() and not hidden[0, 32:].any()
    np.testing.assert_array_equal(down[:, :, 32:], images[:, :, :32])


# --------------------------------------------------------------------------- #
# ch09_ex3: outpainting's zoom-out.
# --------------------------------------------------------------------------- #


def block_extend(images, extend, fill):
    """The widened canvas shrunk by a whole factor f: each pixel the mean of an f×f block, and
    uncovered when its block holds any margin pixel."""
    top, bottom, left, right = extend
    size = images.shape[-1]
    padded = np.pad(images.astype(np.float64), ((0, 0), (0, 0), (top, bottom), (left, right)),
                    constant_values=fill)
    margin = np.pad(np.zeros((size, size), bool), ((top, bottom), (left, right)),
                    constant_values=True)
    f = padded.shape[-1] // size
    shrunk = padded.reshape(len(images), 3, size, f, size, f).mean(axis=(3, 5))
    uncovered = margin.reshape(size, f, size, f).any(axis=(1, 3))
    return shrunk, np.broadcast_to(uncovered, (len(images), size, size))


def test_ch09_ex3_a_whole_zoom_factor_averages_blocks_and_uncovers_the_margins():
    for size, extend, fill in [(4, (2, 2, 1, 3), 0.0), (8, (4, 4, 4, 4), -1.0),
                               (6, (0, 6, 6, 0), 0.25), (4, (4, 4, 0, 8), 1.0)]:
        images = random_images(2, size, seed=size)
        canvas, uncovered = extend_canvas(images, extend, fill)
        want, want_uncovered = block_extend(images, extend, fill)
        assert canvas.shape == images.shape and uncovered.shape == (2, size, size)
        assert uncovered.dtype == bool, extend
        np.testing.assert_allclose(canvas, want, atol=1e-5, err_msg=str(extend))
        np.testing.assert_array_equal(uncovered, want_uncovered, err_msg=str(extend))


def test_ch09_ex3_any_zoom_keeps_a_rectangle_and_uncovers_a_frame_around_it():
    images = random_images(1, 64)
    canvas, uncovered = extend_canvas(images, (16, 16, 16, 16))   # the chapter's 96 → 64
    rows = np.nonzero(~uncovered[0].all(axis=1))[0]
    cols = np.nonzero(~uncovered[0].all(axis=0))[0]
    kept = np.zeros((64, 64), bool)
    kept[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    np.testing.assert_array_equal(~uncovered[0], kept)              # a kept rectangle…
    assert 0 < rows[0] <= 11 and 52 <= rows[-1] < 63                # …framed by ~11 pixels
    assert (rows[0], rows[-1]) == (cols[0], cols[-1])
    patches = uncovered[0].reshape(8, 8, 8, 8).any(axis=(1, 3))
    assert int(patches.sum()) == 48                     # two rings of 8-pixel patches
    assert -1 <= canvas.min() and canvas.max() <= 1 and canvas.dtype == np.float32
    flat, _ = extend_canvas(np.full((1, 3, 8, 8), 0.5, np.float32), (1, 1, 1, 1), fill=0.5)
    np.testing.assert_allclose(flat, 0.5, atol=1e-6)   # nothing new to mix in: still flat


# --------------------------------------------------------------------------- #
# ch09_ex4: one step of mask-free editing.
# --------------------------------------------------------------------------- #

CODES, MASK_ID = 12, 12
EMPTY = "the empty prompt"                              # the toy model's unconditional input


def wanted_tokens(batch, num_tokens, condition):
    """The code a toy model is sure of at each position, for a condition (a small int)."""
    return (np.arange(num_tokens)[None] * 5 + np.arange(batch)[:, None] + condition) % CODES


def toy_model(tokens, condition):
    """Logits (B, N, K): 1000 on the wanted code under an int condition, flat under EMPTY."""
    logits = np.zeros(tokens.shape + (CODES,), np.float32)
    if condition is not EMPTY:
        rows, cols = np.indices(tokens.shape)
        logits[rows, cols, wanted_tokens(*tokens.shape, condition)] = 1000.0
    return logits


def one_step(tokens, settings_, region=None, seed=0, **options):
    return mask_free_edit_step(toy_model, tokens, 3, mask_id=MASK_ID, settings=settings_,
                               region=region, generator=backend.Generator(seed), **options)


STEP = Sampling(steps=1, temperature=1.0, choice_temperature=0.0, guidance_scale=0.0,
                fraction=0.08)


def test_ch09_ex4_resamples_a_fraction_of_each_row_and_keeps_every_other_token():
    batch, num_tokens = 3, 40
    wanted = wanted_tokens(batch, num_tokens, 3)
    tokens = (wanted + 1) % CODES                       # every token disagrees with the model
    before = tokens.copy()
    for fraction in (0.08, 0.3, 1.0):
        step = one_step(tokens, STEP.replace(fraction=fraction), seed=1)
        resampled = np.asarray(step.mask)
        assert resampled.shape == tokens.shape and resampled.dtype == bool
        np.testing.assert_array_equal(resampled.sum(axis=1),
                                      [math.ceil(fraction * num_tokens)] * batch)
        new = np.asarray(step.tokens)
        np.testing.assert_array_equal(new[~resampled], tokens[~resampled])
        np.testing.assert_array_equal(new[resampled], wanted[resampled])   # the model's code
        np.testing.assert_array_equal(tokens, before)   # the caller's grid stays as it was


def test_ch09_ex4_stays_inside_the_region_and_counts_its_positions():
    batch, num_tokens = 4, 30
    region = np.random.default_rng(5).random((batch, num_tokens)) < 0.5
    region[:, 0] = True                                 # at least one position per row
    tokens = np.zeros((batch, num_tokens), np.int64)
    step = one_step(tokens, STEP.replace(fraction=0.25), region=region, seed=2)
    resampled = np.asarray(step.mask)
    assert not (resampled & ~region).any()
    np.testing.assert_array_equal(resampled.sum(axis=1),
                                  [math.ceil(0.25 * n) for n in region.sum(axis=1)])
    np.testing.assert_array_equal(np.asarray(step.tokens)[~resampled], 0)


def test_ch09_ex4_positions_are_random_but_seeded_and_guidance_is_passed_on():
    tokens = np.zeros((1, 10), np.int64)
    masks = [np.asarray(one_step(tokens, STEP.replace(fraction=0.2), seed=s).mask)[0]
             for s in range(40)]
    again = np.asarray(one_step(tokens, STEP.replace(fraction=0.2), seed=7).mask)[0]
    np.testing.assert_array_equal(again, masks[7])      # the same seed, the same positions
    assert all(np.stack(masks).any(axis=0))             # every position gets its turn
    assert len({m.tobytes() for m in masks}) > 10
    # Muse's settings: guidance 4 against a flat unconditional model, top-k 3, one step.
    muse = Sampling(steps=1, temperature=1.0, choice_temperature=0.0, guidance_scale=4.0,
                    top_k=3, fraction=0.5)
    step = one_step(tokens, muse, seed=3, uncond_condition=EMPTY)
    resampled = np.asarray(step.mask)
    assert resampled.sum() == 5
    np.testing.assert_array_equal(np.asarray(step.tokens)[resampled],
                                  wanted_tokens(1, 10, 3)[resampled])
