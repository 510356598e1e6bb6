"""Image-caption folders: what loads, what is skipped and why."""

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from tinymuse.data.folder import ImageCaptionFolder, load_square_image


def save(path, size=(40, 30), colour=(200, 30, 30), mode="RGB", fmt=None):
    Image.new(mode, size, colour).save(path, format=fmt)


def wide_test_card(path):
    """A 60x20 image: red left third, green middle third, blue right third."""
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20] = (255, 0, 0)
    pixels[:, 20:40] = (0, 255, 0)
    pixels[:, 40:] = (0, 0, 255)
    Image.fromarray(pixels).save(path)


def load_quietly(root, resolution=16):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = ImageCaptionFolder(root, resolution=resolution)
    return dataset, [str(w.message) for w in caught]


def test_metadata_jsonl_folder(tmp_path):
    save(tmp_path / "good.png")
    wide_test_card(tmp_path / "card.jpg")
    save(tmp_path / "photo.webp", fmt="WEBP")
    save(tmp_path / "empty.png")
    (tmp_path / "broken.png").write_bytes(b"this is not a png")
    save(tmp_path / "unlisted.png")
    lines = [
        {"file_name": "good.png", "text": "a red rectangle"},
        {"file_name": "card.jpg", "text": "  three stripes  "},
        {"file_name": "photo.webp", "text": "a webp"},
        {"file_name": "empty.png", "text": "   "},
        {"file_name": "broken.png", "text": "garbage"},
        {"file_name": "missing.png", "text": "nowhere"},
        {"file": "good.png"},
    ]
    text = "\n".join(json.dumps(line) for line in lines) + "\nnot json at all\n\n"
    (tmp_path / "metadata.jsonl").write_text(text)

    dataset, messages = load_quietly(tmp_path)

    assert len(dataset) == 3
    assert [dataset.caption(i) for i in range(3)] == ["a red rectangle", "three stripes", "a webp"]
    assert dataset.num_skipped == 5
    skipped = {path.name: reason for path, reason in dataset.skipped}
    assert "empty caption" in skipped["empty.png"]
    assert "unreadable" in skipped["broken.png"]
    assert "missing" in skipped["missing.png"]
    assert sum("metadata.jsonl line" in str(path) for path, _ in dataset.skipped) == 2
    for name in ("empty.png", "broken.png", "missing.png", "line 7", "line 8"):
        assert any(name in message for message in messages), name
    image, caption = dataset[0]
    assert caption == "a red rectangle"
    assert image.shape == (16, 16, 3) and image.dtype == np.uint8
    assert np.all(np.abs(image.astype(int) - (200, 30, 30)) <= 2)


def test_text_file_captions_and_center_crop(tmp_path):
    wide_test_card(tmp_path / "card.png")
    (tmp_path / "card.txt").write_text("stripes\n")
    (tmp_path / "sub").mkdir()
    save(tmp_path / "sub" / "nested.bmp")
    (tmp_path / "sub" / "nested.txt").write_text("a nested picture")
    save(tmp_path / "lonely.jpeg")  # no caption file
    save(tmp_path / "blank.png")
    (tmp_path / "blank.txt").write_text("\n")
    (tmp_path / "notes.md").write_text("not an image")

    dataset, messages = load_quietly(tmp_path, resolution=8)

    assert sorted(dataset.caption(i) for i in range(len(dataset))) == [
        "a nested picture",
        "stripes",
    ]
    assert sorted(path.name for path, _ in dataset.skipped) == ["blank.png", "lonely.jpeg"]
    assert any("lonely.jpeg" in m and "lonely.txt" in m for m in messages)
    card = dataset[[dataset.caption(i) for i in range(2)].index("stripes")][0]
    # The center square of a red|green|blue card is all green.
    assert card.shape == (8, 8, 3)
    assert np.all(card[:, :, 1] > 200) and np.all(card[:, :, 0] < 60) and np.all(card[:, :, 2] < 60)


def test_transparent_pixels_become_white(tmp_path):
    save(tmp_path / "clear.png", mode="RGBA", colour=(0, 0, 0, 0))
    image = load_square_image(tmp_path / "clear.png", 8)
    assert np.all(image == 255)


def test_a_folder_with_nothing_usable_is_an_error(tmp_path):
    save(tmp_path / "lonely.png")
    with (
        pytest.warns(UserWarning, match="lonely.png"),
        pytest.raises(ValueError, match="no usable image-caption pairs"),
    ):
        ImageCaptionFolder(tmp_path)
    with pytest.raises(FileNotFoundError):
        ImageCaptionFolder(tmp_path / "nope")
