"""Element-wise operations: values against NumPy, gradients against finite
differences (float64), broadcasting, scalars on either side, dtype rules."""
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinymuse.functional as F
from tinymuse import Tensor
from tinymuse.gradcheck import check_gradients

SETTINGS = settings(max_examples=25, deadline=None)


# ----------------------------------------------------------------- strategies
def values(shape, low=-2.0, high=2.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_subnormal=False))


small_shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=3)
broadcast_pairs = hnp.mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3,
                                                    min_side=1, max_side=3)


def away_from_zero(x, gap=0.1):
    """Shift values so none is within ``gap`` of 0 (a kink of abs and relu)."""
    return np.where(x >= 0, x + gap, x - gap)


def positive(x):
    return np.abs(x) + 0.2


@st.composite
def broadcast_arrays(draw, low=-2.0, high=2.0):
    shapes = draw(broadcast_pairs).input_shapes
    return [draw(values(s, low, high)) for s in shapes]


def gelu_formula(x):
    return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


UNARY = {  # name: (tinymuse function, NumPy reference, domain of the test values)
    "neg": (F.neg, np.negative, None),
    "exp": (F.exp, np.exp, None),
    "log": (F.log, np.log, positive),
    "sqrt": (F.sqrt, np.sqrt, positive),
    "abs": (F.abs, np.abs, away_from_zero),
    "tanh": (F.tanh, np.tanh, None),
    "sigmoid": (F.sigmoid, lambda x: 1 / (1 + np.exp(-x)), None),
    "relu": (F.relu, lambda x: np.maximum(x, 0), away_from_zero),
    "silu": (F.silu, lambda x: x / (1 + np.exp(-x)), None),
    "gelu": (F.gelu, gelu_formula, None),
}

BINARY = {  # name: (tinymuse function, NumPy reference, domain of the second operand)
    "add": (F.add, np.add, None),
    "sub": (F.sub, np.subtract, None),
    "mul": (F.mul, np.multiply, None),
    "div": (F.div, np.divide, away_from_zero),
    "maximum": (F.maximum, np.maximum, None),
    "minimum": (F.minimum, np.minimum, None),
}


# ------------------------------------------------------------------- unary
@pytest.mark.parametrize("name", UNARY)
@SETTINGS
@given(data=st.data())
def test_unary_gradients(name, data):
    fn, _, domain = UNARY[name]
    x = data.draw(values(data.draw(small_shapes)))
    check_gradients(fn, domain(x) if domain else x)


@pytest.mark.parametrize("name", UNARY)
def test_unary_values_float32_on_each_device(name, device, rng):
    fn, reference, domain = UNARY[name]
    x = rng.standard_normal((3, 4)) * 2
    x = (domain(x) if domain else x).astype(np.float32)
    out = fn(Tensor(x, device=device))
    assert out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), reference(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ binary
@pytest.mark.parametrize("name", BINARY)
@SETTINGS
@given(data=st.data())
def test_binary_gradients_with_broadcasting(name, data):
    fn, _, domain = BINARY[name]
    a, b = data.draw(broadcast_arrays())
    if name in ("maximum", "minimum"):  # keep a and b apart: a tie is a kink
        b = np.where(np.abs(a - b) < 0.1, b + 0.3, b)
    check_gradients(fn, a, domain(b) if domain else b)


@pytest.mark.parametrize("name", BINARY)
def test_binary_values_with_broadcasting_on_each_device(name, device, rng):
    fn, reference, domain = BINARY[name]
    a = rng.standard_normal((2, 1, 4)).astype(np.float32)
    b = rng.standard_normal((3, 1)).astype(np.float32)
    b = domain(b) if domain else b
    out = fn(Tensor(a, device=device), Tensor(b, device=device))
    assert out.shape == (2, 3, 4) and out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), reference(a, b), rtol=1e-6)


@SETTINGS
@given(data=st.data())
def test_pow_tensor_exponent_gradients(data):
    base, exponent = data.draw(broadcast_arrays())
    check_gradients(F.pow, positive(base), exponent)


@SETTINGS
@given(x=values((2, 3)), p=st.sampled_from([2, 3, -1, 0.5, 1.7, -2.5]))
def test_pow_scalar_exponent_gradients(x, p):
    check_gradients(lambda t: t ** p, positive(x))


@SETTINGS
@given(x=values((3,)), base=st.floats(0.3, 3.0))
def test_pow_scalar_base_gradients(x, base):
    check_gradients(lambda t: base ** t, x)


def test_pow_gradient_of_exponent_is_zero_at_a_zero_base():
    base = Tensor(np.array([0.0, 0.0, 2.0]), requires_grad=True)
    exponent = Tensor(np.array([2.0, 0.0, 3.0]), requires_grad=True)
    (base ** exponent).sum().backward()
    np.testing.assert_allclose(exponent.grad, [0.0, 0.0, 8 * math.log(2)])
    np.testing.assert_allclose(base.grad, [0.0, 0.0, 12.0])


