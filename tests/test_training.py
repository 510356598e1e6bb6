"""End to end: layers + autograd + optimizer actually learn.

Each model is tiny and trains for at most a hundred steps, so each test takes
under a few seconds on two CPU cores.
"""
import math

import numpy as np

from tinymuse import backend, nn
from tinymuse import functional as F
from tinymuse.optim import AdamW, WarmupCosine, clip_grad_norm, weight_decay_groups
from tinymuse.tensor import Tensor


def fit(model, optimizer, loss_fn, steps, scheduler=None):
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = loss_fn()
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.item())
    return losses


def test_mlp_memorises_a_fixed_batch():
    g = backend.Generator(0)
    x = g.normal((32, 8))
    labels = g.integers(0, 4, (32,))              # random labels: pure memorisation
    model = nn.Sequential(nn.Linear(8, 64, generator=g), nn.GELU(),
                          nn.Linear(64, 64, generator=g), nn.GELU(),
                          nn.Linear(64, 4, generator=g))
    optimizer = AdamW(weight_decay_groups(model, 0.0), lr=1e-2)
    losses = fit(model, optimizer, lambda: F.cross_entropy(model(x), labels), 100)
    # Start: about ln 4 ≈ 1.39 (uniform guesses). 5,000 parameters for 32 points
    # can fit any labelling, so a loss under 0.05 (≥ 95% probability on every
    # right label, on average) is a fair bar for "it learns".
    assert abs(losses[0] - math.log(4)) < 0.3
    assert losses[-1] < 0.05, losses[-10:]


class TinyTransformer(nn.Module):
    def __init__(self, vocab, length, dim, heads, layers, g):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim, generator=g)
        self.position = nn.Parameter(g.normal((length, dim), std=0.1))
        self.blocks = nn.ModuleList([nn.TransformerBlock(dim, heads, generator=g)
                                     for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab, generator=g)

    def forward(self, ids):
        x = self.embed(ids) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def test_transformer_memorises_reversal_of_a_fixed_batch():
    g = backend.Generator(1)
    vocab, length = 10, 6
    ids = g.integers(0, vocab, (8, length))
    targets = ids[:, ::-1].copy()                   # output position t = input position T−1−t
    model = TinyTransformer(vocab, length, dim=32, heads=4, layers=2, g=g)
    optimizer = AdamW(weight_decay_groups(model, 0.01), lr=3e-3)
    scheduler = WarmupCosine(optimizer, warmup_steps=10, total_steps=200, min_lr_ratio=0.1)
    losses = fit(model, optimizer, lambda: F.cross_entropy(model(ids), targets), 100, scheduler)
    # Start: about ln 10 ≈ 2.3. Reversal needs attention to move information
    # between positions (the MLP sees one token at a time), and 48 targets are
    # easily memorised by 26k parameters: a loss under 0.1 means nearly every
    # target token gets probability > 0.9.
    assert losses[-1] < 0.1, losses[-10:]
    predictions = model(ids).numpy().argmax(-1)
    np.testing.assert_array_equal(predictions, targets)


def bright_side_images(g, n, size=8):
    """Noisy images with a bright 3×3 square somewhere in the left half
    (label 0) or the right half (label 1)."""
    labels = g.integers(0, 2, (n,))
    images = g.normal((n, 1, size, size), std=0.3)
    rows = g.integers(0, size - 2, (n,))
    cols = g.integers(0, size // 2 - 2, (n,)) + labels * (size // 2)
    for i in range(n):
        images[i, 0, rows[i]:rows[i] + 3, cols[i]:cols[i] + 3] += 1.5
    return images, labels


class TinyCNN(nn.Module):
    def __init__(self, g):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1, generator=g)
        self.norm = nn.GroupNorm(2, 8)
        self.act = nn.SiLU()
        self.conv2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, generator=g)
        self.head = nn.Linear(8 * 4 * 4, 2, generator=g)

    def forward(self, x):
        x = self.act(self.norm(self.conv1(x)))
        x = F.relu(self.conv2(x))
        return self.head(x.reshape(x.shape[0], -1))


def test_cnn_learns_which_side_is_bright():
    g = backend.Generator(2)
    model = TinyCNN(g)
    optimizer = AdamW(weight_decay_groups(model, 0.01), lr=3e-3)
    for _ in range(60):                               # a fresh batch every step
        images, labels = bright_side_images(g, 32)
        optimizer.zero_grad()
        F.cross_entropy(model(Tensor(images)), labels).backward()
        optimizer.step()
    images, labels = bright_side_images(backend.Generator(99), 200)  # unseen images
    model.eval()
    accuracy = float(np.mean(model(Tensor(images)).numpy().argmax(-1) == labels))
    # Chance is 50%. The square adds 1.5 over nine pixels against noise of
    # 0.3, so the two classes barely overlap: a model that has learnt the task
    # (not memorised batches: every image is new) should exceed 95%.
    assert accuracy > 0.95, accuracy
