"""The autograd engine as a user meets it: accumulation, zero_grad, no_grad,
detach, deep graphs, freeing the graph, dtypes, devices and clear errors,
plus the operators and methods that the table of ``tinymuse.tensor`` attaches
to Tensor."""
import gc
import weakref

import numpy as np
import pytest

import tinymuse.functional as F
from tinymuse import Function, Tensor, backend, enable_grad, no_grad
from tinymuse.autograd import SliceGradient
from tinymuse.gradcheck import check_gradients
from tinymuse.tensor import METHODS, OPERATORS


def leaf(values, dtype=np.float64, device="cpu"):
    return Tensor(np.asarray(values, dtype=dtype), requires_grad=True, device=device)


# --------------------------------------------------------------- accumulation
def test_two_backward_calls_add_their_gradients():
    x = leaf([1.0, 2.0, 3.0])
    (x * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0, 3.0, 3.0])
    (x * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [3.0 + 2, 3.0 + 4, 3.0 + 6])


@pytest.mark.parametrize("f, df", [
    (lambda x: x * x, lambda x: 2 * x),
    (lambda x: x + x, lambda x: np.full_like(x, 2.0)),
    (lambda x: x * x * x - x / x, lambda x: 3 * x ** 2),
    (lambda x: (lambda y: y * y + y)(x * 2), lambda x: 8 * x + 2),  # diamond: y used twice
])
def test_a_value_used_several_times_gets_every_contribution(f, df):
    values = np.array([0.5, -1.5, 2.0])
    x = leaf(values)
    f(x).sum().backward()
    np.testing.assert_allclose(x.grad, df(values))


def test_zero_grad_forgets_the_accumulated_gradient():
    x = leaf([1.0, 2.0])
    (x * 5).sum().backward()
    x.zero_grad()
    assert x.grad is None
    (x * 2).sum().backward()
    np.testing.assert_array_equal(x.grad, [2.0, 2.0])


def test_leaf_gradient_is_a_copy_not_an_alias():
    x = leaf([1.0, 2.0])
    upstream = np.array([1.0, 1.0])
    (x + 0).backward(upstream)
    x.grad += 1  # optimizers update gradients in place
    np.testing.assert_array_equal(upstream, [1.0, 1.0])


# ------------------------------------------------------------ no_grad, detach
def test_no_grad_records_nothing():
    x = leaf([1.0, 2.0])
    with no_grad():
        y = (x * 2).exp().sum()
    assert not y.requires_grad and y.is_leaf
    with pytest.raises(RuntimeError, match="does not require a gradient"):
        y.backward()
    with no_grad():
        with enable_grad():
            z = x * 2
    assert z.requires_grad and not z.is_leaf


def test_no_grad_as_a_decorator():
    @no_grad()
    def evaluate(t):
        return t * 2

    x = leaf([1.0])
    assert not evaluate(x).requires_grad
    assert (x * 2).requires_grad  # grad mode is back on outside


def test_detach_shares_memory_and_stops_the_gradient():
    x = leaf([1.0, 2.0, 3.0])
    d = x.detach()
    assert np.shares_memory(d.data, x.data) and not d.requires_grad
    (d * x).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 2.0, 3.0])  # d counted as a constant


def test_inputs_without_requires_grad_get_no_gradient():
    x, c = leaf([1.0, 2.0]), Tensor(np.array([3.0, 4.0]))
    (x * c).sum().backward()
    assert c.grad is None
    np.testing.assert_array_equal(x.grad, [3.0, 4.0])


# ----------------------------------------------------------- graph lifetime
def test_a_ten_thousand_op_chain_backpropagates_without_recursion():
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001 ** 10_000], rtol=1e-9)


def test_backward_frees_the_intermediates():
    x = leaf(np.ones(500_000), dtype=np.float32)
    hidden = x.exp()  # a 2 MB intermediate that Exp saves for its backward
    alive = weakref.ref(hidden.data)
    loss = (hidden * 3.0).sum()
    del hidden
    gc.collect()
    assert alive() is not None  # the graph keeps it for backward...
    loss.backward()
    gc.collect()
    assert alive() is None  # ...and lets it go afterwards


