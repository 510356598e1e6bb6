"""Chapter 1's exercises: tensors and autograd (tutorials/01-tensors-and-autograd.md).

The exercises stay independent of each other: the graph-walk tests (ch01_ex1) use Functions
defined here, whose inputs all have the output's shape, so they never need ``unbroadcast``
(ch01_ex2) nor the library's Mul, Div or MatMul backward (ch01_ex3, ch01_ex4); the others call
the exercised function or ``Function.backward`` directly, on float64 NumPy arrays, and check it
against finite differences or sums written here, without walking a graph.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import Function, Tensor
from tinymuse.autograd import _topological_order, unbroadcast
from tinymuse.ops.elementwise import Add, Div, Mul
from tinymuse.ops.linalg import MatMul

from finite_differences import numeric_gradient

FAST = settings(max_examples=40, deadline=None)



def run_backward(function, *inputs, grad, needs=None):
    """``function``'s own forward, then its backward, with no graph and no engine."""
    fn = function()
    fn.needs_input_grad = tuple(needs) if needs is not None else (True,) * len(inputs)
    fn.forward(*inputs)
    result = fn.backward(grad)
    return result if isinstance(result, tuple) else (result,)


def summed_to(grad, shape):
    """The test's own reduction of a broadcast gradient: Σ over the copies of each entry."""
    out = np.zeros(shape)
    for i in np.ndindex(shape):
        unit = np.zeros(shape)
        unit[i] = 1.0
        out[i] = np.sum(grad * np.broadcast_to(unit, grad.shape))
    return out


# --------------------------------------------------------------------------- #
# ch01_ex1 — the graph walk: topological order and accumulation
# --------------------------------------------------------------------------- #

class Square(Function):       # y = x², same shape in and out
    def forward(self, x):
        self.x = x
        return x * x

    def backward(self, grad):
        return 2 * self.x * grad


class Triple(Function):       # y = 3x
    def forward(self, x):
        return 3 * x

    def backward(self, grad):
        return 3 * grad


class Copy(Function):         # y = x
    def forward(self, x):
        return x.copy()

    def backward(self, grad):
        return grad


class Recorder(Copy):         # y = x, and remembers every gradient its backward receives
    seen = []

    def backward(self, grad):
        Recorder.seen.append(np.array(grad))
        return grad


def inputs_of(tensor):
    fn = tensor._fn
    return [] if fn is None else [p for p in fn.inputs
                                  if isinstance(p, Tensor) and p.requires_grad]


def reachable(root):
    """The test's own search: every tensor needing a gradient that ``root`` depends on."""
    found, todo = {}, [root]
    while todo:
        t = todo.pop()
        if id(t) not in found:
            found[id(t)] = t
            todo.extend(inputs_of(t))
    return found


def assert_topological(order, root):
    ids = [id(t) for t in order]
    assert len(ids) == len(set(ids)), "a tensor appears twice in the order"
    assert set(ids) == set(reachable(root)), "the order must hold exactly the tensors that " \
                                             "need a gradient and that the root depends on"
    assert ids[-1] == id(root), "the root comes last"
    position = {i: n for n, i in enumerate(ids)}
    for t in order:
        for parent in inputs_of(t):
            assert position[id(parent)] < position[id(t)], "an input after its consumer"


@st.composite
def graphs(draw):
    """A random graph of Square/Triple/Add over a few leaves (some constants)."""
    n_leaves = draw(st.integers(1, 4))
    nodes = [Tensor(np.float64(i + 1.0), requires_grad=draw(st.booleans()) or i == 0)
             for i in range(n_leaves)]
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["square", "triple", "add"]))
        a = nodes[draw(st.integers(0, len(nodes) - 1))]
        if kind == "add":
            nodes.append(Add.apply(a, nodes[draw(st.integers(0, len(nodes) - 1))]))
        else:
            nodes.append((Square if kind == "square" else Triple).apply(a))
    # The root uses the first leaf, so it needs a gradient.
    return Add.apply(nodes[-1], Triple.apply(nodes[0]))


@FAST
@given(graphs())
def test_ch01_ex1_order_puts_every_tensor_after_its_inputs(root):
    assert_topological(_topological_order(root), root)


def test_ch01_ex1_order_of_the_chapter_graph_and_of_a_diamond():
    x = Tensor(3.0, requires_grad=True)
    square = Square.apply(x)
    y = Add.apply(square, x)
    assert [id(t) for t in _topological_order(y)] == [id(x), id(square), id(y)]

    a = Triple.apply(x)                        # a diamond: x → a → (b, c) → d
    b, c = Square.apply(a), Triple.apply(a)
    d = Add.apply(b, c)
    constant = Tensor(2.0)                     # needs no gradient: not in the order
    e = Add.apply(d, constant)
    order = _topological_order(e)
    assert_topological(order, e)
    assert id(constant) not in {id(t) for t in order}


def test_ch01_ex1_a_deep_chain_needs_no_recursion():
    x = Tensor(1.0, requires_grad=True)
    chain = [x]
    for _ in range(5000):                      # deeper than Python's recursion limit
        chain.append(Copy.apply(chain[-1]))
    order = _topological_order(chain[-1])
    assert [id(t) for t in order] == [id(t) for t in chain]


