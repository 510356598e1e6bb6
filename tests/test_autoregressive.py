"""The autoregressive baseline: causal attention, the key/value cache, one model call per
token, guidance as in the parallel decoder, its training and its files."""
import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import backend, sampling
from tinymuse.checkpoint import CheckpointError
from tinymuse.cascade import STAGES, stage_paths, train_cascade
from tinymuse.models import AutoregressiveConfig, AutoregressiveTransformer, TextContext
from tinymuse.optim import AdamW
from tinymuse.pipeline import Pipeline
from tinymuse.pipeline_files import load_baseline, save_baseline
from tinymuse.raster import sample_raster
from tinymuse.tensor import Tensor, no_grad

PROMPTS = ["a red circle", "two blue squares", "a green triangle"]


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.tiny(seed=0)


def make_model(pipeline, grid_size=4, codebook_size=16, seed=0):
    config = AutoregressiveConfig(codebook_size=codebook_size, grid_size=grid_size, d_model=32,
                                  num_layers=2, num_heads=2, text=pipeline.text_encoder.config)
    return AutoregressiveTransformer(config, text_encoder=pipeline.text_encoder,
                                     tokenizer=pipeline.tokenizer,
                                     generator=backend.Generator(seed)).eval()


@pytest.fixture(scope="module")
def model(pipeline):
    return make_model(pipeline)


@settings(max_examples=20, deadline=None)
@given(position=st.integers(0, 15), seed=st.integers(0, 2 ** 16))
def test_a_tokens_logits_do_not_change_when_a_later_token_changes(model, position, seed):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(0, 16, (2, 16))
    changed = tokens.copy()
    changed[:, position:] = rng.integers(0, 16, (2, 16 - position))
    with no_grad():
        context = model.encode_prompts(PROMPTS[:2])
        before = model.logits(tokens, context).data
        after = model.logits(changed, context).data
    # Row i predicts token i from tokens 0 … i−1: rows up to `position` see no change.
    np.testing.assert_array_equal(before[:, :position + 1], after[:, :position + 1])


def test_an_earlier_token_does_change_the_logits_after_it(model):
    # the counterpart: the mask hides the future, not the past
    tokens = np.zeros((1, 16), np.int64)
    changed = tokens.copy()
    changed[0, 3] = 5
    with no_grad():
        context = model.encode_prompts(PROMPTS[:1])
        before, after = (model.logits(t, context).data for t in (tokens, changed))
    assert np.abs(before[0, 4:] - after[0, 4:]).max() > 1e-4


def test_the_cache_gives_the_logits_of_the_whole_grid(model):
    tokens = np.random.default_rng(1).integers(0, 16, (3, 16))
    with no_grad():
        context = model.encode_prompts(PROMPTS)
        whole = model.logits(tokens, context).data
        cache = model.new_cache()
        rows = [model.next_logits(tokens[:, i - 1] if i else None, i, context, cache)
                for i in range(16)]
    np.testing.assert_allclose(np.stack(rows, axis=1), whole, rtol=1e-5, atol=1e-5)


def test_the_cache_refuses_a_position_out_of_order(model):
    with no_grad():
        context = model.encode_prompts(PROMPTS[:1])
        with pytest.raises(ValueError, match="next one is 0"):
            model.next_logits(np.zeros(1, np.int64), 2, context, model.new_cache())


@pytest.mark.parametrize("changes", [{"guidance_scale": 0.0},
                                     {"guidance_scale": 3.0, "top_k": 4},
                                     {"guidance_scale": 2.0, "guidance_schedule": "linear"}])
def test_cached_sampling_equals_uncached_sampling(model, changes):
    settings_ = sampling.BASE.replace(temperature=1.0, **changes)
    cached = sample_raster(model, PROMPTS, settings_, generator=backend.Generator(7))
    uncached = sample_raster(model, PROMPTS, settings_, generator=backend.Generator(7),
                             use_cache=False)
    np.testing.assert_array_equal(cached.tokens, uncached.tokens)
    assert cached.tokens.shape == (3, 4, 4)


class Counting:
    """The model, counting its calls."""

    def __init__(self, model):
        self.model, self.calls = model, {"logits": 0, "next_logits": 0}

    def __getattr__(self, name):
        attribute = getattr(self.model, name)
        if name in self.calls:
            def counted(*args, **kwargs):
                self.calls[name] += 1
                return attribute(*args, **kwargs)
            return counted
        return attribute


@pytest.mark.parametrize("guidance", [0.0, 2.0])
@pytest.mark.parametrize("use_cache", [True, False])
def test_autoregressive_decoding_calls_the_model_once_per_token(model, guidance, use_cache):
    counting = Counting(model)
    sample_raster(counting, PROMPTS, sampling.BASE.replace(guidance_scale=guidance),
                  generator=backend.Generator(0), use_cache=use_cache)
    name = "next_logits" if use_cache else "logits"
    assert counting.calls[name] == 16  # 4×4 tokens, the guided rows batched with the others
    assert sum(counting.calls.values()) == 16


class Scripted:
    """A stand-in model whose logits are fixed: conditional rows prefer code 1, the empty
    prompt's rows code 2; guidance decides the winner."""

    def __init__(self, cond, uncond, num_tokens=4):
        self.cond, self.uncond = np.asarray(cond, np.float32), np.asarray(uncond, np.float32)
        self.config = AutoregressiveConfig(codebook_size=len(cond), grid_size=2)
        self.device, self.training = "cpu", False

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def prompt_context(self, prompts, low_tokens=None):
        empty = np.array([not p for p in prompts])
        return TextContext(Tensor(empty[:, None, None].astype(np.float32)), empty[:, None])

    def new_cache(self):
        return []

    def next_logits(self, previous, position, context, cache):
        empty = context.mask[:, 0]
        return np.where(empty[:, None], self.uncond, self.cond)


