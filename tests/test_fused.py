"""Every fused operation equals the same operation composed from primitives
(tinymuse.ops.reference), in values AND in gradients.

The composed versions get their backward from the chain rule through small,
separately tested primitives, so agreement here checks each hand-written fused
backward against an independent derivation, on random inputs.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import backend
from tinymuse.functional import (cross_entropy, gelu, layer_norm, linear, log_softmax,
                                 packed_self_attention, scaled_dot_product_attention, softmax)
from tinymuse.gradcheck import check_directional, check_gradients
from tinymuse.ops import reference as ref
from tinymuse.ops.elementwise import BLOCK_ELEMENTS, gelu_backward_rows, gelu_forward_rows
from tinymuse.tensor import Tensor

FAST = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)
shapes = st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple)


def assert_same(fused, composed, *arrays, seed=0, rtol=1e-9, atol=1e-11):
    """Run both on float64 copies of ``arrays``, backpropagate the same random
    upstream gradient, and compare outputs and every input's gradient."""
    results = []
    for f in (fused, composed):
        tensors = [Tensor(np.array(a, dtype=np.float64), requires_grad=True) for a in arrays]
        out = f(*tensors)
        out.backward(np.random.default_rng(seed).standard_normal(out.shape))
        grads = [t.grad if t.grad is not None else np.zeros(t.shape) for t in tensors]
        results.append((out.numpy(), grads))
    (out_f, grads_f), (out_c, grads_c) = results
    assert out_f.shape == out_c.shape
    np.testing.assert_allclose(out_f, out_c, rtol=rtol, atol=atol, err_msg="values differ")
    for k, (gf, gc) in enumerate(zip(grads_f, grads_c)):
        np.testing.assert_allclose(gf, gc, rtol=rtol, atol=atol, err_msg=f"gradient of input {k}")


def assert_same_float32_forward(fused, composed, device, *arrays, rtol=1e-5, atol=1e-6):
    tensors = [Tensor(backend.to_device(np.asarray(a, np.float32), device)) for a in arrays]
    out_f, out_c = fused(*tensors), composed(*tensors)
    assert out_f.dtype == np.float32 and out_c.dtype == np.float32
    assert out_f.device == device
    np.testing.assert_allclose(out_f.numpy(), out_c.numpy(), rtol=rtol, atol=atol)


# ----------------------------------------------------------------- softmax
@FAST
@given(shape=shapes, data=st.data(), scale=st.floats(0.1, 20.0), seed=seeds)
def test_softmax_and_log_softmax_match_composed(shape, data, scale, seed):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    assert_same(lambda t: softmax(t, axis), lambda t: ref.softmax_composed(t, axis), x, seed=seed)
    assert_same(lambda t: log_softmax(t, axis), lambda t: ref.log_softmax_composed(t, axis), x,
                seed=seed)


def test_softmax_float32_on_device(device):
    x = 5 * np.random.default_rng(0).standard_normal((4, 9))
    assert_same_float32_forward(softmax, ref.softmax_composed, device, x)
    assert_same_float32_forward(log_softmax, ref.log_softmax_composed, device, x, atol=1e-5)


# ----------------------------------------------------------- cross-entropy
ce_cases = st.fixed_dictionaries({
    "lead": st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    "classes": st.integers(1, 6), "seed": seeds, "scale": st.floats(0.1, 10.0),
    "weight": st.sampled_from(["none", "mask", "real", "broadcast"]),
    "ignore": st.booleans(), "eps": st.sampled_from([0.0, 0.1, 0.3]),
    "reduction": st.sampled_from(["mean", "sum", "none"])})


@FAST
@given(case=ce_cases)
def test_cross_entropy_matches_composed(case):
    rng = np.random.default_rng(case["seed"])
    lead, classes = case["lead"], case["classes"]
    logits = case["scale"] * rng.standard_normal(lead + (classes,))
    targets = rng.integers(0, classes, lead)
    weight = {"none": None,
              "mask": rng.random(lead) < 0.5,               # the masked-token loss
              "real": rng.random(lead),
              "broadcast": rng.random(lead[-1:])}[case["weight"]]
    if case["weight"] == "mask":
        weight.reshape(-1)[0] = True                       # at least one position counts
    if case["ignore"] and targets.size > 1:
        targets.reshape(-1)[-1] = -100
    kwargs = dict(weight=weight, label_smoothing=case["eps"], reduction=case["reduction"])
    assert_same(lambda z: cross_entropy(z, targets, **kwargs),
                lambda z: ref.cross_entropy_composed(z, targets, **kwargs), logits,
                seed=case["seed"])