def test_ch01_ex1_a_value_used_twice_gets_the_sum_of_its_gradients():
    x = Tensor(3.0, requires_grad=True)
    y = Add.apply(Add.apply(Square.apply(x), Triple.apply(x)), x)   # y = x² + 3x + x
    y.backward()
    assert x.grad == pytest.approx(2 * 3.0 + 3 + 1)

    x = Tensor(np.array([1.0, -2.0]), requires_grad=True)
    Add.apply(x, x).backward(np.array([1.0, 10.0]))                 # both inputs are x
    np.testing.assert_allclose(x.grad, [2.0, 20.0])


def test_ch01_ex1_each_backward_runs_once_with_its_complete_gradient():
    Recorder.seen = []
    x = Tensor(np.array([1.0, 2.0]), requires_grad=True)
    r = Recorder.apply(x)                      # r feeds three consumers
    y = Add.apply(Add.apply(Square.apply(r), Triple.apply(r)), r)
    y.backward(np.array([1.0, 1.0]))
    assert len(Recorder.seen) == 1, "visit a tensor only after all its consumers are done"
    np.testing.assert_allclose(Recorder.seen[0], 2 * x.numpy() + 3 + 1)
    np.testing.assert_allclose(x.grad, 2 * x.numpy() + 4)


def test_ch01_ex1_backward_adds_into_grad_and_zero_grad_forgets():
    w = Tensor(2.0, requires_grad=True)
    Triple.apply(w).backward()
    Triple.apply(w).backward()                 # a second graph: 3 + 3
    assert isinstance(w.grad, np.ndarray) and w.grad.shape == () and w.grad == 6.0
    w.zero_grad()
    Triple.apply(w).backward()
    assert w.grad == 3.0

    x = Tensor(np.zeros(3), requires_grad=True)
    given_grad = np.array([1.0, 2.0, 3.0])
    Triple.apply(x).backward(given_grad)
    first = x.grad
    Triple.apply(x).backward(given_grad)
    np.testing.assert_allclose(x.grad, [6.0, 12.0, 18.0])
    assert np.array_equal(first, [3.0, 6.0, 9.0]), \
        "adding into .grad must make a new array, not change the one an earlier backward left"

    leaf = Tensor(np.zeros(3), requires_grad=True)
    leaf.backward(given_grad)                  # the root is the leaf: its gradient is ours
    leaf.grad[...] = 0.0                       # an optimizer may update .grad in place ...
    assert np.array_equal(given_grad, [1.0, 2.0, 3.0]), "... so .grad must be a fresh array"


# --------------------------------------------------------------------------- #
# ch01_ex2 — summing a broadcast gradient back to an input's shape
# --------------------------------------------------------------------------- #

def test_ch01_ex2_the_chapter_example():
    out = unbroadcast(np.ones((2, 3, 4), dtype=np.float32), (3, 1))
    assert out.shape == (3, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.full((3, 1), 8.0))


def test_ch01_ex2_leading_axes_size_one_axes_and_a_scalar():
    rng = np.random.default_rng(0)
    grad = rng.normal(size=(5, 4, 3))
    np.testing.assert_allclose(unbroadcast(grad, (3,)), grad.sum(axis=(0, 1)))
    np.testing.assert_allclose(unbroadcast(grad, (4, 1)), grad.sum(axis=(0, 2))[:, None])
    np.testing.assert_allclose(unbroadcast(grad, (1, 4, 3)), grad.sum(axis=0, keepdims=True))
    np.testing.assert_allclose(unbroadcast(grad, (5, 1, 1)), grad.sum(axis=(1, 2))[:, None, None])
    total = unbroadcast(grad, ())
    assert np.shape(total) == () and float(total) == pytest.approx(grad.sum())


@st.composite
def broadcasts(draw):
    """An input shape and a shape it broadcasts to: leading axes added, size-1 axes stretched."""
    shape = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=3)))
    stretched = tuple(draw(st.integers(1, 3)) if n == 1 else n for n in shape)
    leading = tuple(draw(st.lists(st.integers(1, 3), min_size=0, max_size=2)))
    return shape, leading + stretched


@FAST
@given(broadcasts(), st.integers(0, 2 ** 32 - 1))
def test_ch01_ex2_each_entry_gets_the_sum_over_its_copies(shapes, seed):
    shape, big = shapes
    grad = np.random.default_rng(seed).normal(size=big)
    out = unbroadcast(grad, shape)
    assert np.shape(out) == shape
    np.testing.assert_allclose(out, summed_to(grad, shape), atol=1e-12)


# --------------------------------------------------------------------------- #
# ch01_ex3 — the product and quotient rules: Mul and Div backward
# --------------------------------------------------------------------------- #

def test_ch01_ex3_mul_backward_matches_finite_differences():
    rng = np.random.default_rng(1)
    a, b, g = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)), rng.normal(size=(3, 4))
    grad_a, grad_b = run_backward(Mul, a, b, grad=g)
    np.testing.assert_allclose(grad_a, numeric_gradient(np.multiply, [a, b], 0, g), atol=1e-7)
    np.testing.assert_allclose(grad_b, numeric_gradient(np.multiply, [a, b], 1, g), atol=1e-7)


