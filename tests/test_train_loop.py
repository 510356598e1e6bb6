"""The training loop (tinymuse.training.fit) and the masked-token stages' recipe on it: exact
resume, NaN stops, EMA, monitoring, validation, any model."""
import json

import numpy as np
import pytest

from tinymuse import Tensor, backend, checkpoint, nn
from tinymuse import functional as F
from tinymuse.data import shapes_captions
from tinymuse.decoding import sample_stage
from tinymuse.evaluate import SampleMonitor
from tinymuse.models import BaseTransformer, BaseTransformerConfig, MaskedStep
from tinymuse.optim import EMA
from tinymuse.sampling import BASE
from tinymuse.text.encoder import TextEncoderConfig
from tinymuse.text.tokenizer import Tokenizer
from tinymuse.training import TrainConfig, TrainingDiverged, batch_rows, fit, step_generator
from tinymuse.training.transformer import held_out_loss, train_transformer
from tinymuse.vq.tokens import ImageTokens

K, GRID = 16, 4


@pytest.fixture(scope="module")
def tokenizer():
    return Tokenizer.train(shapes_captions(300, seed=0), vocab_size=200)


@pytest.fixture(scope="module")
def cache():
    captions = shapes_captions(12, seed=1)
    tokens = np.random.default_rng(0).integers(0, K, (12, GRID, GRID)).astype(np.int32)
    return ImageTokens(tokens, np.arange(12), captions, {})


def tiny_model(tokenizer, dropout=0.0):
    text = TextEncoderConfig(vocab_size=tokenizer.vocab_size, max_length=32, d_model=16,
                             num_layers=1, num_heads=2)
    config = BaseTransformerConfig(codebook_size=K, grid_size=GRID, d_model=32, num_layers=2,
                                   num_heads=4, dropout=dropout, text=text)
    return BaseTransformer(config, tokenizer=tokenizer, generator=backend.Generator(0))


def quiet(**changes):
    values = dict(steps=8, batch_size=4, warmup_steps=2, checkpoint_every=3, log_every=1,
                  progress=False)
    values.update(changes)
    return TrainConfig(**values)


def test_resuming_gives_exactly_the_losses_of_an_unbroken_run(tmp_path, tokenizer, cache):
    # Dropout and EMA on: the dropout generator and the averages must be restored too.
    config = quiet(ema_decay=0.9)
    backend.manual_seed(11)
    unbroken = train_transformer(tiny_model(tokenizer, dropout=0.1), cache, config,
                                 tmp_path / "a")
    backend.manual_seed(11)
    first = train_transformer(tiny_model(tokenizer, dropout=0.1), cache, config, tmp_path / "b",
                              stop_at=5)
    backend.manual_seed(999)  # whatever happens in between: the checkpoint restores it
    second = train_transformer(tiny_model(tokenizer, dropout=0.1), cache, config, tmp_path / "b")
    assert (first.step, second.start_step, second.step) == (5, 5, 8)
    # the checkpoint carried the first call's training time (to its last save at step 5)
    assert unbroken.total_seconds == unbroken.seconds and first.total_seconds == first.seconds
    assert second.seconds < second.total_seconds <= first.seconds + second.seconds
    losses = [h["loss"] for h in unbroken.history]
    assert len(losses) == 8
    assert [h["loss"] for h in first.history + second.history] == losses
    # the sampling weights agree too
    a = checkpoint.load(tmp_path / "a" / "model.safetensors").tensors
    b = checkpoint.load(tmp_path / "b" / "model.safetensors").tensors
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    # ...and they are an average: neither the initial nor the last trained weights
    initial = tiny_model(tokenizer).state_dict()["head.weight"]
    trained = checkpoint.load(tmp_path / "a" / "checkpoint.safetensors").tensors
    assert not np.allclose(a["head.weight"], initial)
    assert not np.allclose(a["head.weight"], trained["model.model.head.weight"])