def test_cross_entropy_float32_on_device(device):
    rng = np.random.default_rng(1)
    z = 3 * rng.standard_normal((2, 5, 7))
    t = backend.to_device(rng.integers(0, 7, (2, 5)), device)
    mask = rng.random((2, 5)) < 0.5
    mask[0, 0] = True
    mask = backend.to_device(mask, device)
    kwargs = dict(weight=mask, label_smoothing=0.1)
    assert_same_float32_forward(lambda z: cross_entropy(z, t, **kwargs),
                                lambda z: ref.cross_entropy_composed(z, t, **kwargs), device, z)


# -------------------------------------------------------------- layer norm
@FAST
@given(shape=shapes, affine=st.sampled_from(["both", "weight", "bias", "none"]),
       scale=st.floats(0.01, 100.0), seed=seeds)
def test_layer_norm_matches_composed(shape, affine, scale, seed):
    shape = shape[:-1] + (shape[-1] + 1,)          # at least two features to normalise
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape) + 3 * rng.standard_normal()
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    if affine == "both":
        arrays, split = (x, w, b), lambda x, w, b: (x, w, b)
    elif affine == "weight":
        arrays, split = (x, w), lambda x, w: (x, w, None)
    elif affine == "bias":
        arrays, split = (x, b), lambda x, b: (x, None, b)
    else:
        arrays, split = (x,), lambda x: (x, None, None)
    assert_same(lambda *t: layer_norm(*split(*t)), lambda *t: ref.layer_norm_composed(*split(*t)),
                *arrays, seed=seed, rtol=1e-8, atol=1e-10)


def test_layer_norm_float32_on_device(device):
    rng = np.random.default_rng(2)
    x, w, b = 4 * rng.standard_normal((3, 5, 16)) + 1, rng.standard_normal(16), rng.standard_normal(16)
    assert_same_float32_forward(layer_norm, ref.layer_norm_composed, device, x, w, b, atol=1e-5)


# --------------------------------------------------------------- attention
attention_cases = st.fixed_dictionaries({
    "batch": st.lists(st.integers(1, 2), min_size=0, max_size=2).map(tuple),
    "tq": st.integers(1, 4), "tk": st.integers(1, 4), "d": st.integers(1, 4),
    "dv": st.integers(1, 3), "seed": seeds, "shared_kv": st.booleans(),
    "mask": st.sampled_from(["none", "random", "causal", "empty_row"])})


def make_mask(kind, tq, tk, rng):
    if kind == "none":
        return None
    if kind == "causal":
        return np.tril(np.ones((tq, tk), bool))
    mask = rng.random((tq, tk)) < 0.6
    if kind == "empty_row":
        mask[0] = False                             # query 0 may attend to nothing
    return mask


@FAST
@given(case=attention_cases)
def test_attention_matches_composed(case):
    rng = np.random.default_rng(case["seed"])
    batch = case["batch"]
    kv_batch = (1,) * len(batch) if case["shared_kv"] else batch
    q = rng.standard_normal(batch + (case["tq"], case["d"]))
    k = rng.standard_normal(kv_batch + (case["tk"], case["d"]))
    v = rng.standard_normal(kv_batch + (case["tk"], case["dv"]))
    mask = make_mask(case["mask"], case["tq"], case["tk"], rng)
    assert_same(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask),
                lambda q, k, v: ref.attention_composed(q, k, v, mask), q, k, v, seed=case["seed"])


def test_attention_float32_on_device(device):
    rng = np.random.default_rng(3)
    q, k, v = (rng.standard_normal((2, 4, 6, 8)) for _ in range(3))
    for kind in ("none", "causal", "empty_row"):
        mask = make_mask(kind, 6, 6, rng)
        mask = None if mask is None else backend.to_device(mask, device)
        assert_same_float32_forward(
            lambda q, k, v: scaled_dot_product_attention(q, k, v, mask),
            lambda q, k, v: ref.attention_composed(q, k, v, mask), device, q, k, v)


# -------------------------------------------------------------------- GELU
@FAST
@given(shape=shapes, scale=st.floats(0.1, 10.0), seed=seeds)
def test_gelu_matches_composed(shape, scale, seed):
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    assert_same(gelu, ref.gelu_composed, x, seed=seed)


def test_gelu_float32_on_device(device):
    x = np.linspace(-8, 8, 101)
    assert_same_float32_forward(gelu, ref.gelu_composed, device, x)