@SETTINGS
@given(x=values((2, 3)), c=st.floats(-3, 3).filter(lambda c: abs(c) > 0.1))
def test_scalar_on_either_side(x, c):
    check_gradients(lambda t: (t + c) * (c - t) - c / (t * t + 1) + t / c, x)
    t = Tensor(x)
    np.testing.assert_allclose((c - t).numpy(), c - x)
    np.testing.assert_allclose((c / (t * t + 1)).numpy(), c / (x * x + 1))


def test_array_and_list_operands_join_the_tensor_device_and_dtype(device):
    t = Tensor(np.ones((2, 2), np.float32), device=device)
    for out in (t + [1.0, 2.0], [1.0, 2.0] * t, t - np.array([1.0, 2.0], np.float32)):
        assert out.dtype == np.float32 and out.device == device and out.shape == (2, 2)
    assert (Tensor(np.ones(2)) + [1, 2]).dtype == np.float64  # a list takes the tensor's dtype


def test_numpy_scalars_do_not_upcast_float32():
    t = Tensor(np.ones(3, np.float32))
    assert (t * np.float64(2.0)).dtype == np.float32
    assert (np.float64(2.0) * t).dtype == np.float32
    assert (t ** np.float64(2.0)).dtype == np.float32


def test_integer_tensors_meet_floats_as_float32():
    ints = Tensor([1, 2, 3])
    assert ints.dtype == np.int64
    assert (ints * 0.5).dtype == np.float32
    assert (ints / 2).dtype == np.float32
    assert (ints + Tensor([0.5, 0.5, 0.5])).dtype == np.float32
    assert (ints + 1).dtype == np.int64
    np.testing.assert_allclose((ints / 2).numpy(), [0.5, 1.0, 1.5])


def test_mixed_float_dtypes_raise_a_type_error_naming_both():
    a = Tensor(np.ones(3, np.float32))
    b = Tensor(np.ones(3, np.float64))
    for op in (F.add, F.sub, F.mul, F.div, F.pow, F.maximum, F.minimum):
        with pytest.raises(TypeError, match=r"float32.*float64.*\.float\(\)"):
            op(a, b)
    with pytest.raises(TypeError, match="float64.*float32"):
        F.where(Tensor([True, False, True]), b, a)


def test_shape_mismatch_raises_a_value_error_naming_both_shapes():
    a = Tensor(np.ones((2, 3), np.float32))
    b = Tensor(np.ones((4,), np.float32))
    for op in (F.add, F.mul, F.div, F.maximum, F.eq):
        with pytest.raises(ValueError, match=r"\(2, 3\) and \(4,\)"):
            op(a, b)


# --------------------------------------------------------------- extremes
def test_maximum_and_minimum_split_the_gradient_on_ties():
    a = Tensor(np.array([1.0, 2.0, 5.0]), requires_grad=True)
    b = Tensor(np.array([1.0, 3.0, 4.0]), requires_grad=True)
    F.maximum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0.5, 0.0, 1.0])
    np.testing.assert_allclose(b.grad, [0.5, 1.0, 0.0])
    a.zero_grad(), b.zero_grad()
    F.minimum(a, b).sum().backward()
    np.testing.assert_allclose(a.grad, [0.5, 1.0, 0.0])
    np.testing.assert_allclose(b.grad, [0.5, 0.0, 1.0])


def test_maximum_with_a_scalar_is_relu_like():
    x = Tensor(np.array([-1.0, 0.5, 2.0]), requires_grad=True)
    F.maximum(x, 0.0).sum().backward()
    np.testing.assert_allclose(x.grad, [0.0, 1.0, 1.0])


# ------------------------------------------------------------- activations
def test_sigmoid_is_stable_for_large_inputs():
    x = np.array([-1000.0, -100.0, -30.0, 0.0, 30.0, 100.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning from exp
        out64 = F.sigmoid(Tensor(x)).numpy()
        out32 = F.sigmoid(Tensor(x.astype(np.float32))).numpy()
    np.testing.assert_allclose(out64[1:-1], [math.exp(-100), 1 / (1 + math.exp(30)), 0.5,
                                             1 / (1 + math.exp(-30)), 1.0], rtol=1e-12)
    assert out64[0] == 0.0 and out64[-1] == 1.0
    assert out32.dtype == np.float32 and np.isfinite(out32).all()
    assert out32[2] > 0  # σ(−30) ≈ 9.4e−14 keeps its relative precision in float32
    np.testing.assert_allclose(out32[2], 1 / (1 + math.exp(30)), rtol=1e-5)


def test_gelu_is_close_to_the_exact_erf_gelu():
    x = np.linspace(-6, 6, 241)
    exact = 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
    assert np.max(np.abs(F.gelu(Tensor(x)).numpy() - exact)) < 1e-3


# ------------------------------------------------------------------ selection
@SETTINGS
@given(data=st.data())
def test_where_gradients_with_broadcasting(data):
    shapes = data.draw(hnp.mutually_broadcastable_shapes(num_shapes=3, max_dims=3, max_side=3))
    cond_shape, a_shape, b_shape = shapes.input_shapes
    condition = data.draw(hnp.arrays(np.bool_, cond_shape))
    a, b = data.draw(values(a_shape)), data.draw(values(b_shape))
    check_gradients(lambda x, y: F.where(Tensor(condition), x, y), a, b)
    out = F.where(Tensor(condition), Tensor(a), Tensor(b)).numpy()
    np.testing.assert_array_equal(out, np.where(condition, a, b))


def test_where_with_scalars_and_a_non_bool_condition():
    x = Tensor(np.array([1.0, -2.0, 3.0], np.float32), requires_grad=True)
    out = F.where(x > 0, x, 0.0)
    assert out.dtype == np.float32
    out.sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 0.0, 1.0])
    assert F.where(Tensor([True, False]), 1.0, 0.0).dtype == np.float32
    with pytest.raises(TypeError, match="bool"):
        F.where(Tensor([1.0, 0.0]), 1.0, 0.0)


