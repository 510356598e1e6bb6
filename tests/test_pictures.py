"""Users' picture files: every kind of odd or bad file comes out as uint8 RGB or as a one-line
error naming the file; PNGs remember their parameters; grids carry labels."""
import struct
import warnings
import zlib

import numpy as np
import pytest
from PIL import Image

from tinymuse.data import (ImageCaptionFolder, PictureError, encode_grid_png, encode_png,
                           image_grid, load_square_image, read_picture, read_png_parameters,
                           save_image_grid)
from tinymuse.data.images import MAX_PICTURE_PIXELS
from tinymuse.editing import load_images, load_pixel_mask

SIGNATURE = b"\x89PNG\r\n\x1a\n"


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def handmade_png(width, height, bit_depth, colour_type, pixels: bytes | None = None) -> bytes:
    """A PNG written byte by byte; ``pixels`` are the raw rows (big-endian samples), each
    prefixed here with filter 0. Without pixels the header alone claims the size."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    body = b""
    if pixels is not None:
        row = len(pixels) // height
        raw = b"".join(b"\0" + pixels[y * row:(y + 1) * row] for y in range(height))
        body = chunk(b"IDAT", zlib.compress(raw))
    return SIGNATURE + chunk(b"IHDR", header) + body + chunk(b"IEND", b"")


def sixteen_bit_png(path, samples: np.ndarray, colour_type: int):
    """``samples`` (H, W) or (H, W, C) of uint16, written as a 16-bit PNG by hand."""
    height, width = samples.shape[:2]
    path.write_bytes(handmade_png(width, height, 16, colour_type,
                                  samples.astype(">u2").tobytes()))


def round_to_8_bits(values):
    """value / 257, rounded, in integers only: (2v + 257) // 514."""
    return ((values.astype(np.int64) * 2 + 257) // 514).astype(np.uint8)


GRADIENT = np.array([0, 1, 128, 129, 385, 386, 257 * 100 + 128, 257 * 100 + 129, 32767,
                     32768, 65278, 65407, 65408, 65534, 65535], dtype=np.uint16)


def assert_one_line_naming(error, path):
    message = str(error.value)
    assert path.name in message and "\n" not in message


# ------------------------------------------------------------------ deep pictures


def test_16_bit_grey_is_scaled_to_8_bits_not_clipped(tmp_path):
    samples = np.stack([GRADIENT, GRADIENT[::-1]])
    sixteen_bit_png(tmp_path / "grey16.png", samples, colour_type=0)
    picture = read_picture(tmp_path / "grey16.png")
    assert picture.dtype == np.uint8 and picture.shape == (2, len(GRADIENT), 3)
    expected = round_to_8_bits(samples)
    for channel in range(3):
        np.testing.assert_array_equal(picture[..., channel], expected)


def test_16_bit_grey_saved_by_pillow_and_in_other_containers(tmp_path):
    samples = np.stack([GRADIENT, GRADIENT])
    expected = round_to_8_bits(samples)
    Image.fromarray(samples).save(tmp_path / "pillow16.png")  # mode I;16
    big_endian = samples.astype(">u2").tobytes()  # (Pillow's convert("I;16B") clips to 255)
    Image.frombytes("I;16B", samples.shape[::-1], big_endian).save(tmp_path / "big_endian.tif")
    Image.fromarray(samples).save(tmp_path / "netpbm.pgm")  # opens as mode I
    Image.fromarray(samples.astype(np.int32)).save(tmp_path / "int32.tif")
    for name in ("pillow16.png", "big_endian.tif", "netpbm.pgm", "int32.tif"):
        np.testing.assert_array_equal(read_picture(tmp_path / name)[..., 1], expected, name)


def test_float_pictures_in_0_1_are_scaled_by_255(tmp_path):
    values = np.array([[0.0, 0.25, 0.5, 0.999, 1.0]], dtype=np.float32)
    Image.fromarray(values).save(tmp_path / "float.tif")
    picture = read_picture(tmp_path / "float.tif")
    np.testing.assert_array_equal(picture[0, :, 2], [0, 64, 128, 255, 255])


@pytest.mark.parametrize("values", [np.array([[0, 70000]], np.int32),
                                    np.array([[-5, 100]], np.int32),
                                    np.array([[0.0, 3.5]], np.float32),
                                    np.array([[0.0, np.nan]], np.float32)])
def test_deep_values_out_of_any_sensible_range_are_an_error(tmp_path, values):
    path = tmp_path / "odd.tif"
    Image.fromarray(values).save(path)
    with pytest.raises(PictureError) as error:
        read_picture(path)
    assert_one_line_naming(error, path)


def test_16_bit_colour_pngs_come_out_within_one_level(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 65536, (5, 7, 3)).astype(np.uint16)
    rgb[0, :len(GRADIENT[:7])] = GRADIENT[:7, None]
    sixteen_bit_png(tmp_path / "rgb48.png", rgb, colour_type=2)
    picture = read_picture(tmp_path / "rgb48.png")
    assert picture.dtype == np.uint8 and picture.shape == (5, 7, 3)
    difference = picture.astype(int) - round_to_8_bits(rgb).astype(int)
    assert np.abs(difference).max() <= 1


def test_16_bit_colour_with_alpha_is_composited_onto_white(tmp_path):
    rgba = np.zeros((2, 2, 4), np.uint16)
    rgba[0, 0] = (65535, 0, 0, 65535)  # opaque red
    rgba[0, 1] = (0, 0, 65535, 0)  # fully transparent blue
    sixteen_bit_png(tmp_path / "rgba64.png", rgba, colour_type=6)
    picture = read_picture(tmp_path / "rgba64.png").astype(int)
    np.testing.assert_array_equal(picture[0, 0], (255, 0, 0))
    np.testing.assert_array_equal(picture[0, 1], (255, 255, 255))


# ------------------------------------------------------------------ every 8-bit mode


def test_every_mode_comes_out_as_uint8_rgb(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([200, 10, 30, 5, 90, 250] + [0] * 762)
    palette.putpixel((1, 0), 1)
    rgba = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    rgba.putpixel((1, 0), (0, 0, 0, 128))
    cases = {
        "grey.png": (Image.new("L", (2, 1), 77), [(77, 77, 77)] * 2),
        "palette.png": (palette, [(200, 10, 30), (5, 90, 250)]),
        "rgba.png": (rgba, [(255, 255, 255), (127, 127, 127)]),
        "grey_alpha.png": (Image.new("LA", (2, 1), (0, 0)), [(255, 255, 255)] * 2),
        "bits.png": (Image.new("1", (2, 1), 1), [(255, 255, 255)] * 2),
        "cyan.tif": (Image.new("CMYK", (2, 1), (255, 0, 0, 0)), [(0, 255, 255)] * 2),
    }
    for name, (image, expected) in cases.items():
        image.save(tmp_path / name)
        picture = read_picture(tmp_path / name)
        assert picture.dtype == np.uint8 and picture.shape == (1, 2, 3), name
        assert np.abs(picture[0].astype(int) - expected).max() <= 1, name


def test_a_transparent_palette_entry_becomes_white(tmp_path):
    image = Image.new("P", (2, 1))
    image.putpalette([0, 0, 0, 10, 200, 10] + [0] * 762)
    image.putpixel((1, 0), 1)
    image.save(tmp_path / "clear.png", transparency=0)
    np.testing.assert_array_equal(read_picture(tmp_path / "clear.png")[0],
                                  [(255, 255, 255), (10, 200, 10)])


def test_sideways_photos_are_turned_upright(tmp_path):
    image = Image.new("RGB", (30, 20), (250, 250, 250))
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90° clockwise to view"
    image.save(tmp_path / "sideways.jpg", exif=exif)
    assert read_picture(tmp_path / "sideways.jpg").shape == (30, 20, 3)


# ------------------------------------------------------------------ bad files


@pytest.mark.parametrize("width, height", [(14000, 14000), (5000, 5000),
                                           (MAX_PICTURE_PIXELS + 1, 1)])
def test_huge_pictures_are_refused_before_decoding(tmp_path, width, height):
    path = tmp_path / "huge.png"
    path.write_bytes(handmade_png(width, height, 1, 0))  # a header, and no pixels at all
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nor a DecompressionBombWarning on the way
        with pytest.raises(PictureError) as error:
            read_picture(path)
    assert_one_line_naming(error, path)
    assert str(width) in str(error.value)


def test_a_big_jpeg_still_loads_when_it_can_decode_small(tmp_path):
    path = tmp_path / "photo.jpg"
    Image.new("L", (6000, 3000), 90).save(path)  # over the bound in full
    with pytest.raises(PictureError):
        read_picture(path)
    square = load_square_image(path, 16)
    assert square.shape == (16, 16, 3) and np.all(np.abs(square.astype(int) - 90) <= 2)


def valid_noisy_png(path, size=48):
    noise = np.random.default_rng(1).integers(0, 256, (size, size, 3), dtype=np.uint8)
    Image.fromarray(noise).save(path)
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0.5, 0.9, 20])
def test_truncated_pngs_are_one_line_errors_naming_the_file(tmp_path, keep):
    data = valid_noisy_png(tmp_path / "whole.png")
    path = tmp_path / "cut.png"
    path.write_bytes(data[:keep if isinstance(keep, int) else int(len(data) * keep)])
    with pytest.raises(PictureError) as error:
        read_picture(path)
    assert_one_line_naming(error, path)
    with pytest.raises(PictureError) as error:
        load_pixel_mask(path, 48, 1)
    assert_one_line_naming(error, path)
    with pytest.raises(PictureError) as error:
        load_images(path, 48)
    assert_one_line_naming(error, path)