def test_gelu_over_many_cache_blocks_matches_composed():
    # More rows than one block holds: the blocked passes must meet at the seams.
    rows = 3 * BLOCK_ELEMENTS // 50 + 7
    x = 4 * np.random.default_rng(4).standard_normal((rows, 50))
    assert_same(gelu, ref.gelu_composed, x, seed=4)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_gelu_on_several_threads_gives_the_bits_of_one(monkeypatch, threads):
    # The blocks are shared out over threads; each must write its own rows, all of them.
    rng = np.random.default_rng(5)
    z = 3 * rng.standard_normal((5 * BLOCK_ELEMENTS // 64 + 3, 64)).astype(np.float32)
    grad = rng.standard_normal(z.shape).astype(np.float32)
    results = {}
    for count in ("1", threads):
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", count)
        y, s = gelu_forward_rows(z)
        results[count] = (y, s, gelu_backward_rows(z, s, grad))
    for one, several in zip(results["1"], results[threads]):
        np.testing.assert_array_equal(one, several)


# ------------------------------------------------------ linear + ReLU, fused
linear_cases = st.fixed_dictionaries({
    "lead": st.lists(st.integers(1, 3), min_size=1, max_size=2).map(tuple),
    "fan_in": st.integers(1, 5), "fan_out": st.integers(1, 5), "bias": st.booleans(),
    "seed": seeds})


@FAST
@given(case=linear_cases)
def test_linear_relu_matches_composed(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal(case["lead"] + (case["fan_in"],))
    w = rng.standard_normal((case["fan_out"], case["fan_in"]))
    if case["bias"]:
        arrays, split = (x, w, rng.standard_normal(case["fan_out"])), lambda x, w, b: (x, w, b)
    else:
        arrays, split = (x, w), lambda x, w: (x, w, None)
    assert_same(lambda *t: linear(*split(*t), activation="relu"),
                lambda *t: ref.linear_relu_composed(*split(*t)), *arrays, seed=case["seed"])


def test_linear_relu_gradients_match_finite_differences():
    rng = np.random.default_rng(5)
    x, w, b = rng.standard_normal((2, 3, 4)), rng.standard_normal((5, 4)), rng.standard_normal(5)
    check_gradients(lambda x, w, b: linear(x, w, b, activation="relu"), x, w, b)


def test_linear_relu_float32_on_device(device):
    rng = np.random.default_rng(6)
    x, w, b = rng.standard_normal((4, 7, 6)), rng.standard_normal((9, 6)), rng.standard_normal(9)
    assert_same_float32_forward(lambda x, w, b: linear(x, w, b, activation="relu"),
                                ref.linear_relu_composed, device, x, w, b)


def test_linear_refuses_an_unknown_activation():
    with pytest.raises(ValueError, match="activation"):
        linear(Tensor(np.ones((2, 3))), Tensor(np.ones((4, 3))), activation="tanh")


# ------------------------------------------- packed multi-head self-attention
packed_cases = st.fixed_dictionaries({
    "batch": st.integers(1, 2), "t": st.integers(1, 4), "heads": st.integers(1, 3),
    "d": st.integers(1, 3), "seed": seeds,
    "mask": st.sampled_from(["none", "random", "causal", "empty_row", "per_batch"])})


def packed_mask(kind, batch, t, rng):
    if kind == "per_batch":                         # (B, 1, T, T): one pattern per sample
        return (rng.random((batch, 1, t, t)) < 0.6) | np.eye(t, dtype=bool)
    return make_mask(kind, t, t, rng)


@FAST
@given(case=packed_cases)
def test_packed_self_attention_matches_composed(case):
    rng = np.random.default_rng(case["seed"])
    heads, t = case["heads"], case["t"]
    qkv = rng.standard_normal((case["batch"], t, 3 * heads * case["d"]))
    mask = packed_mask(case["mask"], case["batch"], t, rng)
    assert_same(lambda x: packed_self_attention(x, heads, mask),
                lambda x: ref.packed_self_attention_composed(x, heads, mask), qkv,
                seed=case["seed"])


def test_packed_self_attention_gradient_matches_finite_differences():
    rng = np.random.default_rng(7)
    qkv = rng.standard_normal((2, 5, 3 * 2 * 3))
    for mask in (None, np.tril(np.ones((5, 5), bool))):
        check_directional(lambda x, mask=mask: packed_self_attention(x, 2, mask), qkv, seed=7)
    check_gradients(lambda x: packed_self_attention(x, 2), rng.standard_normal((1, 3, 12)))


def test_packed_self_attention_float32_on_device(device):
    rng = np.random.default_rng(8)
    qkv = rng.standard_normal((2, 6, 3 * 4 * 8))
    for kind in ("none", "causal", "empty_row"):
        mask = make_mask(kind, 6, 6, rng)
        mask = None if mask is None else backend.to_device(mask, device)
        assert_same_float32_forward(
            lambda x, mask=mask: packed_self_attention(x, 4, mask),
            lambda x, mask=mask: ref.packed_self_attention_composed(x, 4, mask), device, qkv)


def test_packed_self_attention_refuses_bad_shapes():
    with pytest.raises(ValueError, match="3·D"):
        packed_self_attention(Tensor(np.ones((1, 2, 10))), 2)
    with pytest.raises(ValueError, match="does not broadcast"):
        packed_self_attention(Tensor(np.ones((1, 2, 12))), 2, mask=np.ones((3, 3), bool))
