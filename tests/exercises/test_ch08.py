"""Chapter 8's exercises: the super-resolution stage and the cascade
(tutorials/08-super-resolution.md).

The tests run the exercised method alone: the layers around it (the embedding table, the
self-attention blocks, the LayerNorm, the skip projection, the decoding of each stage) are
replaced by small stand-ins computed in NumPy, so that a test checks the exercise's own
wiring against a reference written here, forward only, and needs no other chapter's code.
"""
import numpy as np
import pytest

from tinymuse import backend, nn
from tinymuse import pipeline as pipeline_module
from tinymuse.decoding import DecodeResult
from tinymuse.models import SuperResTransformer, SuperResTransformerConfig
from tinymuse.models.base import BaseTransformer, TextContext
from tinymuse.pipeline import Pipeline
from tinymuse.sampling import BASE, SUPERRES
from tinymuse.tensor import Tensor
from tinymuse.text.encoder import TextEncoderConfig

D = 8  # the model width of the toy models below


def toy_model(low_skip=False, low_num_layers=2):
    """A 4×4 high grid on 2×2 low tokens (each low token under 2×2 high ones)."""
    text = TextEncoderConfig(vocab_size=20, max_length=8, d_model=D, num_layers=1, num_heads=2)
    config = SuperResTransformerConfig(codebook_size=8, grid_size=4, low_codebook_size=6,
                                       low_grid_size=2, low_num_layers=low_num_layers,
                                       d_model=D, num_layers=1, num_heads=2, text=text,
                                       low_skip=low_skip)
    return SuperResTransformer(config, generator=backend.Generator(0))


class Lookup(nn.Module):
    """An embedding table: rows of ``weight`` by id."""

    def __init__(self, table):
        super().__init__()
        self.weight = nn.Parameter(table)

    def forward(self, ids):
        return Tensor(self.weight.data[ids])


class Squash(nn.Module):
    """A stand-in for a block: x → tanh(x·A), so that the order of blocks matters."""

    def __init__(self, a):
        super().__init__()
        self.a = a

    def forward(self, x, *args, **kwargs):
        return Tensor(np.tanh(x.data @ self.a))


class Affine(nn.Module):
    """A stand-in for the LayerNorm, or for the skip projection: x → x·A + b."""

    def __init__(self, a, b):
        super().__init__()
        self.a, self.b = a, b

    def forward(self, x):
        return Tensor(x.data @ self.a + self.b)


# --------------------------------------------------------------------------- #
# ch08_ex1 — reading the low-resolution tokens
# --------------------------------------------------------------------------- #

def test_ch08_ex1_embedding_plus_positions_then_the_blocks_then_the_norm():
    rng = np.random.default_rng(0)
    model = toy_model()
    table = rng.normal(size=(6, D)).astype(np.float32)
    a1, a2, a3 = rng.normal(0, 0.5, (3, D, D)).astype(np.float32)
    shift = rng.normal(size=D).astype(np.float32)
    model.low_embedding = Lookup(table)
    model.low_blocks = nn.ModuleList([Squash(a1), Squash(a2)])
    model.low_norm = Affine(a3, shift)
    positions = model.low_positions.data                    # (4, D), as initialised

    low = rng.integers(0, 6, (3, 2, 2))
    got = model.encode_low_tokens(low)
    assert isinstance(got, Tensor) and got.shape == (3, 4, D)
    flat = low.reshape(3, 4)
    want = np.tanh(np.tanh((table[flat] + positions[None]) @ a1) @ a2) @ a3 + shift
    np.testing.assert_allclose(got.data, want, rtol=1e-5, atol=1e-5)
    # Flat (B, h·w) grids read the same, and a token outside the codebook is refused.
    np.testing.assert_allclose(model.encode_low_tokens(flat).data, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="low-resolution tokens must lie"):
        model.encode_low_tokens(np.full((1, 2, 2), 6))