def test_ch01_ex3_mul_broadcasts_skips_unneeded_inputs_and_keeps_grad():
    rng = np.random.default_rng(2)
    a, b, g = rng.normal(size=(3, 4)), rng.normal(size=(4,)), rng.normal(size=(3, 4))
    kept = g.copy()
    grad_a, grad_b = run_backward(Mul, a, b, grad=g)
    assert grad_a.shape == (3, 4)              # the engine sums grad_b down to (4,), not Mul
    np.testing.assert_allclose(summed_to(grad_b, (4,)), numeric_gradient(np.multiply, [a, b], 1, g),
                               atol=1e-7)
    assert np.array_equal(g, kept), "backward must not write into grad"

    only_a = run_backward(Mul, a, 2.5, grad=g, needs=(True, False))   # x * 2.5
    np.testing.assert_allclose(only_a[0], 2.5 * g)
    assert only_a[1] is None
    only_b = run_backward(Mul, a, b, grad=g, needs=(False, True))
    assert only_b[0] is None and only_b[1].shape == (3, 4)


def test_ch01_ex3_div_backward_matches_finite_differences():
    rng = np.random.default_rng(3)
    a, g = rng.normal(size=(2, 3)), rng.normal(size=(2, 3))
    b = rng.uniform(0.5, 2.0, size=(2, 3)) * rng.choice([-1, 1], size=(2, 3))
    grad_a, grad_b = run_backward(Div, a, b, grad=g)
    np.testing.assert_allclose(grad_a, numeric_gradient(np.divide, [a, b], 0, g), atol=1e-6)
    np.testing.assert_allclose(grad_b, numeric_gradient(np.divide, [a, b], 1, g), atol=1e-6)

    kept = g.copy()
    only_b = run_backward(Div, 1.0, b, grad=g, needs=(False, True))  # 1 / b
    assert only_b[0] is None
    np.testing.assert_allclose(only_b[1], -g / b ** 2)
    only_a = run_backward(Div, a, 4.0, grad=g, needs=(True, False))   # a / 4
    np.testing.assert_allclose(only_a[0], g / 4.0)
    assert only_a[1] is None
    np.testing.assert_array_equal(g, kept)


# --------------------------------------------------------------------------- #
# ch01_ex4 — the matrix product's backward
# --------------------------------------------------------------------------- #

@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 2)),                   # two matrices ("batched" with no batch)
    ((2, 3, 4), (4, 5)),                # a batch times a shared matrix ("rows")
    ((3, 4), (2, 4, 5)),                # a shared matrix times a batch ("cols")
    ((2, 3, 4), (2, 4, 5)),             # a batch of pairs ("batched")
], ids=["matrices", "rows", "cols", "batched"])
def test_ch01_ex4_matmul_backward_matches_finite_differences(shape_a, shape_b):
    rng = np.random.default_rng(4)
    a, b = rng.normal(size=shape_a), rng.normal(size=shape_b)
    g = rng.normal(size=np.matmul(a, b).shape)
    grad_a, grad_b = run_backward(MatMul, a, b, grad=g)
    assert grad_a.shape == shape_a and grad_b.shape == shape_b
    np.testing.assert_allclose(grad_a, numeric_gradient(np.matmul, [a, b], 0, g), atol=1e-6)
    np.testing.assert_allclose(grad_b, numeric_gradient(np.matmul, [a, b], 1, g), atol=1e-6)


def test_ch01_ex4_broadcast_batch_axes_and_one_sided_gradients():
    rng = np.random.default_rng(5)
    a, b = rng.normal(size=(2, 1, 3, 4)), rng.normal(size=(3, 4, 2))     # batch (2, 3)
    g = rng.normal(size=(2, 3, 3, 2))
    kept = g.copy()
    grad_a, grad_b = run_backward(MatMul, a, b, grad=g)
    np.testing.assert_allclose(summed_to(grad_a, a.shape),
                               numeric_gradient(np.matmul, [a, b], 0, g), atol=1e-6)
    np.testing.assert_allclose(summed_to(grad_b, b.shape),
                               numeric_gradient(np.matmul, [a, b], 1, g), atol=1e-6)
    assert np.array_equal(g, kept), "backward must not write into grad"

    for shape_a, shape_b in [((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 3, 4), (2, 4, 5))]:
        a, b = rng.normal(size=shape_a), rng.normal(size=shape_b)
        g = rng.normal(size=np.matmul(a, b).shape)
        only_a = run_backward(MatMul, a, b, grad=g, needs=(True, False))
        only_b = run_backward(MatMul, a, b, grad=g, needs=(False, True))
        assert only_a[1] is None and only_b[0] is None
        np.testing.assert_allclose(only_a[0], numeric_gradient(np.matmul, [a, b], 0, g),
                                   atol=1e-6)
        np.testing.assert_allclose(only_b[1], numeric_gradient(np.matmul, [a, b], 1, g),
                                   atol=1e-6)