def test_a_nan_loss_stops_training_and_keeps_the_last_good_checkpoint(tmp_path, tokenizer,
                                                                     cache, monkeypatch):
    model = tiny_model(tokenizer)
    real = model.training_loss
    calls = []

    def poisoned(batch, generator):
        step = real(batch, generator)
        calls.append(1)
        if len(calls) == 5:  # the fifth step (step index 4) goes bad
            return MaskedStep(step.loss * float("nan"), step.accuracy, step.num_masked)
        return step

    monkeypatch.setattr(model, "training_loss", poisoned)
    with pytest.raises(TrainingDiverged, match="step 4.*last good checkpoint"):
        train_transformer(model, cache, quiet(), tmp_path)
    saved = checkpoint.load(tmp_path / "checkpoint.safetensors")
    assert saved.metadata["step"] == 3, "the checkpoint of step 3 survives, nothing after it"
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert max(entry["step"] for entry in logged) == 4  # steps 1-4 ran; the NaN one did not


def test_ema_is_the_exponential_moving_average():
    layer = nn.Linear(2, 2)
    frozen = nn.Linear(2, 2)
    for p in frozen.parameters():
        p.requires_grad_(False)
    model = nn.ModuleDict({"layer": layer, "frozen": frozen})
    ema = EMA(model, decay=0.75)
    assert sorted(ema.names) == ["layer.bias", "layer.weight"], "only trainable weights"
    start = layer.weight.data.copy()
    layer.weight.data[...] = start + 4.0
    ema.update(model)
    average = getattr(ema, "layer__weight").data
    np.testing.assert_allclose(average, 0.75 * start + 0.25 * (start + 4.0), rtol=1e-6)
    with ema.swapped_into(model):
        np.testing.assert_array_equal(layer.weight.data, average)
    np.testing.assert_array_equal(layer.weight.data, start + 4.0)
    with pytest.raises(ValueError, match="decay"):
        EMA(model, decay=1.0)


def test_the_monitor_samples_scores_and_saves_a_grid(tmp_path, tokenizer, cache):
    prompts = ["a red circle", "two blue squares"]
    seen = []

    def flat_images(model, prompts):
        seen.append((model.training, len(prompts)))
        return np.full((len(prompts), 32, 32, 3), 128, np.uint8)  # blank gray samples

    monitor = SampleMonitor(prompts, flat_images)
    result = train_transformer(tiny_model(tokenizer), cache, quiet(steps=4, sample_every=2),
                               tmp_path, monitor=monitor)
    assert seen == [(False, 2), (False, 2)], "sampled at steps 2 and 4, in eval mode"
    samples = result.evaluations["samples"]
    assert [s["step"] for s in samples] == [2, 4]
    assert samples[0]["flat_images"] == 1.0, "blank samples are flagged"
    assert samples[0]["oracle/colour"] == 0.0
    assert (tmp_path / "samples" / "step_000002.png").is_file()
    logged = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in logged if e.get("kind") == "samples"] == [2, 4]


def test_monitor_images_from_a_real_model_are_scored(tokenizer):
    model = tiny_model(tokenizer)

    def decode(model, prompts):  # stands in for the VQ decoder: token id -> a gray level
        tokens = sample_stage(model, prompts, BASE.replace(steps=2)).tokens
        pixels = np.repeat(np.repeat(tokens * 16, 8, 1), 8, 2)[..., None].repeat(3, -1)
        return pixels.astype(np.uint8)

    metrics = SampleMonitor(["a red circle"], decode)(model, 0)
    assert 0.0 <= metrics["oracle/colour"] <= 1.0 and "flat_images" in metrics


class Regressor(nn.Module):
    """Not a token model at all: fit needs a model, a loss and batches, nothing else."""

    def __init__(self, dropout=0.0):
        super().__init__()
        self.layer = nn.Linear(3, 1, generator=backend.Generator(0))
        self.dropout = nn.Dropout(dropout)


X = np.random.default_rng(0).standard_normal((64, 3)).astype(np.float32)
Y = X @ np.array([[1.0], [-2.0], [0.5]], np.float32)


