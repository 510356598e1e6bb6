"""Training a tokenizer stage: exact resume, NaN handling, outputs, the command line."""
import json

import numpy as np
import pytest
from interrupting import Interrupted, InterruptingDataset

import tinymuse.functional as F
from tinymuse import checkpoint
from tinymuse.data import ShapesDataset
from tinymuse.vq import VQConfig, VQTokenizer, VQTrainConfig, train_tokenizer
from tinymuse.vq import train as train_module
from tinymuse.vq.tokens import load_examples

CONFIG = VQConfig(image_size=8, channels=4, channel_mult=(1, 2), norm_groups=2,
                  codebook_size=16, code_dim=4)
TRAIN = VQTrainConfig(batch_size=4, lr=3e-3, warmup_steps=1, log_every=1, sample_every=2,
                      checkpoint_every=2)
DATA = ShapesDataset(8, seed=0, length=64)
SAMPLES = load_examples(ShapesDataset(8, seed=1), range(4))[0]

def run(out_dir, dataset=DATA, steps=4, **kwargs):
    return train_tokenizer(CONFIG, TRAIN, dataset, out_dir, steps=steps, progress=False,
                           sample_images=SAMPLES, **kwargs)


def test_resuming_from_a_checkpoint_continues_exactly(tmp_path):
    straight = run(tmp_path / "straight")
    with pytest.raises(Interrupted):          # killed during step 3, after the step-2 checkpoint
        run(tmp_path / "resumed", dataset=InterruptingDataset(DATA, limit=2 * 4 + 1))
    assert not (tmp_path / "resumed" / "tokenizer.safetensors").exists()
    resumed = run(tmp_path / "resumed")
    for name, value in straight.state_dict().items():
        np.testing.assert_array_equal(resumed.state_dict()[name], value, err_msg=name)
    log = [json.loads(line) for line in open(tmp_path / "resumed" / "log.jsonl")]
    assert [entry["step"] for entry in log] == [1, 2, 3, 4]
    straight_log = [json.loads(line) for line in open(tmp_path / "straight" / "log.jsonl")]
    assert [e["loss"] for e in log] == [e["loss"] for e in straight_log]


def test_outputs_of_a_run(tmp_path):
    model = run(tmp_path, steps=3)
    assert {p.name for p in tmp_path.iterdir()} >= {
        "checkpoint.safetensors", "tokenizer.safetensors", "log.jsonl",
        "recon_000002.png", "recon_000003.png"}
    loaded = VQTokenizer.load(tmp_path / "tokenizer.safetensors")
    np.testing.assert_array_equal(loaded.encode(SAMPLES).numpy(), model.encode(SAMPLES).numpy())
    assert checkpoint.load(tmp_path / "checkpoint.safetensors").metadata["step"] == 3
    entry = json.loads(open(tmp_path / "log.jsonl").readlines()[-1])
    assert {"loss", "recon", "commit", "usage", "perplexity", "lr", "seconds", "cpu_seconds"} <= set(entry)


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = train_module.reconstruction_loss

    def nan_from_step_4(recon, images, kind):
        calls["n"] += 1
        loss = real(recon, images, kind)
        return loss * float("nan") if calls["n"] >= 4 else loss

    monkeypatch.setattr(train_module, "reconstruction_loss", nan_from_step_4)
    with pytest.raises(FloatingPointError, match="last good state"):
        run(tmp_path)
    saved = checkpoint.load(tmp_path / "checkpoint.safetensors")
    assert saved.metadata["step"] == 2
    assert all(np.isfinite(v).all() for v in saved.tensors.values())
    monkeypatch.setattr(train_module, "reconstruction_loss", real)
    run(tmp_path)                                     # and it resumes from there
    assert checkpoint.load(tmp_path / "checkpoint.safetensors").metadata["step"] == 4
    steps = [json.loads(line)["step"] for line in open(tmp_path / "log.jsonl")]
    assert steps == [1, 2, 3, 4]       # step 3 (logged, then lost with the NaN run) only once


def test_the_command_line_trains_a_stage(tmp_path):
    out = tmp_path / "base"
    assert train_module.main(["--stage", "base", "--steps", "1", "--batch-size", "2",
                              "--out", str(out)]) == 0
    model = VQTokenizer.load(out / "tokenizer.safetensors")
    assert model.config.image_size == 32 and model.config.token_size == 8


@pytest.fixture
def trainings(tmp_path, monkeypatch):
    """Run the command line with extra flags; record (config, dataset) of each training
    instead of training."""
    calls = []
    monkeypatch.setattr(train_module, "train_tokenizer",
                        lambda config, train, dataset, **kwargs: calls.append((config, dataset)))

    def run(*flags):
        assert train_module.main(["--out", str(tmp_path), *flags]) == 0
        return calls[-1]
    return run


def test_the_command_line_trains_on_the_split_it_is_given(trainings):
    assert trainings()[1].split == "train"
    assert trainings("--split", "all")[1].split == "all"
    with pytest.raises(SystemExit):
        trainings("--split", "heldout")


def test_the_command_line_sets_the_codebook_size(trainings):
    default, sized = trainings()[0], trainings("--codebook-size", "64")[0]
    assert default.codebook_size != 64 and sized.codebook_size == 64
    assert sized.token_size == default.token_size
    with pytest.raises(SystemExit):
        trainings("--codebook-size", "1")


def test_reconstruction_loss_kinds():
    a = F.mse_loss  # noqa: F841  (both kinds are the library's own losses)
    from tinymuse import Tensor
    x, y = Tensor(np.zeros((1, 3, 2, 2), np.float32)), Tensor(np.full((1, 3, 2, 2), 0.5, np.float32))
    assert train_module.reconstruction_loss(x, y, "l1").item() == pytest.approx(0.5)
    assert train_module.reconstruction_loss(x, y, "mse").item() == pytest.approx(0.25)
    with pytest.raises(ValueError, match="recon_loss"):
        VQTrainConfig(recon_loss="huber")
