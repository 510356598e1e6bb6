"""Checkpoints: exact round trips, clear refusals, atomic writes, exact resumes."""
import dataclasses
import json
import os
import pickle
import stat

import numpy as np
import pytest

import tinymuse as tm
from tinymuse import backend, checkpoint, nn
from tinymuse import functional as F
from tinymuse.checkpoint import CheckpointError
from tinymuse.optim import AdamW, WarmupCosine, clip_grad_norm, weight_decay_groups


@dataclasses.dataclass
class TinyConfig:
    vocab: int = 12
    dim: int = 16
    heads: int = 2
    length: int = 6
    dropout: float = 0.1


class TinyLM(nn.Module):
    """Embedding + learned positions + one transformer block + head."""

    def __init__(self, config: TinyConfig, seed: int = 0):
        super().__init__()
        g = backend.Generator(seed)
        self.embed = nn.Embedding(config.vocab, config.dim, generator=g)
        self.position = nn.Parameter(g.normal((config.length, config.dim), std=0.1))
        self.block = nn.TransformerBlock(config.dim, config.heads, dropout=config.dropout,
                                         generator=g)
        self.norm = nn.LayerNorm(config.dim)
        self.head = nn.Linear(config.dim, config.vocab, generator=g)

    def forward(self, ids):
        return self.head(self.norm(self.block(self.embed(ids) + self.position)))


def outputs(model, ids):
    model.eval()
    return model(ids).numpy()


@pytest.fixture
def ids():
    return backend.Generator(7).integers(0, 12, (3, 6))


# ---------------------------------------------------------------- weights
def test_save_load_gives_bit_identical_outputs(tmp_path, ids, device):
    config = TinyConfig()
    model = TinyLM(config, seed=0).to(device)
    path = checkpoint.save(tmp_path / "model.safetensors", model.state_dict(), config,
                           {"note": "first"})
    fresh = TinyLM(config, seed=1).to(device)  # same device: same kernels, same rounding
    ids = backend.to_device(ids, device)
    assert not np.array_equal(outputs(fresh, ids), outputs(model, ids))
    loaded = checkpoint.load(path, model=fresh, config=config)
    np.testing.assert_array_equal(outputs(fresh, ids), outputs(model, ids))
    assert loaded.config == dataclasses.asdict(config)
    assert loaded.metadata == {"note": "first"}
    assert all(a.dtype == np.float32 for a in loaded.tensors.values())