def test_retain_graph_keeps_it_for_a_second_backward():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    np.testing.assert_array_equal(x.grad, [4.0, 8.0])


def test_backward_twice_through_a_freed_graph_is_a_clear_error():
    x = leaf([1.0, 2.0])
    loss = (x * x).sum()
    loss.backward()
    with pytest.raises(RuntimeError, match="retain_graph=True"):
        loss.backward()


# ------------------------------------------------------------------ dtypes
X32 = np.array([[0.5, -1.2, 2.0], [1.5, 0.3, -0.7]], np.float32)
FLOAT32_OPS = {
    "add": lambda x: x + 1.5, "sub": lambda x: 2 - x, "mul": lambda x: x * x,
    "div": lambda x: 1 / (x * x + 1), "neg": lambda x: -x,
    "pow": lambda x: (x * x + 1) ** 1.5, "pow_tensor": lambda x: 2.0 ** x,
    "exp": F.exp, "log": lambda x: F.log(x * x + 1), "sqrt": lambda x: F.sqrt(x * x + 1),
    "abs": F.abs, "tanh": F.tanh, "sigmoid": F.sigmoid, "relu": F.relu, "silu": F.silu,
    "gelu": F.gelu, "maximum": lambda x: F.maximum(x, 0.1), "minimum": lambda x: F.minimum(x, x * 0.5),
    "where": lambda x: F.where(x > 0, x, 0.0), "masked_fill": lambda x: F.masked_fill(x, x < 0, -1.0),
    "clip": lambda x: F.clip(x, -1, 1),
    "sum": lambda x: F.sum(x, axis=1), "mean": lambda x: F.mean(x, axis=0),
    "max": F.max, "min": lambda x: F.min(x, axis=-1), "var": lambda x: F.var(x, axis=1),
    "reshape": lambda x: F.reshape(x, 3, 2), "permute": lambda x: F.permute(x, 1, 0),
    "transpose": F.transpose, "flatten": F.flatten, "squeeze": lambda x: F.squeeze(x[None]),
    "unsqueeze": lambda x: F.unsqueeze(x, 1), "expand": lambda x: F.expand(x[:, None], 2, 4, 3),
    "getitem": lambda x: x[[0, 0, 1], 1:], "concatenate": lambda x: F.cat([x, x * 2], axis=1),
    "stack": lambda x: F.stack([x, x]), "split": lambda x: F.split(x, [1, 2], axis=1)[1],
    "chunk": lambda x: F.chunk(x, 2)[0], "pad": lambda x: F.pad(x, 1),
    "matmul": lambda x: x @ x.T, "linear": lambda x: F.linear(x, x, x[:, 0]),
}


@pytest.mark.parametrize("name", FLOAT32_OPS)
def test_float32_stays_float32_through_every_op(name, device):
    x = Tensor(X32, device=device, requires_grad=True)
    out = FLOAT32_OPS[name](x)
    assert out.dtype == np.float32 and out.device == device
    out.sum().backward()
    assert x.grad.dtype == np.float32


def test_operators_match_their_functions():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    check_gradients(lambda x, y: (x + y) * (x - y) / (y ** 2) + 1 - (-x) @ y, a, a.T + 1)
    check_gradients(lambda x: 2.0 ** x + 3 / x - 1.0 + (x @ np.eye(2)), a)
    check_gradients(lambda x: np.eye(2) @ x, a)  # reflected matmul from an array
    t = Tensor(a)
    for method, function in [("sum", F.sum), ("mean", F.mean), ("max", F.max),
                             ("exp", F.exp), ("sigmoid", F.sigmoid), ("relu", F.relu)]:
        np.testing.assert_array_equal(getattr(t, method)().numpy(), function(t).numpy())
    assert t.view(4).shape == t.reshape(-1).shape == t.flatten().shape == (4,)
    assert t.unsqueeze(0).squeeze(0).shape == (2, 2) and t.expand(3, 2, 2).shape == (3, 2, 2)
    np.testing.assert_array_equal(t.T.numpy(), a.T)
    np.testing.assert_array_equal(Tensor(np.zeros((2, 3, 4))).T.shape, (4, 3, 2))  # like NumPy
    assert [p.shape for p in t.split(1, axis=1)] == [(2, 1), (2, 1)]
    assert t.argmax(axis=1).tolist() == [1, 1]
    np.testing.assert_array_equal(abs(Tensor([-1.0, 2.0])).numpy(), [1.0, 2.0])
    np.testing.assert_array_equal((~(t > 2)).numpy(), a <= 2)
    np.testing.assert_array_equal(((t > 1) & (t < 4)).numpy(), (a > 1) & (a < 4))


