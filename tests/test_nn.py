"""Modules, layers, attention and the transformer block."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import tinymuse as tm
from tinymuse import backend, nn
from tinymuse.gradcheck import check_directional
from tinymuse.tensor import Tensor

FAST = settings(max_examples=20, deadline=None)


def seeded(seed=0):
    return backend.Generator(seed)


class TwoLayer(nn.Module):
    def __init__(self, generator=None):
        super().__init__()
        self.fc1 = nn.Linear(3, 5, generator=generator)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(5, 2, generator=generator)
        self.scale = nn.Parameter(np.ones(2, np.float32))
        self.drop = nn.Dropout(0.5)

    def forward(self, x):
        return self.fc2(self.drop(self.act(self.fc1(x)))) * self.scale


# ------------------------------------------------------------ registration
def test_parameters_and_children_are_registered_with_dotted_names():
    model = TwoLayer()
    names = [name for name, _ in model.named_parameters()]
    assert names == ["scale", "fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert [name for name, _ in model.named_children()] == ["fc1", "act", "fc2", "drop"]
    assert [type(m).__name__ for m in model.modules()] == [
        "TwoLayer", "Linear", "ReLU", "Linear", "Dropout"]
    assert model.num_parameters() == 3 * 5 + 5 + 5 * 2 + 2 + 2
    assert all(p.requires_grad and p.dtype == np.float32 for p in model.parameters())


def test_reassigning_and_deleting_attributes_updates_the_registry():
    model = TwoLayer()
    model.fc2 = nn.Linear(5, 7)                       # a new child replaces the old one
    assert model.fc2.weight.shape == (7, 5)
    assert dict(model.named_parameters())["fc2.weight"] is model.fc2.weight
    model.fc1.bias = None                             # an optional parameter switched off
    assert "fc1.bias" not in dict(model.named_parameters())
    del model.scale
    assert "scale" not in dict(model.named_parameters())
    with pytest.raises(TypeError, match="Parameter"):
        model.fc1.weight = np.zeros((5, 3))           # a plain array would silently not learn


def test_tied_parameters_are_listed_once():
    model = TwoLayer()
    model.fc3 = nn.Linear(3, 5)
    model.fc3.weight = model.fc1.weight
    params = list(model.parameters())
    assert len(params) == len({id(p) for p in params})
    assert "fc3.weight" not in dict(model.named_parameters())
    assert model.num_parameters() == TwoLayer().num_parameters() + 5  # only fc3.bias is new


def test_forgetting_super_init_gives_a_clear_error():
    class Broken(nn.Module):
        def __init__(self):
            self.fc = nn.Linear(2, 2)

    with pytest.raises(AttributeError, match=r"super\(\).__init__\(\)"):
        Broken()


def test_containers_register_their_members():
    seq = nn.Sequential(nn.Linear(2, 3), nn.GELU(), nn.Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq) == 3 and isinstance(seq[1], nn.GELU)
    x = tm.randn(4, 2)
    np.testing.assert_allclose(seq(x).numpy(), seq[2](seq[1](seq[0](x))).numpy())

    layers = nn.ModuleList([nn.Linear(2, 2) for _ in range(3)])
    layers.append(nn.Linear(2, 1))
    assert len(layers) == 4 and len(list(layers.parameters())) == 8
    assert [n for n, _ in layers.named_parameters()][-1] == "3.bias"

    heads = nn.ModuleDict({"items": nn.Linear(2, 2), "b": nn.Linear(2, 3)})
    assert callable(heads.items)           # a key named "items" does not hide the method
    assert set(heads) == {"items", "b"} and "b" in heads
    assert {n for n, _ in heads.named_parameters()} == {"items.weight", "items.bias",
                                                        "b.weight", "b.bias"}
    with pytest.raises(TypeError):
        layers.append(np.zeros(2))


def test_train_and_eval_propagate_to_every_module():
    model = nn.Sequential(TwoLayer(), nn.ModuleList([nn.Dropout(0.1)]))
    assert all(m.training for m in model.modules())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_acts_only_in_training():
    drop = nn.Dropout(0.25, generator=seeded(1))
    x = tm.ones(200, 50)
    y = drop(x).numpy()
    zeros = np.mean(y == 0)
    assert 0.2 < zeros < 0.3                                  # about p of the elements
    np.testing.assert_allclose(y[y != 0], 1 / 0.75, rtol=1e-6)  # survivors scaled by 1/(1−p)
    drop.eval()
    assert drop(x) is x
    again = nn.Dropout(0.25, generator=seeded(1))
    np.testing.assert_array_equal(again(x).numpy(), y)          # the seed fixes the mask
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


def test_backward_accumulates_and_zero_grad_resets():
    model = TwoLayer(generator=seeded(0)).eval()
    x = tm.randn(4, 3, generator=seeded(1))
    model(x).sum().backward()
    first = model.fc1.weight.grad.copy()
    model(x).sum().backward()                   # a second backward *adds*
    np.testing.assert_allclose(model.fc1.weight.grad, 2 * first, rtol=1e-6)
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model(x).sum().backward()                   # after zero_grad: one gradient again
    np.testing.assert_allclose(model.fc1.weight.grad, first, rtol=1e-6)


# ------------------------------------------------------------ state dicts
def test_state_dict_round_trip_gives_identical_outputs():
    a, b = TwoLayer(generator=seeded(0)).eval(), TwoLayer(generator=seeded(1)).eval()
    x = tm.randn(3, 3)
    assert not np.array_equal(a(x).numpy(), b(x).numpy())
    state = a.state_dict()
    assert set(state) == {n for n, _ in a.named_parameters()}
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(x).numpy(), b(x).numpy())


def test_state_dict_is_a_snapshot():
    model = TwoLayer()
    state = model.state_dict()
    before = state["fc1.weight"].copy()
    model.fc1.weight.data += 1.0
    np.testing.assert_array_equal(state["fc1.weight"], before)


def test_load_state_dict_loads_in_place():
    model = TwoLayer()
    weight, array = model.fc1.weight, model.fc1.weight.data
    model.load_state_dict(TwoLayer().state_dict())
    assert model.fc1.weight is weight and model.fc1.weight.data is array


def test_load_state_dict_reports_every_problem():
    model = TwoLayer()
    state = model.state_dict()
    state.pop("fc2.bias")
    state["fc9.weight"] = np.zeros((2, 2), np.float32)
    state["fc1.weight"] = np.zeros((4, 3), np.float32)
    before = model.fc1.bias.data.copy()
    state["fc1.bias"] = np.zeros(5, np.float32)
    with pytest.raises(ValueError) as error:
        model.load_state_dict(state)
    message = str(error.value)
    assert "missing" in message and "fc2.bias" in message
    assert "unexpected" in message and "fc9.weight" in message
    assert "fc1.weight: checkpoint (4, 3) vs model (5, 3)" in message
    np.testing.assert_array_equal(model.fc1.bias.data, before)  # nothing changed on error

    del state["fc1.weight"]
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert missing == ["fc1.weight", "fc2.bias"] and unexpected == ["fc9.weight"]
    np.testing.assert_array_equal(model.fc1.bias.data, 0)
    with pytest.raises(ValueError, match=r"\(9,\) vs model \(5,\)"):
        model.load_state_dict({"fc1.bias": np.zeros(9)}, strict=False)  # shapes always checked


class WithTable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 4)
        self.register_buffer("table", Tensor(np.arange(8, dtype=np.float32).reshape(2, 4)))
        self.register_buffer("cache", Tensor(np.zeros(3, np.float32)), persistent=False)

    def forward(self, x):
        return self.fc(x) + self.table


def test_buffers_are_saved_and_moved_but_not_learnt():
    model = WithTable()
    assert [n for n, _ in model.named_parameters()] == ["fc.weight", "fc.bias"]
    assert [n for n, _ in model.named_buffers()] == ["table", "cache"]
    assert set(model.state_dict()) == {"fc.weight", "fc.bias", "table"}  # cache: not persistent
    other = WithTable()
    other.table.data[...] = 0
    other.load_state_dict(model.state_dict())
    np.testing.assert_array_equal(other.table.data, model.table.data)
    out = model(tm.randn(2, 4))
    out.sum().backward()
    assert model.table.grad is None and not model.table.requires_grad


def test_to_moves_everything_in_place(device):
    model = WithTable().eval()
    x = tm.randn(2, 4)
    expected = model(x).numpy()
    weight = model.fc.weight
    assert model.to(device) is model
    assert model.fc.weight is weight                      # the same Parameter objects
    assert all(t.device == device for t in [*model.parameters(), *model.buffers()])
    assert model.device == device
    np.testing.assert_allclose(model(x.to(device)).numpy(), expected, rtol=1e-5, atol=1e-6)
    model.to("cpu")
    assert all(t.device == "cpu" for t in [*model.parameters(), *model.buffers()])


def test_to_dtype_casts_floating_parameters():
    model = WithTable().to(dtype=np.float64)
    assert all(t.dtype == np.float64 for t in [*model.parameters(), *model.buffers()])
    assert model(tm.Tensor(np.ones((1, 4)))).dtype == np.float64


def test_repr_shows_the_tree():
    text = repr(nn.TransformerBlock(8, 2, context_dim=4))
    for part in ("(ln1): LayerNorm(8", "(attn): MultiHeadAttention(", "dim=8, num_heads=2",
                 "(q): Linear(8, 8, bias=True)", "(k): Linear(4, 8", "(1): GELU()"):
        assert part in text


# ------------------------------------------------------------------ layers
def test_linear_is_x_times_w_transposed_plus_b():
    layer = nn.Linear(4, 3)
    x = np.random.default_rng(0).standard_normal((2, 5, 4)).astype(np.float32)
    expected = x @ layer.weight.data.T + layer.bias.data
    np.testing.assert_allclose(layer(Tensor(x)).numpy(), expected, rtol=1e-5, atol=1e-6)
    assert nn.Linear(4, 3, bias=False).bias is None


def test_initialisation_follows_pytorch_and_the_seed():
    fan_in = 64
    layer = nn.Linear(fan_in, 256, generator=seeded(3))
    bound = 1 / np.sqrt(fan_in)
    w = layer.weight.data
    assert np.abs(w).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert abs(w.std() - bound / np.sqrt(3)) < 0.05 * bound  # the std of U(−b, b) is b/√3
    np.testing.assert_array_equal(nn.Linear(fan_in, 256, generator=seeded(3)).weight.data, w)
    conv = nn.Conv2d(3, 8, 5, generator=seeded(0))
    assert np.abs(conv.weight.data).max() <= 1 / np.sqrt(3 * 5 * 5)
    embed = nn.Embedding(1000, 16, generator=seeded(0))
    assert abs(embed.weight.data.std() - 1) < 0.05
    norm = nn.LayerNorm(6)
    np.testing.assert_array_equal(norm.weight.data, 1)
    np.testing.assert_array_equal(norm.bias.data, 0)


def test_embedding_looks_up_rows(device):
    embed = nn.Embedding(10, 3).to(device)
    ids = np.array([[1, 9], [1, 0]])
    np.testing.assert_array_equal(embed(backend.to_device(ids, device)).numpy(),
                                  embed.weight.numpy()[ids])


def test_layer_norm_and_group_norm_normalise():
    x = Tensor(np.random.default_rng(0).normal(3.0, 2.0, (4, 6, 8)).astype(np.float32))
    ln = nn.LayerNorm(8, eps=1e-6)
    ln.weight.data[...] = 2.0
    ln.bias.data[...] = 0.5
    y = ln(x).numpy()
    np.testing.assert_allclose(y.mean(-1), 0.5, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 2.0, rtol=1e-4)

    gn = nn.GroupNorm(3, 6)
    y = gn(x.reshape(4, 6, 2, 4)).numpy().reshape(4, 3, 2 * 2 * 4)  # (B, groups, rest)
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(-1), 1, rtol=1e-3)
    with pytest.raises(ValueError, match="divisible"):
        nn.GroupNorm(4, 6)


def test_conv2d_passes_stride_and_padding():
    conv = nn.Conv2d(2, 3, 3, stride=2, padding=1)
    x = np.random.default_rng(0).standard_normal((1, 2, 5, 5)).astype(np.float32)
    out = conv(Tensor(x)).numpy()
    assert out.shape == (1, 3, 3, 3)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    w, b = conv.weight.data, conv.bias.data
    for i in range(3):
        for j in range(3):
            patch = padded[0, :, 2 * i:2 * i + 3, 2 * j:2 * j + 3]
            expected = np.einsum("chw,ochw->o", patch, w) + b
            np.testing.assert_allclose(out[0, :, i, j], expected, rtol=1e-5, atol=1e-6)


def test_activation_modules():
    x = Tensor(np.linspace(-3, 3, 13, dtype=np.float32))
    v = x.numpy()
    np.testing.assert_allclose(nn.ReLU()(x).numpy(), np.maximum(v, 0))
    np.testing.assert_allclose(nn.SiLU()(x).numpy(), v / (1 + np.exp(-v)), rtol=1e-5, atol=1e-6)
    gelu = nn.GELU()(x).numpy()  # exact or tanh form: both agree with x·Φ(x) to ~1e-3
    from math import erf
    np.testing.assert_allclose(gelu, [t * 0.5 * (1 + erf(t / np.sqrt(2))) for t in v], atol=1e-3)
    assert nn.Identity()(x) is x


# --------------------------------------------------------------- attention
def attention_reference(x, context, mha, mask=None):
    """Multi-head attention written head by head in NumPy (float64)."""
    D, H = mha.dim, mha.num_heads
    d = D // H
    W = {n: p.numpy().astype(np.float64) for n, p in mha.named_parameters()}
    source = x if context is None else context
    q = x @ W["q.weight"].T + W["q.bias"]
    k = source @ W["k.weight"].T + W["k.bias"]
    v = source @ W["v.weight"].T + W["v.bias"]
    heads = []
    for h in range(H):
        cut = slice(h * d, (h + 1) * d)
        scores = q[..., cut] @ k[..., cut].swapaxes(-1, -2) / np.sqrt(d)
        if mask is not None:
            scores = np.where(mask, scores, -np.inf)
        weights = np.exp(scores - scores.max(-1, keepdims=True))
        weights /= weights.sum(-1, keepdims=True)
        heads.append(weights @ v[..., cut])
    return np.concatenate(heads, axis=-1) @ W["out.weight"].T + W["out.bias"]


@FAST
@given(batch=st.integers(1, 3), tq=st.integers(1, 5), tk=st.integers(1, 4),
       heads=st.sampled_from([1, 2, 4]), head_dim=st.integers(1, 4), cross=st.booleans(),
       seed=st.integers(0, 1000))
def test_multi_head_attention_matches_a_head_by_head_reference(batch, tq, tk, heads, head_dim,
                                                               cross, seed):
    rng = np.random.default_rng(seed)
    dim = heads * head_dim
    mha = nn.MultiHeadAttention(dim, heads, context_dim=3 if cross else None,
                                generator=seeded(seed))
    x = rng.standard_normal((batch, tq, dim)).astype(np.float32)
    context = rng.standard_normal((batch, tk, 3)).astype(np.float32) if cross else None
    mask = rng.random((batch, tk if cross else tq)) < 0.7
    mask[:, 0] = True                                  # every query can see at least one key
    out = mha(Tensor(x), None if context is None else Tensor(context), mask=mask)
    expected = attention_reference(x.astype(np.float64), context, mha, mask[:, None, :])
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-4, atol=1e-5)


def test_masked_keys_have_no_influence():
    mha = nn.MultiHeadAttention(8, 2, context_dim=6)
    rng = np.random.default_rng(0)
    x = Tensor(rng.standard_normal((2, 3, 8)).astype(np.float32))
    context = rng.standard_normal((2, 5, 6)).astype(np.float32)
    padding = np.array([[True] * 5, [True, True, False, False, False]])
    changed = context.copy()
    changed[1, 2:] = 100.0                              # "padding tokens" with wild values
    a = mha(x, Tensor(context), mask=padding).numpy()
    b = mha(x, Tensor(changed), mask=padding).numpy()
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-6)


def test_causal_mask_hides_the_future():
    T = 5
    mha = nn.MultiHeadAttention(8, 2)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, T, 8)).astype(np.float32)
    causal = np.tril(np.ones((T, T), bool))[None, None]   # (1, 1, T, T)
    y = x.copy()
    y[:, 3:] += 1.0                                        # change only the last tokens
    a, b = mha(Tensor(x), mask=causal).numpy(), mha(Tensor(y), mask=causal).numpy()
    np.testing.assert_allclose(a[:, :3], b[:, :3], rtol=1e-6, atol=1e-6)
    assert not np.allclose(a[:, 3:], b[:, 3:])


def test_self_attention_is_permutation_equivariant():
    # Without positions or a mask, reordering the tokens reorders the outputs.
    mha = nn.MultiHeadAttention(8, 4)
    x = np.random.default_rng(1).standard_normal((2, 6, 8)).astype(np.float32)
    order = np.array([3, 0, 5, 1, 4, 2])
    a = mha(Tensor(x)).numpy()
    b = mha(Tensor(x[:, order])).numpy()
    np.testing.assert_allclose(a[:, order], b, rtol=1e-5, atol=1e-6)


def test_attention_rejects_bad_inputs():
    self_attn, cross = nn.MultiHeadAttention(8, 2), nn.MultiHeadAttention(8, 2, context_dim=4)
    x = tm.randn(2, 3, 8)
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiHeadAttention(8, 3)
    with pytest.raises(ValueError, match="cross-attention"):
        cross(x)
    with pytest.raises(ValueError, match="self-attention"):
        self_attn(x, tm.randn(2, 3, 4))
    with pytest.raises(ValueError, match=r"\(B, Tk\)"):
        cross(x, tm.randn(2, 5, 4), mask=np.ones((2, 4), bool))
    with pytest.raises(ValueError, match="broadcast"):
        self_attn(x, mask=np.ones((2, 5, 3, 3), bool))
    with pytest.raises(TypeError, match="boolean"):
        self_attn(x, mask=np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(B, T, 8\)"):
        self_attn(tm.randn(2, 3, 6))


def test_attention_on_every_device(device):
    mha = nn.MultiHeadAttention(8, 2, context_dim=4)
    x, context = tm.randn(2, 3, 8), tm.randn(2, 5, 4)
    mask = np.array([[True] * 5, [True, False, True, False, False]])
    expected = mha(x, context, mask=mask).numpy()
    mha.to(device)
    out = mha(x.to(device), context.to(device), mask=mask)   # a NumPy mask is moved for you
    assert out.device == device
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-5, atol=1e-6)


@FAST
@given(batch=st.integers(1, 2), tq=st.integers(1, 4), tk=st.integers(1, 4),
       heads=st.sampled_from([1, 2]), cross=st.booleans(), causal=st.booleans(),
       seed=st.integers(0, 1000))
def test_attention_gradients_match_finite_differences(batch, tq, tk, heads, cross, causal, seed):
    rng = np.random.default_rng(seed)
    dim = 2 * heads
    mha = nn.MultiHeadAttention(dim, heads, context_dim=3 if cross else None,
                                generator=seeded(seed)).to(dtype=np.float64)
    inputs = [rng.standard_normal((batch, tq, dim))]
    if cross:
        inputs.append(rng.standard_normal((batch, tk, 3)))
        mask = rng.random((batch, tk)) < 0.6                      # a key padding mask
        mask[:, -1] = True
    elif causal:
        mask = np.tril(np.ones((tq, tq), bool))[None, None]       # (1, 1, T, T)
    else:
        mask = None
    check_directional(lambda x, *c: mha(x, *c, mask=mask), *inputs, seed=seed)


# ------------------------------------------------------------- transformer
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transformer_block_gradients_match_finite_differences(seed):
    rng = np.random.default_rng(seed)
    block = nn.TransformerBlock(8, 2, context_dim=6, dropout=0.1, generator=seeded(seed))
    block.to(dtype=np.float64).eval()   # dropout off: the function must be deterministic
    padding = np.array([[True, True, False], [True, True, True]])
    check_directional(lambda x, c: block(x, c, context_mask=padding),
                      rng.standard_normal((2, 4, 8)), rng.standard_normal((2, 3, 6)), seed=seed)
    self_only = nn.TransformerBlock(8, 4, mlp_ratio=2.0, generator=seeded(seed))
    self_only.to(dtype=np.float64)
    check_directional(self_only, rng.standard_normal((2, 5, 8)), seed=seed)


def test_transformer_block_is_pre_norm_residual():
    # With the last layer of every branch zeroed, each branch adds 0: the block is x ↦ x.
    block = nn.TransformerBlock(8, 2, context_dim=4)
    for linear in (block.attn.out, block.xattn.out, block.mlp[2]):
        linear.weight.data[...] = 0
        linear.bias.data[...] = 0
    x = tm.randn(2, 3, 8)
    np.testing.assert_array_equal(block(x, tm.randn(2, 2, 4)).numpy(), x.numpy())


def test_transformer_block_dropout_and_modes():
    block = nn.TransformerBlock(8, 2, dropout=0.5)
    x = tm.randn(2, 3, 8)
    assert not np.array_equal(block(x).numpy(), block(x).numpy())   # training: random
    block.eval()
    np.testing.assert_array_equal(block(x).numpy(), block(x).numpy())
    with pytest.raises(ValueError, match="no cross-attention"):
        block(x, tm.randn(2, 2, 8))
    with pytest.raises(ValueError, match="cross-attention"):
        nn.TransformerBlock(8, 2, context_dim=4)(x)


def test_transformer_block_on_every_device(device):
    block = nn.TransformerBlock(8, 2, context_dim=4).eval()
    x, context = tm.randn(2, 3, 8), tm.randn(2, 2, 4)
    expected = block(x, context).numpy()
    block.to(device)
    np.testing.assert_allclose(block(x.to(device), context.to(device)).numpy(), expected,
                               rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------ fused forms
def test_sequential_runs_linear_then_relu_as_one_operation(rng):
    fused = nn.Sequential(nn.Linear(6, 8, generator=seeded(1)), nn.ReLU(),
                          nn.Linear(8, 3, generator=seeded(2)))
    x = Tensor(rng.standard_normal((4, 6)).astype(np.float32), requires_grad=True)
    hidden = fused[0].fused_with(fused[1])(x)
    assert type(hidden._fn).__name__ == "LinearReLU"
    y = fused(x)
    y.backward(np.ones(y.shape, np.float32))
    grads = [x.grad] + [p.grad for p in fused.parameters()]
    x.grad = None
    fused.zero_grad()
    composed = fused[2](fused[1](fused[0](x)))                  # one module after the other
    composed.backward(np.ones(y.shape, np.float32))
    np.testing.assert_array_equal(y.numpy(), composed.numpy())
    for got, want in zip(grads, [x.grad] + [p.grad for p in fused.parameters()]):
        np.testing.assert_array_equal(got, want)


def test_sequential_fuses_only_what_it_knows():
    class LeakyReLU(nn.ReLU):
        def forward(self, x):
            return tm.functional.maximum(x, x * 0.1)

    linear = nn.Linear(3, 2)
    assert linear.fused_with(LeakyReLU()) is None and linear.fused_with(nn.GELU()) is None
    assert nn.ReLU().fused_with(linear) is None
    x = Tensor(np.full((1, 3), -1.0, np.float32))
    out = nn.Sequential(linear, LeakyReLU())(x).numpy()
    np.testing.assert_allclose(out, np.maximum(linear(x).numpy(), 0.1 * linear(x).numpy()))


@pytest.mark.parametrize("causal", [False, True])
def test_self_attention_gradients_equal_the_composed_projections(rng, causal):
    # The packed path (stacked q/k/v weights, packed attention) against three Linears,
    # heads cut by reshapes and the composed attention, in float64: every gradient.
    from tinymuse.ops import reference as ref
    mha = nn.MultiHeadAttention(6, 3, generator=seeded(3)).to(dtype=np.float64)
    x = Tensor(rng.standard_normal((2, 5, 6)), requires_grad=True)
    mask = np.tril(np.ones((5, 5), bool))[None, None] if causal else None
    g = rng.standard_normal((2, 5, 6))
    mha(x, mask=mask).backward(g)
    fused = [x.grad] + [p.grad for p in mha.parameters()]
    x.grad = None
    mha.zero_grad()

    def heads(t):
        return t.reshape(2, 5, 3, 2).transpose(1, 2)

    q, k, v = (heads(layer(x)) for layer in (mha.q, mha.k, mha.v))
    y = ref.attention_composed(q, k, v, mask).transpose(1, 2).reshape(2, 5, 6)
    mha.out(y).backward(g)
    for got, want in zip(fused, [x.grad] + [p.grad for p in mha.parameters()]):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


def test_self_attention_with_a_cache_equals_the_packed_path(rng):
    mha = nn.MultiHeadAttention(8, 2, generator=seeded(4))
    x = rng.standard_normal((2, 4, 8)).astype(np.float32)
    causal = np.tril(np.ones((4, 4), bool))[None, None]
    whole = mha(Tensor(x), mask=causal).numpy()
    cache = nn.KeyValueCache()
    with tm.no_grad():
        rows = [mha(Tensor(x[:, i:i + 1]), cache=cache).numpy() for i in range(4)]
    np.testing.assert_allclose(np.concatenate(rows, axis=1), whole, rtol=1e-5, atol=1e-6)
