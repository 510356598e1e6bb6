"""Minibatches: shuffled, seeded, and in the layout models read.

A :class:`DataLoader` walks a dataset (the shapes world, a folder, anything with ``len`` and
``dataset[i] -> (uint8 image [H, W, 3], caption)``) in batches. Each pass over the data is one
*epoch*; the order of epoch ``e`` is a permutation drawn from a generator seeded with
``(seed, e)``, so a run can be repeated exactly, and resumed with :meth:`DataLoader.set_epoch`.
"""

from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from .images import to_model_images


class Batch(NamedTuple):
    """``images``: float32 ``[B, 3, H, W]`` in [-1, 1]; ``captions``: ``B`` strings."""

    images: np.ndarray
    captions: list


class DataLoader:
    """Yields :class:`Batch` es of ``batch_size`` examples, one epoch per ``for`` loop.

    ``drop_last`` drops a final, smaller batch; ``progress`` shows a tqdm bar per epoch.
    """

    def __init__(self, dataset, batch_size, shuffle=True, seed=0, drop_last=False, progress=False):
        try:
            self.size = len(dataset)
        except TypeError as error:
            raise ValueError(f"a DataLoader needs a dataset with a length: {error}") from None
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.dataset = dataset
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.progress = progress
        self.epoch = 0

    def __len__(self):
        """Batches per epoch."""
        if self.drop_last:
            return self.size // self.batch_size
        return (self.size + self.batch_size - 1) // self.batch_size

    def set_epoch(self, epoch):
        """Make the next ``for`` loop run epoch ``epoch`` (to resume a run)."""
        self.epoch = int(epoch)

    def order(self, epoch):
        """The example indices of ``epoch``, in the order they are served."""
        if not self.shuffle:
            return np.arange(self.size)
        return np.random.default_rng([self.seed, epoch]).permutation(self.size)

    def __iter__(self):
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = self.order(epoch)
        bar = tqdm(total=len(self), desc=f"epoch {epoch}", disable=not self.progress, leave=False)
        with bar:
            for start in range(0, len(self) * self.batch_size, self.batch_size):
                indices = order[start : start + self.batch_size]
                examples = [self.dataset[int(i)] for i in indices]
                images = to_model_images(np.stack([image for image, _ in examples]))
                yield Batch(images, [caption for _, caption in examples])
                bar.update(1)
