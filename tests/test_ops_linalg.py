"""matmul and linear: values and gradients against NumPy's formulas (batch
axes broadcast and summed back), gradient checks against finite differences."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import tinymuse.functional as F
from tinymuse import Tensor, backend
from tinymuse.gradcheck import check_gradients

SETTINGS = settings(max_examples=40, deadline=None)


def unbroadcast(grad, shape):
    """NumPy reference: sum a gradient of a broadcast shape back to ``shape``."""
    grad = grad.sum(axis=tuple(range(grad.ndim - len(shape))))
    return grad.sum(axis=tuple(i for i, n in enumerate(shape) if n == 1), keepdims=True)


@st.composite
def matmul_shapes(draw):
    """Shapes a @ b can take: vectors, matrices, and batches that broadcast
    (including one side a single matrix, or batch axes all of size 1)."""
    m, k, n = (draw(st.integers(1, 3)) for _ in range(3))
    batch_a, batch_b = draw(hnp.mutually_broadcastable_shapes(num_shapes=2, max_dims=2,
                                                              max_side=3)).input_shapes
    a_shape = draw(st.sampled_from([(k,), (m, k), batch_a + (m, k)]))
    b_shape = draw(st.sampled_from([(k,), (k, n), batch_b + (k, n)]))
    return a_shape, b_shape


@SETTINGS
@given(shapes=matmul_shapes(), seed=st.integers(0, 2**32 - 1))
def test_matmul_matches_numpy_values_and_gradients(shapes, seed):
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(s) for s in shapes)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = F.matmul(ta, tb)
    expected = np.matmul(a, b)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)

    grad = rng.standard_normal(expected.shape)
    out.backward(grad)
    # NumPy reference: treat vectors as matrices, then dA = G Bᵀ and dB = Aᵀ G, summed
    # over the batch axes that were broadcast.
    a2 = a[None, :] if a.ndim == 1 else a
    b2 = b[:, None] if b.ndim == 1 else b
    g2 = np.matmul(a2, b2).shape
    g2 = grad.reshape(g2)
    grad_a = unbroadcast(np.matmul(g2, np.swapaxes(b2, -1, -2)), a2.shape).reshape(a.shape)
    grad_b = unbroadcast(np.matmul(np.swapaxes(a2, -1, -2), g2), b2.shape).reshape(b.shape)
    np.testing.assert_allclose(ta.grad, grad_a, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(tb.grad, grad_b, rtol=1e-10, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(shapes=matmul_shapes(), seed=st.integers(0, 2**32 - 1))
def test_matmul_gradients_against_finite_differences(shapes, seed):
    rng = np.random.default_rng(seed)
    check_gradients(F.matmul, *(rng.standard_normal(s) for s in shapes))


@pytest.mark.parametrize("a_shape, b_shape, layout", [
    ((2, 3, 4, 5), (5, 6), "rows"),        # activations @ weight: one GEMM
    ((2, 4, 5), (1, 5, 6), "rows"),        # a batch of one matrix is one matrix
    ((4, 5), (2, 3, 5, 6), "cols"),        # weight @ batch: one GEMM via Cᵀ = Bᵀ Aᵀ
    ((2, 4, 5), (2, 5, 6), "batched"),
    ((1, 4, 5), (3, 5, 6), "cols"),
])
def test_a_matrix_shared_by_the_batch_takes_one_gemm(a_shape, b_shape, layout, rng):
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    ta, tb = Tensor(a, requires_grad=True), Tensor(b, requires_grad=True)
    out = F.matmul(ta, tb)
    node = out._fn
    while type(node).__name__ != "MatMul":  # look past the reshapes of size-1 batch axes
        node = node.inputs[0]._fn
    assert node.layout == layout
    np.testing.assert_allclose(out.numpy(), np.matmul(a, b), rtol=1e-12)
    check_gradients(F.matmul, a, b)


def test_matmul_on_each_device_keeps_float32(device, rng):
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((4, 5)).astype(np.float32)
    out = Tensor(a, device=device) @ Tensor(b, device=device)
    assert out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-5, atol=1e-5)
    out = F.matmul(Tensor(b.T.copy(), device=device), Tensor(a, device=device).transpose())
    np.testing.assert_allclose(out.numpy(), b.T @ np.swapaxes(a, -1, -2), rtol=1e-5, atol=1e-5)


def test_matmul_errors_name_the_shapes():
    a = Tensor(np.ones((2, 3), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 3\) and \(4, 5\)"):
        F.matmul(a, Tensor(np.ones((4, 5), np.float32)))
    with pytest.raises(ValueError, match=r"\(4,\)"):
        F.matmul(a, Tensor(np.ones(4, np.float32)))
    with pytest.raises(ValueError, match="batch axes"):
        F.matmul(Tensor(np.ones((2, 2, 3))), Tensor(np.ones((3, 3, 4))))
    with pytest.raises(TypeError, match="float32 and float64"):
        F.matmul(a, Tensor(np.ones((3, 4))))
    with pytest.raises(ValueError, match="at least one dimension"):
        F.matmul(a, 2.0)


# --------------------------------------------------------------------- linear
@SETTINGS
@given(lead=hnp.array_shapes(min_dims=0, max_dims=3, max_side=3),
       features=st.tuples(st.integers(1, 4), st.integers(1, 4)),
       use_bias=st.booleans(), seed=st.integers(0, 2**32 - 1))
def test_linear_matches_numpy_and_finite_differences(lead, features, use_bias, seed):
    rng = np.random.default_rng(seed)
    n_in, n_out = features
    x = rng.standard_normal(lead + (n_in,))
    weight = rng.standard_normal((n_out, n_in))
    bias = rng.standard_normal(n_out)
    inputs = (x, weight, bias) if use_bias else (x, weight)

    tensors = [Tensor(a, requires_grad=True) for a in inputs]
    out = F.linear(*tensors)
    expected = x @ weight.T + (bias if use_bias else 0)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12, atol=1e-12)
    grad = rng.standard_normal(expected.shape)
    out.backward(grad)
    g2, x2 = grad.reshape(-1, n_out), x.reshape(-1, n_in)
    np.testing.assert_allclose(tensors[0].grad, (g2 @ weight).reshape(x.shape), atol=1e-12)
    np.testing.assert_allclose(tensors[1].grad, g2.T @ x2, atol=1e-12)
    if use_bias:
        np.testing.assert_allclose(tensors[2].grad, g2.sum(0), atol=1e-12)
    check_gradients(F.linear, *inputs)


def test_linear_on_each_device_keeps_float32(device, rng):
    x = Tensor(rng.standard_normal((2, 3, 4)).astype(np.float32), device=device)
    w = Tensor(rng.standard_normal((5, 4)).astype(np.float32), device=device, requires_grad=True)
    b = Tensor(np.zeros(5, np.float32), device=device, requires_grad=True)
    out = F.linear(x, w, b)
    assert out.shape == (2, 3, 5) and out.dtype == np.float32 and out.device == device
    out.sum().backward()
    assert w.grad.dtype == np.float32 and b.grad.dtype == np.float32
    np.testing.assert_allclose(backend.to_numpy(b.grad), np.full(5, 6.0))


def test_linear_errors():
    x = Tensor(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match=r"\(2, 4\).*4 features.*\(5, 3\)"):
        F.linear(x, Tensor(np.ones((5, 3), np.float32)))
    with pytest.raises(ValueError, match="bias"):
        F.linear(x, Tensor(np.ones((5, 4), np.float32)), Tensor(np.ones(4, np.float32)))
    with pytest.raises(TypeError, match="float32 and float64"):
        F.linear(x, Tensor(np.ones((5, 4))))