def test_a_file_that_is_no_picture_is_a_one_line_error(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is a shopping list, not a picture\n")
    for read in (read_picture, read_png_parameters, lambda p: load_square_image(p, 8)):
        with pytest.raises(PictureError) as error:
            read(path)
        assert_one_line_naming(error, path)


def test_a_missing_file_names_itself(tmp_path):
    with pytest.raises(FileNotFoundError, match="nowhere.png"):
        read_picture(tmp_path / "nowhere.png")


def test_a_16_bit_mask_paints_white_as_replace(tmp_path):
    samples = np.zeros((8, 8), np.uint16)
    samples[2:5, 3:7] = 65535
    samples[6, 6] = 20000  # darker than half: kept
    sixteen_bit_png(tmp_path / "mask16.png", samples, colour_type=0)
    np.testing.assert_array_equal(load_pixel_mask(tmp_path / "mask16.png", 8, 1)[0],
                                  samples > 32768)


def test_a_mask_painted_on_a_transparent_layer_replaces_only_the_paint(tmp_path):
    layer = np.zeros((8, 8, 4), np.uint8)  # fully transparent black, as editors save them
    layer[1:3, 2:6] = (255, 255, 255, 255)  # white paint
    Image.fromarray(layer, "RGBA").save(tmp_path / "layer.png")
    expected = np.zeros((8, 8), bool)
    expected[1:3, 2:6] = True
    np.testing.assert_array_equal(load_pixel_mask(tmp_path / "layer.png", 8, 1)[0], expected)
    # the same file as a picture is printed on white
    assert (read_picture(tmp_path / "layer.png")[5, 5] == 255).all()


def test_the_folder_dataset_skips_bad_files_and_reads_deep_ones(tmp_path):
    sixteen_bit_png(tmp_path / "deep.png", np.full((8, 8), 257 * 200, np.uint16), 0)
    data = valid_noisy_png(tmp_path / "whole.png")
    (tmp_path / "whole.png").unlink()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "huge.png").write_bytes(handmade_png(14000, 14000, 1, 0))
    for name in ("deep", "cut", "huge"):
        (tmp_path / f"{name}.txt").write_text(f"the {name} one")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageCaptionFolder(tmp_path, resolution=8)
    assert sorted(path.name for path, _ in dataset.skipped) == ["cut.png", "huge.png"]
    assert any("cut.png" in str(w.message) for w in caught)
    image, caption = dataset[0]
    assert caption == "the deep one" and np.all(image == 200)


