"""Reductions: values against NumPy over every kind of ``axis``, gradients
against finite differences (float64), ties in max/min, argmax."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinymuse.functional as F
from tinymuse import Tensor
from tinymuse.gradcheck import check_gradients

SETTINGS = settings(max_examples=30, deadline=None)

shapes = hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=4)


@st.composite
def array_and_axis(draw, distinct=False):
    """An array and an ``axis`` argument: None, an int or a tuple, negatives included."""
    shape = draw(shapes)
    if distinct:  # no ties (a tie is a kink of max and min): a shuffled ramp plus jitter
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        x = rng.permutation(int(np.prod(shape))).reshape(shape) + 0.5 * rng.random(shape)
    else:
        x = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3, 3, allow_subnormal=False)))
    ndim = len(shape)
    axis = draw(st.one_of(
        st.none(),
        st.integers(-ndim, ndim - 1),
        st.lists(st.integers(0, ndim - 1), min_size=0, max_size=ndim, unique=True).map(
            lambda axes: tuple(a - ndim if a % 2 else a for a in axes))))  # mix signs
    return x, axis


REDUCTIONS = {
    "sum": (F.sum, np.sum),
    "mean": (F.mean, np.mean),
    "max": (F.max, np.max),
    "min": (F.min, np.min),
    "var": (F.var, np.var),
}


@pytest.mark.parametrize("name", REDUCTIONS)
@SETTINGS
@given(data=st.data(), keepdims=st.booleans())
def test_reduction_values_and_gradients(name, data, keepdims):
    fn, reference = REDUCTIONS[name]
    x, axis = data.draw(array_and_axis(distinct=name in ("max", "min")))
    out = fn(Tensor(x), axis=axis, keepdims=keepdims)
    np.testing.assert_allclose(out.numpy(), reference(x, axis=axis, keepdims=keepdims),
                               rtol=1e-12, atol=1e-12)
    check_gradients(lambda t: fn(t, axis=axis, keepdims=keepdims), x)


@SETTINGS
@given(data=st.data(), correction=st.sampled_from([0, 1]))
def test_var_with_correction(data, correction):
    x, axis = data.draw(array_and_axis())
    axes = range(x.ndim) if axis is None else np.atleast_1d(axis)
    if np.prod([x.shape[a] for a in axes]) <= correction:
        with pytest.raises(ValueError, match="correction"):
            F.var(Tensor(x), axis=axis, correction=correction)
        return
    np.testing.assert_allclose(F.var(Tensor(x), axis=axis, correction=correction).numpy(),
                               np.var(x, axis=axis, ddof=correction), rtol=1e-10, atol=1e-12)
    check_gradients(lambda t: F.var(t, axis=axis, correction=correction), x)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reductions_keep_float32_on_each_device(name, device, rng):
    fn, reference = REDUCTIONS[name]
    x = rng.standard_normal((3, 4, 5)).astype(np.float32)
    out = fn(Tensor(x, device=device), axis=(0, -1))
    assert out.dtype == np.float32 and out.device == device and out.shape == (4,)
    np.testing.assert_allclose(out.numpy(), reference(x.astype(np.float64), axis=(0, -1)),
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn, winners", [(F.max, [0, 0.5, 0.5, 0]), (F.min, [0.5, 0, 0, 0.5])])
def test_ties_split_the_gradient_equally(fn, winners):
    x = Tensor(np.array([[1.0, 3.0, 3.0, 1.0]]), requires_grad=True)
    fn(x, axis=1).backward(np.array([2.0]))
    np.testing.assert_allclose(x.grad, 2 * np.array([winners]))


def test_full_reduction_gives_a_scalar_tensor_with_a_gradient():
    x = Tensor(np.arange(6.0).reshape(2, 3), requires_grad=True)
    total = F.sum(x)
    assert total.shape == () and total.item() == 15.0
    total.backward()
    np.testing.assert_array_equal(x.grad, np.ones((2, 3)))
    x.zero_grad()
    F.mean(x).backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1 / 6))


def test_mean_of_bools_is_a_float32_fraction():
    predictions, labels = Tensor([1, 2, 3, 4]), Tensor([1, 0, 3, 0])
    accuracy = F.mean(predictions == labels)
    assert accuracy.dtype == np.float32 and accuracy.item() == 0.5


def test_sum_of_integers_stays_integer():
    assert F.sum(Tensor([1, 2, 3])).dtype == np.int64


@SETTINGS
@given(data=st.data(), keepdims=st.booleans())
def test_argmax_matches_numpy(data, keepdims):
    x, _ = data.draw(array_and_axis(distinct=True))
    axis = data.draw(st.one_of(st.none(), st.integers(-x.ndim, x.ndim - 1)))
    out = F.argmax(Tensor(x, requires_grad=True), axis=axis, keepdims=keepdims)
    assert out.dtype == np.int64 and not out.requires_grad
    np.testing.assert_array_equal(out.numpy(), np.argmax(x, axis=axis, keepdims=keepdims))


def test_argmax_on_each_device(device):
    x = Tensor(np.array([[0.1, 0.9, 0.3], [0.8, 0.2, 0.1]], np.float32), device=device)
    out = F.argmax(x, axis=-1)
    assert out.device == device
    np.testing.assert_array_equal(out.numpy(), [1, 0])


def test_bad_axes_raise_clear_errors():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        F.sum(x, axis=2)
    with pytest.raises(ValueError, match="repeated axis"):
        F.mean(x, axis=(1, -1))
    with pytest.raises(TypeError, match="tuple"):
        F.argmax(x, axis=(0, 1))
    with pytest.raises(ValueError, match="empty"):
        F.max(Tensor(np.ones((2, 0))), axis=1)