def test_ch08_ex1_every_block_runs_once_in_order():
    rng = np.random.default_rng(1)
    model = toy_model(low_num_layers=3)
    table = rng.normal(size=(6, D)).astype(np.float32)
    blocks = rng.normal(0, 0.5, (3, D, D)).astype(np.float32)
    model.low_embedding = Lookup(table)
    model.low_blocks = nn.ModuleList([Squash(a) for a in blocks])
    model.low_norm = Affine(np.eye(D, dtype=np.float32), np.zeros(D, np.float32))
    low = rng.integers(0, 6, (2, 4))
    want = table[low] + model.low_positions.data
    for a in blocks:
        want = np.tanh(want @ a)
    np.testing.assert_allclose(model.encode_low_tokens(low).data, want, rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- #
# ch08_ex2 — the context: the low-resolution vectors, then the text
# --------------------------------------------------------------------------- #

def test_ch08_ex2_low_vectors_first_then_the_text_and_the_mask_to_match():
    rng = np.random.default_rng(2)
    model = toy_model()
    encoded = rng.normal(size=(2, 4, D)).astype(np.float32)
    seen = []

    def encode_low_tokens(low_tokens):   # stands in for ch08_ex1's reader
        seen.append(np.asarray(low_tokens).copy())
        return Tensor(encoded)

    model.encode_low_tokens = encode_low_tokens
    words = rng.normal(size=(2, 5, D)).astype(np.float32)
    text_mask = np.array([[True, True, True, False, False], [True, True, True, True, True]])
    low = rng.integers(0, 6, (2, 2, 2))
    context = model.make_context(TextContext(Tensor(words), text_mask), low)
    assert isinstance(context, TextContext) and len(seen) == 1
    assert np.array_equal(seen[0].reshape(2, -1), low.reshape(2, -1))
    assert context.embeddings.shape == (2, 9, D)
    np.testing.assert_array_equal(context.embeddings.data[:, :4], encoded)
    np.testing.assert_array_equal(context.embeddings.data[:, 4:], words)
    mask = np.asarray(context.mask)
    assert mask.dtype == bool and mask.shape == (2, 9)
    assert mask[:, :4].all()                                  # the low part is never masked
    np.testing.assert_array_equal(mask[:, 4:], text_mask)


def test_ch08_ex2_the_empty_prompt_keeps_the_low_vectors_and_batches_must_agree():
    rng = np.random.default_rng(3)
    model = toy_model()
    encoded = rng.normal(size=(3, 4, D)).astype(np.float32)
    model.encode_low_tokens = lambda low_tokens: Tensor(encoded)
    empty = TextContext(Tensor(rng.normal(size=(3, 1, D)).astype(np.float32)),
                        np.ones((3, 1), bool))               # [CLS] alone
    context = model.make_context(empty, np.zeros((3, 2, 2), np.int64))
    assert context.embeddings.shape == (3, 5, D) and np.asarray(context.mask).sum() == 15
    np.testing.assert_array_equal(context.embeddings.data[:, :4], encoded)
    with pytest.raises(ValueError, match="3 low-resolution grids but 2 text contexts"):
        model.make_context(TextContext(Tensor(np.zeros((2, 1, D), np.float32)),
                                       np.ones((2, 1), bool)), np.zeros((3, 2, 2), np.int64))


# --------------------------------------------------------------------------- #
# ch08_ex3 — the aligned skip: each low vector under its 2×2 block of high tokens
# --------------------------------------------------------------------------- #

def skip_case(monkeypatch, seed):
    rng = np.random.default_rng(seed)
    model = toy_model(low_skip=True)
    start = rng.normal(size=(2, 16, D)).astype(np.float32)
    monkeypatch.setattr(BaseTransformer, "embed_inputs", lambda self, tokens, context:
                        Tensor(start.copy()))               # E[x̃] + P, as the base model
    weight, bias = rng.normal(size=(D, D)).astype(np.float32), rng.normal(size=D).astype(
        np.float32)
    model.low_skip = Affine(weight, bias)
    embeddings = rng.normal(size=(2, 4 + 3, D)).astype(np.float32)  # 4 low vectors, 3 text
    context = TextContext(Tensor(embeddings), np.ones((2, 7), bool))
    return model, start, weight, bias, embeddings, context


def test_ch08_ex3_each_position_gets_the_low_vector_above_it(monkeypatch):
    model, start, weight, bias, embeddings, context = skip_case(monkeypatch, 4)
    got = model.embed_inputs(np.zeros((2, 16), np.int64), context)
    assert got.shape == (2, 16, D)
    want = start.copy()
    for r in range(4):
        for c in range(4):
            above = embeddings[:, (r // 2) * 2 + c // 2]      # low grid 2×2, row-major
            want[:, r * 4 + c] += above @ weight + bias
    np.testing.assert_allclose(got.data, want, rtol=1e-5, atol=1e-5)


def test_ch08_ex3_the_text_part_of_the_context_is_not_read(monkeypatch):
    model, start, _, _, embeddings, context = skip_case(monkeypatch, 5)
    changed = embeddings.copy()
    changed[:, 4:] = 100.0
    first = model.embed_inputs(np.zeros((2, 16), np.int64), context)
    second = model.embed_inputs(np.zeros((2, 16), np.int64),
                                TextContext(Tensor(changed), context.mask))
    np.testing.assert_allclose(first.data, second.data)
    assert not np.allclose(first.data, start)
    # The four high tokens of one 2×2 block get the same addition, and differ from the next.
    added = first.data - start
    np.testing.assert_allclose(added[:, [0, 1, 4, 5]], np.repeat(added[:, :1], 4, axis=1),
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(added[:, 0], added[:, 2])


# --------------------------------------------------------------------------- #
# ch08_ex4 — the cascade: the base stage first, its tokens to the super-resolution stage
# --------------------------------------------------------------------------- #

@pytest.fixture
def cascade(monkeypatch):
    """The bundled pipeline, its two stages replaced by a recorder: what each stage is asked
    for, in order, and what it answers (fixed grids)."""
    pipe = Pipeline.from_pretrained()      # loaded, not built: no captions drawn
    calls, answers = [], {"base": np.arange(2 * 64).reshape(2, 8, 8) % 32,
                          "superres": np.arange(2 * 256).reshape(2, 16, 16) % 32}

    def sample_stage(model, prompts, settings, **options):
        stage = "base" if model is pipe.base else "superres" if model is pipe.superres else "?"
        state = options["generator"].state_dict()
        calls.append(dict(options, stage=stage, prompts=list(prompts), settings=settings,
                          state=state))
        return DecodeResult(answers[stage].copy())

    finished = []

    def finish(low_tokens, high_tokens, output, return_tokens, steps=None):
        finished.append((low_tokens, high_tokens, output, return_tokens, steps))
        return "the images"

    monkeypatch.setattr(pipeline_module, "sample_stage", sample_stage)
    monkeypatch.setattr(pipe, "finish", finish)
    return pipe, calls, answers, finished


def test_ch08_ex4_base_first_then_superres_on_its_tokens(cascade):
    pipe, calls, answers, finished = cascade
    steps = []
    got = pipe.generate(["a red circle", "two blue squares"], superres={"steps": 3}, seed=7,
                        negative_prompt="a green circle", output="uint8", return_tokens=True,
                        callback=lambda *report: steps.append(report))
    assert got == "the images"
    assert [call["stage"] for call in calls] == ["base", "superres"]
    base, superres = calls
    assert base["prompts"] == superres["prompts"] == ["a red circle", "two blue squares"]
    assert base["settings"] == BASE and superres["settings"] == SUPERRES.replace(steps=3)
    assert base.get("low_tokens") is None and base.get("tokens") is None
    np.testing.assert_array_equal(superres["low_tokens"], answers["base"])
    assert superres.get("tokens") is None and superres.get("mask") is None
    assert base["negative_prompts"] == superres["negative_prompts"] == ["a green circle"] * 2
    # One generator, seeded once, for both stages.
    assert base["generator"] is superres["generator"]
    assert base["state"] == backend.Generator(7).state_dict()
    # Progress is reported under each stage's name.
    base["on_step"](1, 24)
    superres["on_step"](2, 3)
    assert steps == [("base", 1, 24), ("superres", 2, 3)]
    (low, high, output, return_tokens, kept), = finished
    np.testing.assert_array_equal(low, answers["base"])
    np.testing.assert_array_equal(high, answers["superres"])
    assert (output, return_tokens) == ("uint8", True)
    # The steps are kept only when asked for.
    assert not base.get("return_intermediates") and not superres.get("return_intermediates")
    assert kept is None


def test_ch08_ex4_both_stages_keep_their_steps_when_asked(cascade):
    pipe, calls, _, finished = cascade
    pipe.generate("a red circle", seed=0, return_steps=True)
    assert [call["stage"] for call in calls] == ["base", "superres"]
    assert all(call.get("return_intermediates") is True for call in calls)
    assert finished[0][4] is not None, "the stages' steps go on to finish"


def test_ch08_ex4_redrawing_hands_each_stage_its_own_grid_and_mask(cascade):
    pipe, calls, answers, finished = cascade
    rng = np.random.default_rng(6)
    low, high = rng.integers(0, 32, (1, 8, 8)), rng.integers(0, 32, (1, 16, 16))
    low_mask, high_mask = rng.random((1, 8, 8)) < 0.5, rng.random((1, 16, 16)) < 0.5
    pipe.redraw("a red circle", (low, high), (low_mask, high_mask), seed=1)
    base, superres = calls
    assert (base["stage"], superres["stage"]) == ("base", "superres")
    assert base["tokens"] is low and base["mask"] is low_mask
    assert superres["tokens"] is high and superres["mask"] is high_mask
    np.testing.assert_array_equal(superres["low_tokens"], answers["base"])
    assert base["negative_prompts"] == superres["negative_prompts"]
    assert finished[0][2:] == ("float", False, None)
