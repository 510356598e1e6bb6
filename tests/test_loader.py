"""Batching, image layouts, sample grids and the token cache."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from tinymuse.data.grid import image_grid, save_image_grid
from tinymuse.data.images import to_model_images, to_uint8_images
from tinymuse.data.loader import DataLoader
from tinymuse.data.shapes import ShapesDataset
from tinymuse.data.token_cache import (
    encode_dataset_captions,
    load_token_cache,
    save_token_cache,
)


class Numbered:
    """A tiny dataset whose i-th image is filled with the value i, for checking order."""

    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return np.full((4, 4, 3), i, dtype=np.uint8), f"item {i}"


def served(loader):
    return [int(c.split()[1]) for batch in loader for c in batch.captions]


def test_batches_are_nchw_floats_in_range_with_captions():
    dataset = ShapesDataset(resolution=32, length=10)
    batches = list(DataLoader(dataset, batch_size=4, seed=1))
    assert [len(b.captions) for b in batches] == [4, 4, 2]
    images, captions = batches[0]
    assert images.shape == (4, 3, 32, 32) and images.dtype == np.float32
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.min() < -0.5 and images.max() > 0.5
    index = int(np.nonzero([dataset.caption(i) == captions[0] for i in range(10)])[0][0])
    np.testing.assert_allclose(images[0], to_model_images(dataset[index][0])[0])


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 40), batch_size=st.integers(1, 12), seed=st.integers(0, 1000))
def test_every_epoch_serves_each_example_once(n, batch_size, seed):
    loader = DataLoader(Numbered(n), batch_size=batch_size, seed=seed)
    first, second = served(loader), served(loader)
    assert sorted(first) == sorted(second) == list(range(n))
    assert len(list(loader)) == len(loader)
    dropped = DataLoader(Numbered(n), batch_size=batch_size, drop_last=True)
    assert len(served(dropped)) == (n // batch_size) * batch_size


def test_shuffling_is_seeded_and_changes_each_epoch():
    a, b = DataLoader(Numbered(50), 7, seed=3), DataLoader(Numbered(50), 7, seed=3)
    epoch0, epoch1 = served(a), served(a)
    assert served(b) == epoch0 and served(b) == epoch1
    assert epoch0 != epoch1 and epoch0 != list(range(50))
    assert served(DataLoader(Numbered(50), 7, seed=4)) != epoch0
    assert served(DataLoader(Numbered(50), 7, shuffle=False)) == list(range(50))
    resumed = DataLoader(Numbered(50), 7, seed=3)
    resumed.set_epoch(1)
    assert served(resumed) == epoch1


def test_a_loader_needs_a_finite_dataset():
    with pytest.raises(ValueError, match="length"):
        DataLoader(ShapesDataset(), batch_size=4)


def test_progress_bar_goes_to_stderr(capsys):
    list(DataLoader(Numbered(6), batch_size=2, progress=True))
    assert "epoch 0" in capsys.readouterr().err


def test_image_layouts_round_trip():
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (3, 5, 6, 3), dtype=np.uint8)
    floats = to_model_images(pixels)
    assert floats.shape == (3, 3, 5, 6)
    np.testing.assert_array_equal(to_uint8_images(floats), pixels)
    np.testing.assert_array_equal(to_uint8_images(list(pixels)), pixels)
    assert to_uint8_images(np.full((1, 3, 2, 2), 7.0))[0, 0, 0, 0] == 255  # clipped
    with pytest.raises(ValueError, match="uint8"):
        to_model_images(pixels.astype(np.float32))


def test_grid_tiles_images_in_rows(tmp_path):
    images = np.stack([np.full((4, 4, 3), 10 * i, dtype=np.uint8) for i in range(5)])
    grid = save_image_grid(images, tmp_path / "out" / "grid.png", nrow=3, padding=1)
    assert grid.shape == (2 * 4 + 3, 3 * 4 + 4, 3)
    assert grid[1, 1, 0] == 0 and grid[1, 6, 0] == 10 and grid[6, 1, 0] == 30
    assert grid[6, 11, 0] == 255  # the empty sixth cell stays padding
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out" / "grid.png")), grid)
    scaled = image_grid(to_model_images(images), nrow=5, padding=0, scale=2)
    assert scaled.shape == (8, 40, 3)


def test_token_cache_round_trips(tmp_path):
    class FakeTokenizer:
        def encode_batch(self, captions, max_length):
            ids = np.zeros((len(captions), max_length), np.int32)
            mask = np.zeros((len(captions), max_length), bool)
            for row, caption in enumerate(captions):
                n = min(len(caption.split()), max_length)
                ids[row, :n] = np.arange(1, n + 1)
                mask[row, :n] = True
            return ids, mask

    dataset = ShapesDataset(resolution=16, length=9)
    cache = encode_dataset_captions(
        dataset, FakeTokenizer(), max_length=6, batch_size=4, progress=False
    )
    assert cache.ids.shape == (9, 6) and len(cache) == 9
    assert cache.captions == [dataset.caption(i) for i in range(9)]
    path = save_token_cache(tmp_path / "tokens.safetensors", cache.ids, cache.mask, cache.captions)
    loaded = load_token_cache(path)
    np.testing.assert_array_equal(loaded.ids, cache.ids)
    np.testing.assert_array_equal(loaded.mask, cache.mask)
    assert loaded.mask.dtype == bool and loaded.captions == cache.captions
    with pytest.raises(ValueError, match="N captions"):
        save_token_cache(tmp_path / "bad.safetensors", cache.ids, cache.mask, cache.captions[:3])