@SETTINGS
@given(data=st.data())
def test_masked_fill_gradients(data):
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3))
    # the mask may drop leading axes and shrink any axis to 1, never grow one
    kept = data.draw(st.integers(0, len(shape)))
    mask_shape = tuple(data.draw(st.sampled_from([n, 1])) for n in shape[len(shape) - kept:])
    mask = data.draw(hnp.arrays(np.bool_, mask_shape))
    x = data.draw(values(shape))
    check_gradients(lambda t: F.masked_fill(t, Tensor(mask), -7.0), x)
    np.testing.assert_array_equal(F.masked_fill(Tensor(x), Tensor(mask), -7.0).numpy(),
                                  np.where(mask, -7.0, x))


def test_masked_fill_with_minus_infinity_and_a_bad_mask(device):
    scores = Tensor(np.zeros((2, 3), np.float32), device=device)
    allowed = Tensor(np.array([[True, False, True]]), device=device)
    out = F.masked_fill(scores, ~allowed, float("-inf"))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(np.isinf(out.numpy()), [[False, True, False]] * 2)
    with pytest.raises(ValueError, match="mask"):
        F.masked_fill(Tensor(np.zeros(3)), Tensor(np.ones((2, 3), bool)), 0.0)


@SETTINGS
@given(x=values((3, 4), -3, 3), low=st.floats(-2, 0), width=st.floats(0.5, 3))
def test_clip_gradients(x, low, width):
    high = low + width
    x = np.where(np.abs(x - low) < 0.05, x + 0.1, x)  # stay off the corners of clip
    x = np.where(np.abs(x - high) < 0.05, x + 0.1, x)
    check_gradients(lambda t: F.clip(t, low, high), x)
    check_gradients(lambda t: F.clip(t, low, None), x)
    check_gradients(lambda t: F.clip(t, None, high), x)
    np.testing.assert_array_equal(F.clip(Tensor(x), low, high).numpy(), np.clip(x, low, high))


def test_clip_passes_the_gradient_only_inside_the_bounds():
    x = Tensor(np.array([-2.0, -1.0, 0.0, 1.0, 2.0]), requires_grad=True)
    F.clip(x, -1.0, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0, 1.0, 0.0])
    with pytest.raises(ValueError):
        F.clip(x, None, None)


# ---------------------------------------------------------------- comparisons
@pytest.mark.parametrize("name, reference", [
    ("eq", np.equal), ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal),
    ("gt", np.greater), ("ge", np.greater_equal)])
def test_comparisons_are_bool_and_not_differentiable(name, reference, device):
    a = np.array([[1.0, 2.0, 3.0]], np.float32)
    b = np.array([[2.0], [3.0]], np.float32)
    x = Tensor(a, device=device, requires_grad=True)
    out = getattr(F, name)(x, Tensor(b, device=device))
    assert out.dtype == np.bool_ and not out.requires_grad and out.device == device
    np.testing.assert_array_equal(out.numpy(), reference(a, b))
    np.testing.assert_array_equal(getattr(F, name)(2.0, x).numpy(), reference(2.0, a))
    np.testing.assert_array_equal(getattr(F, name)(x, 2).numpy(), reference(a, 2))


def test_comparison_operators_and_hashing():
    x = Tensor([1.0, 2.0, 3.0])
    np.testing.assert_array_equal((x == 2).numpy(), [False, True, False])
    np.testing.assert_array_equal((2 < x).numpy(), [False, False, True])
    np.testing.assert_array_equal((x != x).numpy(), [False] * 3)
    assert (x == None) is False  # noqa: E711 (unrelated types compare unequal)
    assert len({x, Tensor([1.0, 2.0, 3.0])}) == 2  # hashed by identity
    with pytest.raises(ValueError, match="ambiguous"):
        bool(x == x)
    assert bool(Tensor(1.0) == 1.0)
