"""The multiply-add counts of tinymuse.models.arithmetic against the products the models
actually compute, counted while they run."""
import numpy as np
import pytest

from tinymuse import backend, sampling
from tinymuse import functional as F
from tinymuse.decoding import sample_stage
from tinymuse.models import (AutoregressiveConfig, AutoregressiveTransformer, BaseTransformer,
                             BaseTransformerConfig)
from tinymuse.models.arithmetic import (autoregressive_multiply_adds, block_multiply_adds,
                                        parallel_multiply_adds)
from tinymuse.pipeline import Pipeline
from tinymuse.raster import sample_raster
from tinymuse.tensor import no_grad

PROMPT = ["a red circle to the left of a blue square"]


@pytest.fixture(scope="module")
def pipeline():
    return Pipeline.tiny(seed=0)


def sizes(pipeline):
    return dict(codebook_size=16, grid_size=4, d_model=32, num_layers=2, num_heads=2,
                mlp_ratio=2.0, text=pipeline.text_encoder.config)


@pytest.fixture
def counted(monkeypatch):
    """Counts the multiply-adds of every matrix product the models make through
    ``F.linear`` and the two attentions (scores and weighted sum: 2·Tq·Tk·d per head)."""
    total = {"multiply_adds": 0}
    linear, attention = F.linear, F.scaled_dot_product_attention

    def counting_linear(x, weight, *args, **kwargs):
        out_features, in_features = weight.shape
        total["multiply_adds"] += int(np.prod(x.shape[:-1])) * out_features * in_features
        return linear(x, weight, *args, **kwargs)

    def counting_attention(q, k, v, *args, **kwargs):
        batch, heads, queries, width = q.shape
        total["multiply_adds"] += 2 * batch * heads * queries * k.shape[2] * width
        return attention(q, k, v, *args, **kwargs)

    packed = F.packed_self_attention

    def counting_packed(qkv, num_heads, *args, **kwargs):  # q, k and v side by side
        batch, length, width = qkv.shape
        total["multiply_adds"] += 2 * batch * length * length * (width // 3)
        return packed(qkv, num_heads, *args, **kwargs)

    monkeypatch.setattr(F, "linear", counting_linear)
    monkeypatch.setattr(F, "scaled_dot_product_attention", counting_attention)
    monkeypatch.setattr(F, "packed_self_attention", counting_packed)
    return total


def text_length(model):
    """The number of text positions cross-attention reads: [CLS] and the prompt's pieces."""
    with no_grad():
        return model.encode_prompts(PROMPT).embeddings.shape[1]


def encoding(model, counted, guided: bool) -> int:
    """The multiply-adds of reading the prompt (and the empty prompt, with guidance): the
    text encoder and the projection to the model's width, which are not decoding."""
    counted["multiply_adds"] = 0
    with no_grad():
        model.encode_prompts(PROMPT)
        if guided:
            model.encode_prompts([""])
    return counted["multiply_adds"]


def test_one_call_on_the_whole_grid(pipeline, counted):
    model = BaseTransformer(BaseTransformerConfig(**sizes(pipeline)),
                            text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer)
    with no_grad():
        context = model.encode_prompts(PROMPT)
        counted["multiply_adds"] = 0
        model.logits(np.full((1, 16), model.mask_id), context)
    assert counted["multiply_adds"] == block_multiply_adds(model.config, 16, 16,
                                                           text_length(model))


def test_parallel_decoding_with_guidance(pipeline, counted):
    model = BaseTransformer(BaseTransformerConfig(**sizes(pipeline)),
                            text_encoder=pipeline.text_encoder, tokenizer=pipeline.tokenizer)
    length = text_length(model)
    reading = encoding(model, counted, guided=True)
    counted["multiply_adds"] = 0
    sample_stage(model, PROMPT, sampling.BASE.replace(steps=5), generator=backend.Generator(0))
    assert counted["multiply_adds"] - reading == parallel_multiply_adds(
        model.config, 5, length)


@pytest.mark.parametrize("guidance", [0.0, 2.0])
@pytest.mark.parametrize("cached", [True, False])
def test_autoregressive_decoding(pipeline, counted, guidance, cached):
    model = AutoregressiveTransformer(AutoregressiveConfig(**sizes(pipeline)),
                                      text_encoder=pipeline.text_encoder,
                                      tokenizer=pipeline.tokenizer)
    length = text_length(model)
    reading = encoding(model, counted, guided=bool(guidance))
    counted["multiply_adds"] = 0
    sample_raster(model, PROMPT, sampling.BASE.replace(guidance_scale=guidance),
                  generator=backend.Generator(0), use_cache=cached)
    assert counted["multiply_adds"] - reading == autoregressive_multiply_adds(
        model.config, length, guided=bool(guidance), cached=cached)


def test_the_cache_does_less_arithmetic_than_parallel_steps(pipeline):
    config = AutoregressiveConfig(**sizes(pipeline))
    cached = autoregressive_multiply_adds(config, 11)
    assert cached < parallel_multiply_adds(config, 2, 11)
    assert autoregressive_multiply_adds(config, 11, cached=False) > parallel_multiply_adds(
        config, 8, 11)