def test_every_row_of_the_operator_table_is_on_tensor():
    for name, function in {**OPERATORS, **METHODS}.items():
        assert getattr(Tensor, name) is function, name
    t = Tensor(np.array([[1.0, 2.0, 3.0]]))
    for name in ("softmax", "log_softmax"):
        np.testing.assert_array_equal(getattr(t, name)(axis=-1).numpy(),
                                      getattr(F, name)(t, axis=-1).numpy())
    assert {t: 1}[t] == 1  # defining == did not make tensors unhashable


def test_reflected_and_logical_operators():
    a = np.array([1.0, 2.0, 4.0])
    t = Tensor(a)
    np.testing.assert_array_equal((2 - t).numpy(), 2 - a)
    np.testing.assert_array_equal((1 / t).numpy(), 1 / a)
    np.testing.assert_array_equal((2 ** t).numpy(), 2 ** a)
    mask = t > 1.5
    np.testing.assert_array_equal((True & mask).numpy(), a > 1.5)
    np.testing.assert_array_equal((mask | (t < 1.5)).numpy(), [True, True, True])
    np.testing.assert_array_equal((mask ^ True).numpy(), a <= 1.5)
    np.testing.assert_array_equal(F.bitwise_not(mask).numpy(), ~(a > 1.5))
    assert (t == None) is False and (t != "text") is True  # noqa: E711 (unrelated types)
    with pytest.raises(TypeError):
        t + "text"
    with pytest.raises(TypeError, match="bool or integer"):
        t & mask


# ------------------------------------------------------------------ errors
def test_clear_errors():
    x = leaf([[1.0, 2.0, 3.0]], dtype=np.float32)
    with pytest.raises(ValueError, match=r"\(1, 3\) and \(2,\)"):
        x + Tensor(np.ones(2, np.float32))
    with pytest.raises(TypeError, match=r"float32 and float64.*\.float\(\)"):
        x * Tensor(np.ones(3))
    with pytest.raises(RuntimeError, match="one-element"):
        (x * 2).backward()
    with pytest.raises(ValueError, match=r"shape \(3,\)"):
        (x * 2).backward(np.ones(3, np.float32))
    with pytest.raises(TypeError, match="floating-point"):
        Tensor([1, 2]).requires_grad_()
    with pytest.raises(TypeError, match="item assignment.*where"):
        x[0, 0] = 5.0
    with pytest.raises(ValueError, match="ambiguous"):
        if x > 0:
            pass


@pytest.mark.gpu
@pytest.mark.skipif(not backend.cuda_available(), reason="needs CuPy and an NVIDIA GPU")
def test_mixing_devices_is_a_clear_error():
    cpu = Tensor(np.ones(3, np.float32))
    gpu = Tensor(np.ones(3, np.float32), device="cuda")
    with pytest.raises(RuntimeError, match="different devices"):
        cpu + gpu
    with pytest.raises(RuntimeError, match="different devices"):
        F.matmul(cpu[None], gpu[:, None])
    moved = gpu.to("cpu") + cpu  # .to() is differentiable across devices
    assert moved.device == "cpu"