# ------------------------------------------------------------------ PNG parameters


PARAMETERS = {"prompt": "a red circle, über 🎨 ünïcödé", "negative_prompt": "blue",
              "seed": 3, "steps": 24, "guidance_scale": 4.5, "nested": {"top_k": [1, 2]},
              "none": None, "flag": True}


def test_png_parameters_round_trip(tmp_path):
    picture = np.random.default_rng(2).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    path = tmp_path / "made.png"
    path.write_bytes(encode_png(picture, PARAMETERS))
    assert read_png_parameters(path) == PARAMETERS
    np.testing.assert_array_equal(read_picture(path), picture)
    with Image.open(path) as image:  # a readable summary for other tools
        summary = image.info["parameters"]
    assert summary.splitlines()[0] == PARAMETERS["prompt"] and "24" in summary


def test_pngs_without_parameters(tmp_path):
    picture = np.zeros((4, 4, 3), np.uint8)
    (tmp_path / "plain.png").write_bytes(encode_png(picture))
    Image.fromarray(picture).save(tmp_path / "pillow.png")
    assert (tmp_path / "plain.png").read_bytes() == (tmp_path / "pillow.png").read_bytes()
    Image.fromarray(picture).save(tmp_path / "photo.jpg")
    for name in ("plain.png", "photo.jpg"):
        assert read_png_parameters(tmp_path / name) == {}