@pytest.mark.parametrize("schedule", ["constant", "linear"])
def test_guidance_is_the_parallel_decoders(schedule):
    from tinymuse.decoding import guidance_scale_at

    cond, uncond = [0.0, 1.0, 0.9, 0.0], [0.0, 0.0, 2.0, 0.0]
    model = Scripted(cond, uncond)
    settings_ = sampling.BASE.replace(temperature=0.0, guidance_scale=1.0,
                                      guidance_schedule=schedule)
    drawn = sample_raster(model, ["a prompt"], settings_).tokens.reshape(-1)
    expected = [int(np.argmax((1 + s) * np.array(cond) - s * np.array(uncond)))
                for s in (guidance_scale_at(i, 4, 1.0, schedule) for i in range(4))]
    assert drawn.tolist() == expected
    assert sample_raster(model, ["a prompt"], settings_.replace(guidance_scale=0.0)
                         ).tokens.reshape(-1).tolist() == [1, 1, 1, 1]


def test_intermediates_show_one_more_token_per_step(model):
    result = sample_raster(model, PROMPTS[:2], sampling.BASE, generator=backend.Generator(3),
                           return_intermediates=True)
    assert len(result.intermediates) == 16
    for step, (tokens, undrawn) in enumerate(result.intermediates):
        assert undrawn.sum(axis=1).tolist() == [15 - step] * 2
        assert (tokens[undrawn] == model.config.start_id).all()
    np.testing.assert_array_equal(result.intermediates[-1].tokens.reshape(2, 4, 4),
                                  result.tokens)


def test_the_loss_is_next_token_cross_entropy(model):
    tokens = np.random.default_rng(2).integers(0, 16, (2, 4, 4))
    ids, mask = model.tokenize(PROMPTS[:2])
    model.config.caption_dropout, dropout = 0.0, model.config.caption_dropout
    try:
        step = model.training_loss({"tokens": tokens, "text_ids": ids, "text_mask": mask},
                                   backend.Generator(0))
    finally:
        model.config.caption_dropout = dropout
    with no_grad():
        logits = model.logits(tokens, model.encode_text(ids, mask)).data.astype(np.float64)
    log_p = logits - logits.max(-1, keepdims=True)
    log_p -= np.log(np.exp(log_p).sum(-1, keepdims=True))
    targets = tokens.reshape(2, 16)
    eps = model.config.label_smoothing
    nll = -np.take_along_axis(log_p, targets[..., None], -1)[..., 0]
    expected = ((1 - eps) * nll - eps * log_p.mean(-1)).mean()
    assert step.loss.item() == pytest.approx(expected, rel=1e-5)


def test_it_learns_a_grid_and_draws_it_back(pipeline):
    model = make_model(pipeline, grid_size=2, codebook_size=8, seed=1)
    model.config.caption_dropout, model.config.label_smoothing = 0.0, 0.0
    target = np.array([[[3, 1], [4, 6]]])
    ids, mask = model.tokenize(["a red circle"])
    batch = {"tokens": target, "text_ids": ids, "text_mask": mask}
    optimizer = AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    model.train()
    for step in range(150):
        optimizer.zero_grad()
        model.training_loss(batch, backend.Generator(step)).loss.backward()
        optimizer.step()
    drawn = sample_raster(model, ["a red circle"], sampling.BASE.replace(
        temperature=0.0, guidance_scale=0.0)).tokens
    np.testing.assert_array_equal(drawn, target)


def test_the_baseline_file_round_trips_and_names_a_foreign_encoder(pipeline, model, tmp_path):
    path = save_baseline(tmp_path / "ar.safetensors", model, dtype="float32")
    loaded = load_baseline(pipeline, path)
    for (name, ours), (_, theirs) in zip(model.state_dict().items(),
                                         loaded.state_dict().items()):
        np.testing.assert_array_equal(ours, theirs, err_msg=name)
    wider = make_model(pipeline)
    wider.config.text = dataclasses.replace(wider.config.text, d_model=24)
    save_baseline(tmp_path / "wide.safetensors", wider, dtype="float32")
    with pytest.raises(CheckpointError, match="another text encoder"):
        load_baseline(pipeline, tmp_path / "wide.safetensors")


def test_the_bundled_baseline_loads_beside_the_bundled_cascade():
    bundled = Pipeline.from_pretrained()
    baseline = load_baseline(bundled)
    assert baseline.config.num_tokens == bundled.base.config.num_tokens
    assert baseline.config.d_model == bundled.base.config.d_model
    assert baseline.config.num_layers == bundled.base.config.num_layers
    assert baseline.text_encoder is bundled.text_encoder


def test_the_cascade_trains_it_on_request_only(tmp_path):
    assert "ar-base" not in STAGES
    for stage in ("tokenizer", "text", "vq-base", "vq-superres", "tokens"):
        train_cascade(tmp_path, stage=stage, preset="tiny", progress=False, log=lambda *_: None,
                      resume=stage != "tokenizer")
    record = train_cascade(tmp_path, stage="ar-base", preset="tiny", progress=False,
                           log=lambda *_: None, resume=True)
    assert "ar-base" in record["stages"]
    model = AutoregressiveTransformer.load(stage_paths(tmp_path)["ar-base"])
    assert model.config.d_model == 16 and model.config.num_layers == 1  # the base stage's