# -------------------------------------------------------------- both devices
def test_a_small_network_gives_the_same_values_and_gradients_on_each_device(device):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    w = rng.standard_normal((5, 3)).astype(np.float32)

    def run(dev):
        tx, tw = Tensor(x, device=dev), Tensor(w, device=dev, requires_grad=True)
        hidden = F.gelu(F.linear(tx, tw))
        loss = F.mean(F.sum(hidden * hidden, axis=-1)) + F.var(hidden)
        loss.backward()
        return loss.item(), backend.to_numpy(tw.grad)

    loss, grad = run(device)
    loss_cpu, grad_cpu = run("cpu")
    np.testing.assert_allclose(loss, loss_cpu, rtol=1e-5)
    np.testing.assert_allclose(grad, grad_cpu, rtol=1e-4, atol=1e-5)
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0


# ------------------------------------------------- who owns a leaf's gradient
class _Double(Function):
    """y = 2x, whose backward remembers (weakly, or strongly) the gradient it returned."""

    keep = False
    returned = None

    def forward(self, x):
        return x * 2

    def backward(self, grad):
        out = grad * 2
        _Double.returned = out if self.keep else weakref.ref(out)
        return out


def test_a_gradient_someone_else_holds_is_copied():
    x = leaf([1.0, 2.0])
    _Double.keep = True
    try:
        _Double.apply(x).sum().backward()
        kept = _Double.returned
        assert x.grad is not kept and not np.shares_memory(x.grad, kept)
        x.grad += 1                                         # an optimizer's in-place update
        np.testing.assert_array_equal(kept, [2.0, 2.0])
    finally:
        _Double.keep, _Double.returned = False, None


def test_one_gradient_handed_to_two_leaves_gives_each_its_own_array():
    a, b = leaf([1.0, 2.0]), leaf([3.0, 4.0])
    upstream = np.array([1.0, -1.0])
    (a + b).backward(upstream)                              # Add returns the same array twice
    assert not np.shares_memory(a.grad, b.grad)
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1.0, -1.0])
    np.testing.assert_array_equal(upstream, [1.0, -1.0])


def test_a_gradient_that_is_a_view_is_copied():
    x = leaf(np.arange(6.0))
    upstream = np.ones((2, 3))
    x.reshape(2, 3).backward(upstream)                      # Reshape's backward is a view
    assert x.grad.shape == (6,) and not np.shares_memory(x.grad, upstream)


# ---------------------------------------------------------- slice gradients
def test_the_pieces_of_a_split_add_into_one_gradient():
    x = leaf(np.arange(12.0).reshape(2, 6))
    q, _, v = F.split(x, 2, axis=-1)
    assert isinstance(q._fn.backward(np.ones((2, 2))), SliceGradient)
    # The middle piece is never used: its slice stays zero; x is also used whole.
    loss = (q * 3).sum() + (v * v).sum() + (x * 0.5).sum()
    loss.backward()
    expected = np.full((2, 6), 0.5)
    expected[:, :2] += 3
    expected[:, 4:] += 2 * x.data[:, 4:]
    np.testing.assert_allclose(x.grad, expected)


def test_slice_gradients_of_an_inner_tensor_reach_the_leaf():
    x = leaf(np.linspace(-1, 1, 8).reshape(2, 4))
    h = x * x                                               # the split input is not a leaf
    left, right = F.split(h, [1, 3], axis=-1)
    (left.sum() * 2 + (right * h[:, 1:]).sum()).backward()

    def loss(t):
        h = t * t
        left, right = F.split(h, [1, 3], axis=-1)
        return left.sum() * 2 + (right * h[:, 1:]).sum()

    check_gradients(loss, x.data)
    expected = np.zeros((2, 4))
    expected[:, :1] = 2 * 2 * x.data[:, :1]
    expected[:, 1:] = 2 * h.data[:, 1:] * 2 * x.data[:, 1:]   # d(h_1²)/dx = 2h · 2x
    np.testing.assert_allclose(x.grad, expected)


def test_a_slice_gradient_of_the_wrong_shape_is_refused():
    class BadSlice(Function):
        def forward(self, x):
            return x[:1]

        def backward(self, grad):
            return SliceGradient((slice(0, 2),), grad)      # says 2 rows, holds 1

    x = leaf(np.ones((3, 2)))
    with pytest.raises(RuntimeError, match="BadSlice.backward returned a slice gradient"):
        BadSlice.apply(x).sum().backward()
