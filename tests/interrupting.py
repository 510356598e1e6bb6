"""A dataset that stops a training run part-way, as if the process were killed."""


class Interrupted(Exception):
    pass


class InterruptingDataset:
    """``dataset``, but reading more than ``limit`` examples raises :class:`Interrupted`;
    ``reads`` counts what was read (a huge ``limit`` makes it a plain counter)."""

    def __init__(self, dataset, limit):
        self.dataset, self.limit, self.reads = dataset, limit, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads > self.limit:
            raise Interrupted
        return self.dataset[index]