def fit_regressor(model, config, out_dir, **options):
    def loss_fn(batch, generator):
        x, y = batch
        loss = F.mse_loss(model.layer(model.dropout(Tensor(x))), Tensor(y))
        return loss, {"noise": float(generator.random(1)[0])}  # draws from the step generator

    def batch_at(step):
        rows = batch_rows(config.seed, step, config.batch_size, len(X))
        return X[rows], Y[rows]

    return fit(model, loss_fn, batch_at, config, out_dir, **options)


def test_the_loop_trains_any_model(tmp_path):
    config = quiet(steps=150, batch_size=16, lr=0.05, weight_decay=0.0, warmup_steps=5)
    result = fit_regressor(Regressor(), config, tmp_path)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-10:]) < 0.01 * np.mean(losses[:10])
    assert result.history[0]["noise"] == step_generator(config.seed, 0).random(1)[0]


def test_a_resumed_run_reads_as_one_unbroken_run(tmp_path):
    config = quiet(steps=6, checkpoint_every=2, ema_decay=0.5, sample_every=3)
    evaluated = []

    def evaluation(model):
        def measure(step):
            evaluated.append((step, model.training, model.layer.weight.data.copy()))
            return {"weight": float(model.layer.weight.data.sum())}
        return measure

    backend.manual_seed(4)
    model = Regressor(dropout=0.2)
    unbroken = fit_regressor(model, config, tmp_path / "a",
                             evaluations={"check": evaluation(model)})
    assert [(step, training) for step, training, _ in evaluated] == [(3, False), (6, False)], \
        "evaluations run at every sample_every steps and at the end, in evaluation mode"
    assert model.training, "and training mode comes back"
    backend.manual_seed(4)
    fit_regressor(Regressor(dropout=0.2), config, tmp_path / "b", stop_at=3)
    # as if steps 4 and 5 had then run in a call killed before its next checkpoint
    with open(tmp_path / "b" / "log.jsonl", "a") as log:
        log.writelines(json.dumps({"step": step, "loss": 0.0}) + "\n" for step in (4, 5))
    backend.manual_seed(99)
    second = fit_regressor(Regressor(dropout=0.2), config, tmp_path / "b")
    assert second.start_step == 3, "a call that stops early checkpoints where it stops"
    lines = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    steps = [e["step"] for e in lines if "kind" not in e]
    assert steps == [1, 2, 3, 4, 5, 6], "lines of steps after the checkpoint are dropped"
    assert [e["loss"] for e in lines if "kind" not in e] == [h["loss"] for h in unbroken.history]


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    fit_regressor(Regressor(), quiet(steps=2), tmp_path)
    with pytest.raises(checkpoint.CheckpointError,
                       match="train.lr: file has 0.001, asked for 0.01"):
        fit_regressor(Regressor(), quiet(steps=2, lr=0.01), tmp_path)
    # how a run reports itself is not part of what must match
    fit_regressor(Regressor(), quiet(steps=2, log_every=5, checkpoint_every=7), tmp_path)


def test_only_the_trainable_part_learns(tmp_path):
    model = Regressor()
    model.head = nn.Linear(1, 1)
    before = model.layer.weight.data.copy()
    fit_regressor(model, quiet(steps=3), tmp_path, trainable=model.head)
    np.testing.assert_array_equal(model.layer.weight.data, before)