def test_parameters_that_are_not_tinymuse_json_are_an_error(tmp_path):
    from PIL import PngImagePlugin

    for text in ("{not json", "[1, 2]"):
        info = PngImagePlugin.PngInfo()
        info.add_text("tinymuse", text)
        path = tmp_path / "edited.png"
        Image.new("RGB", (2, 2)).save(path, pnginfo=info)
        with pytest.raises(PictureError) as error:
            read_png_parameters(path)
        assert_one_line_naming(error, path)


def test_encode_png_refuses_what_it_cannot_write():
    with pytest.raises(ValueError):
        encode_png(np.zeros((3, 4, 4), np.float32))
    with pytest.raises(TypeError):
        encode_png(np.zeros((4, 4, 3), np.uint8), {"seed": object()})
    with pytest.raises(TypeError):
        encode_png(np.zeros((4, 4, 3), np.uint8), ["not", "a", "dict"])


# ------------------------------------------------------------------ grids and labels


def cells(count=5, height=12, width=40, seed=3):
    # saturated colours only, so that no cell pixel is white
    return np.random.default_rng(seed).integers(0, 200, (count, height, width, 3),
                                                dtype=np.uint8)


def test_an_unlabelled_grid_places_cells_at_their_offsets():
    images = cells(5)
    padding, ncol = 3, 2
    grid = image_grid(images, nrow=ncol, padding=padding)
    h, w = images.shape[1:3]
    assert grid.shape == (3 * h + 4 * padding, 2 * w + 3 * padding, 3)
    covered = np.zeros(grid.shape[:2], bool)
    for i, image in enumerate(images):
        top, left = padding + (i // ncol) * (h + padding), padding + (i % ncol) * (w + padding)
        np.testing.assert_array_equal(grid[top:top + h, left:left + w], image)
        covered[top:top + h, left:left + w] = True
    assert np.all(grid[~covered] == 255)


def test_labels_are_drawn_in_a_strip_under_each_cell():
    images = cells(3)
    h, w = images.shape[1:3]
    labels = ["a red circle", None, ("two small blue squares to the left of a yellow "
                                     "triangle on a black background, again and again")]
    grid = image_grid(images, nrow=3, padding=2, labels=labels)
    plain = image_grid(images, nrow=3, padding=2)
    strip = grid.shape[0] - plain.shape[0]
    assert strip > 0 and grid.shape[1] == plain.shape[1]
    for i, label in enumerate(labels):
        left = 2 + i * (w + 2)
        np.testing.assert_array_equal(grid[2:2 + h, left:left + w], images[i])
        below = grid[2 + h:2 + h + strip, left:left + w]
        inked = (below < 128).any(axis=-1)
        assert inked.any() == (label is not None), i
    # the long label wraps onto a second line, and no text spills out of its cell
    long = (grid[2 + h:2 + h + strip, 2 + 2 * (w + 2):2 + 3 * w + 4] < 128).any(axis=(1, 2))
    assert long[: strip // 2].any() and long[strip // 2:].any()
    gaps = [2 + i * (w + 2) - 2 for i in range(4)]
    for gap in gaps:
        assert np.all(grid[:, gap:gap + 2] == 255)


def test_labels_must_match_the_images():
    with pytest.raises(ValueError):
        image_grid(cells(3), labels=["one", "two"])
    with pytest.raises(ValueError):
        image_grid(cells(3), labels="one for all")


def test_a_grid_png_with_labels_and_parameters(tmp_path):
    images = cells(4)
    data = encode_grid_png(images, nrow=2, scale=2, labels=list("abcd"), parameters={"seed": 7})
    (tmp_path / "grid.png").write_bytes(data)
    assert read_png_parameters(tmp_path / "grid.png") == {"seed": 7}
    expected = image_grid(images, nrow=2, scale=2, labels=list("abcd"))
    np.testing.assert_array_equal(read_picture(tmp_path / "grid.png"), expected)
    saved = save_image_grid(images, tmp_path / "out" / "saved.png", nrow=2, scale=2,
                            labels=list("abcd"), parameters={"seed": 7})
    assert (tmp_path / "out" / "saved.png").read_bytes() == data
    np.testing.assert_array_equal(saved, expected)
    with pytest.raises(ValueError):
        save_image_grid(images, tmp_path / "grid.jpg", parameters={"seed": 7})
