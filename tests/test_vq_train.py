"""Training a tokenizer stage: exact resume, NaN handling, outputs."""
import json

import numpy as np
import pytest
from interrupting import Interrupted, InterruptingDataset

from tinymuse import Tensor, checkpoint
from tinymuse.data import ShapesDataset
from tinymuse.training import TrainConfig
from tinymuse.training import vq as vq_training
from tinymuse.vq import VQConfig, VQTokenizer, reconstruction_loss
from tinymuse.vq import tokenizer as tokenizer_module
from tinymuse.vq.tokens import load_examples

CONFIG = VQConfig(image_size=8, channels=4, channel_mult=(1, 2), norm_groups=2,
                  codebook_size=16, code_dim=4)
TRAIN = TrainConfig(steps=4, batch_size=4, lr=3e-3, warmup_steps=1, log_every=1, sample_every=2,
                    checkpoint_every=2, weight_decay=0.0, progress=False)
DATA = ShapesDataset(8, seed=0, length=64)
SAMPLES = load_examples(ShapesDataset(8, seed=1), range(4))[0]


def run(out_dir, dataset=DATA, steps=4, **kwargs):
    return vq_training.train_tokenizer(CONFIG, TRAIN.replace(steps=steps), dataset, out_dir,
                                       sample_images=SAMPLES, **kwargs)


def step_lines(path):
    """The log's per-step lines (evaluations have a "kind")."""
    return [entry for entry in map(json.loads, open(path)) if "kind" not in entry]


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path):
    straight = run(tmp_path / "straight")
    with pytest.raises(Interrupted):          # killed during step 3, after the step-2 checkpoint
        run(tmp_path / "resumed", dataset=InterruptingDataset(DATA, limit=2 * 4 + 1))
    saved = checkpoint.load(tmp_path / "resumed" / "tokenizer.safetensors")
    assert saved.metadata["step"] == 2, "the weights of the last checkpoint are kept"
    resumed = run(tmp_path / "resumed")
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    log = step_lines(tmp_path / "resumed" / "log.jsonl")
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]
    straight_log = step_lines(tmp_path / "straight" / "log.jsonl")
    assert [e["loss"] for e in log] == [e["loss"] for e in straight_log]


def test_outputs_of_a_run(tmp_path):
    model = run(tmp_path, steps=3)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "checkpoint.safetensors", "tokenizer.safetensors", "log.jsonl",
        "recon_000002.png", "recon_000003.png"}
    loaded = VQTokenizer.load(tmp_path / "tokenizer.safetensors")
    np.testing.assert_array_equal(loaded.encode(SAMPLES).numpy(), model.encode(SAMPLES).numpy())
    assert checkpoint.load(tmp_path / "checkpoint.safetensors").metadata["step"] == 3
    entry = step_lines(tmp_path / "log.jsonl")[-1]
    assert {"loss", "recon", "commit", "usage", "perplexity", "lr", "grad_norm"} <= set(entry)
    shown = [e for e in map(json.loads, open(tmp_path / "log.jsonl"))
             if e.get("kind") == "reconstructions"]
    assert [e["step"] for e in shown] == [2, 3] and all(e["psnr"] > 0 for e in shown)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = tokenizer_module.reconstruction_loss

    def nan_from_step_4(recon, images, kind):
        calls["n"] += 1
        loss = real(recon, images, kind)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(tokenizer_module, "reconstruction_loss", nan_from_step_4)
    with pytest.raises(FloatingPointError, match="last good checkpoint"):
        run(tmp_path)
    saved = checkpoint.load(tmp_path / "checkpoint.safetensors")
    assert saved.metadata["step"] == 2
    assert all(np.isfinite(v).all() for v in saved.tensors.values())
    monkeypatch.setattr(tokenizer_module, "reconstruction_loss", real)
    run(tmp_path)                                     # and it resumes from there
    assert checkpoint.load(tmp_path / "checkpoint.safetensors").metadata["step"] == 4
    steps = [entry["step"] for entry in step_lines(tmp_path / "log.jsonl")]
    assert steps == [1, 2, 3, 4]       # step 3 (logged, then lost with the NaN run) only once


def test_reconstruction_loss_kinds():
    x = Tensor(np.zeros((1, 3, 2, 2), np.float32))
    y = Tensor(np.full((1, 3, 2, 2), 0.5, np.float32))
    assert reconstruction_loss(x, y, "l1").item() == pytest.approx(0.5)
    assert reconstruction_loss(x, y, "mse").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="recon_loss"):
        reconstruction_loss(x, y, "huber")