@pytest.mark.parametrize("changes, message", [
    (dict(steps=0), "steps must be a whole number >= 1"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
    (dict(lr=float("nan")), "lr must be a finite number > 0"),
    (dict(warmup_steps=-1), "warmup_steps must be a whole number >= 0"),
    (dict(ema_decay=1.0), r"ema_decay must lie in \(0, 1\)"),
])
def test_a_training_config_that_cannot_work_is_refused(changes, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**changes)


def test_steps_draw_from_seeded_stateless_generators():
    np.testing.assert_array_equal(batch_rows(0, 7, 5, 100), batch_rows(0, 7, 5, 100))
    assert not np.array_equal(batch_rows(0, 7, 50, 100), batch_rows(0, 8, 50, 100))
    assert step_generator(3, 2).random(4).tolist() == step_generator(3, 2).random(4).tolist()


def test_an_empty_cache_is_a_clear_error(tmp_path, tokenizer):
    empty = ImageTokens(np.zeros((0, GRID, GRID), np.int32), np.arange(0), [], {})
    with pytest.raises(ValueError, match="empty"):
        train_transformer(tiny_model(tokenizer), empty, quiet(), tmp_path)


def random_cache(rows, seed):
    captions = shapes_captions(rows, seed=seed)
    tokens = np.random.default_rng(seed).integers(0, K, (rows, GRID, GRID)).astype(np.int32)
    return ImageTokens(tokens, np.arange(rows), captions, {})


def test_validation_is_measured_without_changing_what_is_trained(tmp_path, tokenizer, cache):
    # Dropout and EMA on, as in the resume test: measuring must draw from none of the
    # training's generators, and must leave the weights in training mode as they were.
    config = quiet(ema_decay=0.9, sample_every=4)
    backend.manual_seed(11)
    plain = train_transformer(tiny_model(tokenizer, dropout=0.1), cache, config, tmp_path / "a")
    backend.manual_seed(11)
    checked = train_transformer(tiny_model(tokenizer, dropout=0.1), cache, config,
                                tmp_path / "b", validation=random_cache(6, seed=5))
    assert [h["loss"] for h in checked.history] == [h["loss"] for h in plain.history]
    a = checkpoint.load(tmp_path / "a" / "checkpoint.safetensors").tensors
    b = checkpoint.load(tmp_path / "b" / "checkpoint.safetensors").tensors
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)
    assert plain.evaluations == {}
    validations = checked.evaluations["validation"]
    assert [v["step"] for v in validations] == [4, 8] and validations[0]["rows"] == 6
    logged = [json.loads(line) for line in (tmp_path / "b" / "log.jsonl").read_text().splitlines()]
    assert [e for e in logged if e.get("kind") == "validation"] == [
        {"kind": "validation", **v} for v in validations]


def test_the_held_out_loss_tells_memorised_rows_from_unseen_ones(tmp_path, tokenizer):
    # Four grids of random tokens can only be learned by heart: afterwards the loss on them
    # must be far below the loss on four other random grids, which no model can predict.
    memorised = random_cache(4, seed=2)
    config = quiet(steps=150, lr=3e-3, warmup_steps=10, checkpoint_every=150,
                   sample_every=150, log_every=50)
    result = train_transformer(tiny_model(tokenizer), memorised, config, tmp_path,
                               validation=random_cache(4, seed=3))
    final = result.evaluations["validation"][-1]
    assert final["step"] == 150
    assert final["training_rows_loss"] < final["loss"] - 0.5
    assert final["loss"] > 0.8 * np.log(K)  # unseen random tokens: about chance


def test_held_out_loss_is_repeatable_and_leaves_the_default_generator_alone(tokenizer, cache):
    model = tiny_model(tokenizer).eval()
    state = backend.default_generator.state_dict()
    first = held_out_loss(model, cache, batch_size=5, rows=12)
    second = held_out_loss(model, cache, batch_size=5, rows=12)
    assert first == second
    assert backend.default_generator.state_dict() == state
    # only the first `rows` rows count: change the others and nothing changes
    other = random_cache(12, seed=9)
    tokens = np.concatenate([cache.tokens[:6], other.tokens[6:]])
    mixed = ImageTokens(tokens, np.arange(12), cache.captions[:6] + other.captions[6:], {})
    assert held_out_loss(model, mixed, batch_size=5, rows=6) == \
        held_out_loss(model, cache, batch_size=5, rows=6)
    assert held_out_loss(model, mixed, batch_size=5, rows=12) != first


def test_an_empty_validation_cache_is_a_clear_error(tmp_path, tokenizer, cache):
    empty = ImageTokens(np.zeros((0, GRID, GRID), np.int32), np.arange(0), [], {})
    with pytest.raises(ValueError, match="validation cache is empty"):
        train_transformer(tiny_model(tokenizer), cache, quiet(), tmp_path, validation=empty)