def test_load_refuses_a_model_it_does_not_fit(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", TinyLM(TinyConfig()).state_dict())
    with pytest.raises(CheckpointError) as error:
        checkpoint.load(path, model=TinyLM(TinyConfig(dim=8)))
    message = str(error.value)
    assert str(path) in message and "embed.weight: checkpoint (12, 16) vs model (12, 8)" in message

    class Bigger(TinyLM):
        def __init__(self):
            super().__init__(TinyConfig())
            self.extra = nn.Linear(2, 2)

    with pytest.raises(CheckpointError, match=r"missing keys.*extra\.weight"):
        checkpoint.load(path, model=Bigger())
    state = TinyLM(TinyConfig()).state_dict()
    state["old.weight"] = np.zeros(2, np.float32)
    path = checkpoint.save(tmp_path / "old.safetensors", state)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*old\.weight"):
        checkpoint.load(path, model=TinyLM(TinyConfig()))


def test_load_refuses_a_different_config(tmp_path):
    path = checkpoint.save(tmp_path / "m.safetensors", {"w": np.zeros(2)}, TinyConfig())
    checkpoint.load(path, config=TinyConfig())
    with pytest.raises(CheckpointError, match=r"heads: file has 2, expected 4"):
        checkpoint.load(path, config=TinyConfig(heads=4))
    with pytest.raises(TypeError, match="JSON"):
        checkpoint.save(tmp_path / "bad.safetensors", {}, {"fn": print})


@pytest.fixture
def saved(tmp_path):
    return checkpoint.save(tmp_path / "m.safetensors", TinyLM(TinyConfig()).state_dict(),
                           TinyConfig())


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        checkpoint.load(tmp_path / "nope.safetensors")
    with pytest.raises(CheckpointError, match="directory"):
        checkpoint.load(tmp_path)


@pytest.mark.parametrize("keep", [0, 5, 100, -1, -100])
def test_truncated_file(saved, keep):
    data = saved.read_bytes()
    saved.write_bytes(data[:keep] if keep >= 0 else data[:len(data) + keep])
    with pytest.raises(CheckpointError, match="truncated") as error:
        checkpoint.load(saved)
    assert str(saved) in str(error.value)


def test_corrupt_tensor_bytes_are_caught_by_the_checksum(saved):
    data = bytearray(saved.read_bytes())
    data[-7] ^= 0x40                      # one flipped bit in the last tensor
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        checkpoint.load(saved)


def test_corrupt_header(saved):
    data = bytearray(saved.read_bytes())
    data[8:20] = b"#" * 12                # garbage in the JSON header
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        checkpoint.load(saved)


def test_not_a_safetensors_file(tmp_path):
    text = tmp_path / "notes.safetensors"
    text.write_text("these are not weights\n" * 10)
    with pytest.raises(CheckpointError, match="not a .safetensors file"):
        checkpoint.load(text)


class _Payload:
    """A pickle that runs code when unpickled: the reason never to use pickle."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickle_is_refused_and_never_executed(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(_Payload(str(marker))))
    with pytest.raises(CheckpointError):
        checkpoint.load(evil)
    assert not marker.exists()


# ----------------------------------------------------------- atomic writes
def test_failed_rename_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "m.safetensors", {"w": np.ones(3, np.float32)})

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, {"w": np.zeros(3, np.float32)})
    monkeypatch.undo()
    np.testing.assert_array_equal(checkpoint.load(path).tensors["w"], 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]  # no temp file left


def test_crash_mid_write_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    path = checkpoint.save(tmp_path / "m.safetensors", {"w": np.ones(1000, np.float32)})
    real_save_file = checkpoint.safetensors_numpy.save_file

    def crashing_save_file(tensors, filename, metadata=None):
        real_save_file(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as f:  # leave a half-written file behind, then die
            f.truncate(os.path.getsize(filename) // 2)
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.safetensors_numpy, "save_file", crashing_save_file)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {"w": np.zeros(1000, np.float32)})
    monkeypatch.undo()
    np.testing.assert_array_equal(checkpoint.load(path).tensors["w"], 1)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.safetensors"]


def test_the_file_is_plain_safetensors_with_json_metadata(saved):
    data = saved.read_bytes()
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_length])
    meta = header["__metadata__"]
    assert json.loads(meta["config"]) == dataclasses.asdict(TinyConfig())
    assert meta["format"] == checkpoint.FORMAT and len(meta["sha256"]) == 64


# ----------------------------------------------------------- training state
def train(model, optimizer, scheduler, data, steps, config):
    losses = []
    model.train()
    for _ in range(steps):
        ids = data.integers(0, config.vocab, (4, config.length))
        targets = (ids + 1) % config.vocab
        optimizer.zero_grad()
        loss = F.cross_entropy(model(ids), targets)
        loss.backward()
        clip_grad_norm(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        losses.append(loss.item())
    return losses


def build(config, seed):
    model = TinyLM(config, seed=seed)
    optimizer = AdamW(weight_decay_groups(model, 0.1), lr=3e-3)
    scheduler = WarmupCosine(optimizer, warmup_steps=3, total_steps=10, min_lr_ratio=0.1)
    return model, optimizer, scheduler


def test_resuming_gives_exactly_the_same_losses(tmp_path):
    config = TinyConfig(dropout=0.2)
    tm.manual_seed(123)                                   # dropout masks
    model, optimizer, scheduler = build(config, seed=0)
    straight = train(model, optimizer, scheduler, backend.Generator(5), 8, config)

    tm.manual_seed(123)
    model, optimizer, scheduler = build(config, seed=0)
    data = backend.Generator(5)
    first = train(model, optimizer, scheduler, data, 4, config)
    path = tmp_path / "state.safetensors"
    checkpoint.save_training_state(path, model, optimizer, scheduler,
                                   {"dropout": backend.default_generator, "data": data},
                                   step=4, config=config, extra={"best": min(first)})

    # A new process: different initial weights, different random states.
    tm.manual_seed(999)
    model, optimizer, scheduler = build(config, seed=42)
    data = backend.Generator(0)
    state = checkpoint.load_training_state(path, model, optimizer, scheduler,
                                           {"dropout": backend.default_generator, "data": data},
                                           config=config)
    assert state.step == 4 and state.extra == {"best": min(first)}
    rest = train(model, optimizer, scheduler, data, 4, config)
    assert first + rest == straight                       # exactly, not approximately
    assert rest[-1] < straight[0]                         # and it did train


def test_load_training_state_refuses_mismatches(tmp_path):
    config = TinyConfig()
    model, optimizer, scheduler = build(config, seed=0)
    path = checkpoint.save_training_state(tmp_path / "s.safetensors", model, optimizer, scheduler,
                                          backend.Generator(1), step=0)
    with pytest.raises(CheckpointError, match="generators"):
        checkpoint.load_training_state(path, model, optimizer, scheduler)
    weights = checkpoint.save(tmp_path / "w.safetensors", model.state_dict())
    with pytest.raises(CheckpointError, match="not a training state"):
        checkpoint.load_training_state(weights, model, optimizer, scheduler)
    other, other_opt, other_sched = build(TinyConfig(dim=8), seed=0)
    with pytest.raises(CheckpointError, match="does not match"):
        checkpoint.load_training_state(path, other, other_opt, other_sched, backend.Generator(1))


def test_saved_checkpoints_are_readable_by_others_as_the_umask_allows(tmp_path):
    """safetensors creates its files 0600; a checkpoint (or bundled weights copied
    elsewhere) must get the usual permissions instead."""
    previous = os.umask(0o022)
    try:
        path = checkpoint.save(tmp_path / "w.safetensors", {"w": np.zeros(3, np.float32)}, config={})
    finally:
        os.umask(previous)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
