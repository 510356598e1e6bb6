"""Shape operations and indexing: values against NumPy, gradients against
finite differences (float64), repeated indices, joining and cutting."""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tinymuse.functional as F
from tinymuse import Tensor
from tinymuse.gradcheck import check_gradients

SETTINGS = settings(max_examples=30, deadline=None)

shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=3)


def values(shape):
    return hnp.arrays(np.float64, shape, elements=st.floats(-3, 3, allow_subnormal=False))


@st.composite
def array(draw, shape_strategy=shapes):
    return draw(values(draw(shape_strategy)))


# ------------------------------------------------------------------ reshaping
@SETTINGS
@given(x=array(), data=st.data())
def test_reshape_with_inferred_axis(x, data):
    sizes = [d for d in range(1, x.size + 1) if x.size % d == 0]
    first = data.draw(st.sampled_from(sizes))
    for shape in [(first, -1), (-1, first), (x.size,)]:
        np.testing.assert_array_equal(F.reshape(Tensor(x), shape).numpy(), x.reshape(shape))
    check_gradients(lambda t: F.reshape(t, first, -1) * np.arange(x.size).reshape(first, -1), x)


@SETTINGS
@given(x=array(), data=st.data())
def test_permute_and_transpose(x, data):
    axes = data.draw(st.permutations(range(x.ndim)))
    np.testing.assert_array_equal(F.permute(Tensor(x), *axes).numpy(), x.transpose(axes))
    check_gradients(lambda t: F.permute(t, axes), x)
    a0, a1 = data.draw(st.integers(-x.ndim, x.ndim - 1)), data.draw(st.integers(0, x.ndim - 1))
    np.testing.assert_array_equal(F.transpose(Tensor(x), a0, a1).numpy(), np.swapaxes(x, a0, a1))
    check_gradients(lambda t: F.transpose(t, a0, a1), x)


@SETTINGS
@given(x=array(), data=st.data())
def test_flatten_squeeze_unsqueeze(x, data):
    start = data.draw(st.integers(0, x.ndim - 1))
    end = data.draw(st.integers(start, x.ndim - 1))
    flat = F.flatten(Tensor(x), start, end)
    assert flat.shape == x.shape[:start] + (int(np.prod(x.shape[start:end + 1])),) + x.shape[end + 1:]
    check_gradients(lambda t: F.flatten(t, start, end), x)
    axis = data.draw(st.integers(-x.ndim - 1, x.ndim))
    np.testing.assert_array_equal(F.unsqueeze(Tensor(x), axis).numpy(), np.expand_dims(x, axis))
    check_gradients(lambda t: F.squeeze(F.unsqueeze(t, axis), axis), x)
    np.testing.assert_array_equal(F.squeeze(Tensor(x)).numpy(), np.squeeze(x))
    check_gradients(F.squeeze, x)


@SETTINGS
@given(data=st.data())
def test_expand_sums_the_gradient_over_expanded_axes(data):
    shape = data.draw(shapes)
    small = tuple(data.draw(st.sampled_from([n, 1])) for n in shape[1:])
    x = data.draw(values(small))
    target = shape[:1] + tuple(-1 if m == n and data.draw(st.booleans()) else n
                               for m, n in zip(small, shape[1:]))
    out = F.expand(Tensor(x), *target)
    assert out.shape == shape
    np.testing.assert_array_equal(out.numpy(), np.broadcast_to(x, shape))
    check_gradients(lambda t: F.expand(t, target), x)


def test_shape_errors_are_clear():
    x = Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, -1\)"):
        F.reshape(x, 4, -1)
    with pytest.raises(ValueError, match="permutation"):
        F.permute(x, 0, 0)
    with pytest.raises(ValueError, match="size 3, not 1"):
        F.squeeze(x, 1)
    with pytest.raises(ValueError, match="only axes of size 1"):
        F.expand(x, 2, 4)
    with pytest.raises(ValueError, match="out of range"):
        F.transpose(x, 0, 2)


# ------------------------------------------------------------------- indexing
@SETTINGS
@given(data=st.data())
def test_basic_indexing(data):
    x = data.draw(array())
    index = data.draw(hnp.basic_indices(x.shape, allow_newaxis=True, allow_ellipsis=True))
    np.testing.assert_array_equal(F.getitem(Tensor(x), index).numpy(), x[index])
    check_gradients(lambda t: F.getitem(t, index), x)


@SETTINGS
@given(data=st.data())
def test_integer_array_indexing_with_repeats(data):
    x = data.draw(array())
    index = data.draw(hnp.integer_array_indices(x.shape, result_shape=hnp.array_shapes(
        min_dims=1, max_dims=2, max_side=5)))
    np.testing.assert_array_equal(F.getitem(Tensor(x), index).numpy(), x[index])
    check_gradients(lambda t: F.getitem(t, index), x)


@SETTINGS
@given(data=st.data())
def test_row_gathering_adds_the_gradients_of_repeated_rows(data):
    x = data.draw(array(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=4)))
    n = x.shape[0]
    rows = data.draw(hnp.arrays(np.int64, data.draw(hnp.array_shapes(max_dims=2, max_side=6)),
                                elements=st.integers(-n, n - 1)))
    weight = np.random.default_rng(0).standard_normal(rows.shape + x.shape[1:])
    t = Tensor(x, requires_grad=True)
    F.getitem(t, Tensor(rows)).backward(weight)
    expected = np.zeros_like(x)
    np.add.at(expected, rows, weight)
    np.testing.assert_allclose(t.grad, expected, atol=1e-12)


def test_repeated_index_counts_twice():
    x = Tensor(np.array([10.0, 20.0, 30.0]), requires_grad=True)
    y = x[[0, 0, 2, -1]]
    np.testing.assert_array_equal(y.numpy(), [10.0, 10.0, 30.0, 30.0])
    y.backward(np.array([1.0, 2.0, 3.0, 4.0]))
    np.testing.assert_array_equal(x.grad, [3.0, 0.0, 7.0])


def test_mixed_advanced_indexing_like_picking_the_label_logits():
    logits = Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True)
    labels = Tensor([1, 3, 1])
    picked = logits[F.reshape(Tensor(np.arange(3)), 3), labels]
    np.testing.assert_array_equal(picked.numpy(), [1.0, 7.0, 9.0])
    picked.sum().backward()
    expected = np.zeros((3, 4))
    expected[[0, 1, 2], [1, 3, 1]] = 1
    np.testing.assert_array_equal(logits.grad, expected)


@SETTINGS
@given(data=st.data())
def test_boolean_mask_indexing(data):
    x = data.draw(array())
    mask = data.draw(hnp.arrays(np.bool_, x.shape[:data.draw(st.integers(1, x.ndim))]))
    np.testing.assert_array_equal(F.getitem(Tensor(x), Tensor(mask)).numpy(), x[mask])
    check_gradients(lambda t: F.getitem(t, mask), x)
    check_gradients(lambda t: t[mask.tolist() if mask.ndim == 1 else mask], x)


def test_indexing_on_each_device(device, rng):
    x = rng.standard_normal((4, 5)).astype(np.float32)
    t = Tensor(x, device=device)
    index = np.array([3, 0, 3])
    np.testing.assert_array_equal(t[1:3, ::2].numpy(), x[1:3, ::2])
    np.testing.assert_array_equal(t[index].numpy(), x[index])          # NumPy index array
    np.testing.assert_array_equal(t[Tensor(index, device=device)].numpy(), x[index])
    np.testing.assert_array_equal(t[t > 0].numpy(), x[x > 0])
    np.testing.assert_array_equal(t[..., None, 2].numpy(), x[..., None, 2])


def test_float_index_arrays_are_rejected():
    with pytest.raises(IndexError, match="integers or bools"):
        Tensor(np.ones(3))[Tensor([0.0, 1.0])]


# ---------------------------------------------------------- joining, cutting
@st.composite
def pieces_along_an_axis(draw, same_size=False):
    shape = draw(shapes)
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    count = draw(st.integers(1, 3))
    arrays = []
    for _ in range(count):
        piece = list(shape)
        if not same_size:
            piece[axis] = draw(st.integers(1, 3))
        arrays.append(draw(values(tuple(piece))))
    return arrays, axis


@SETTINGS
@given(case=pieces_along_an_axis())
def test_concatenate(case):
    arrays, axis = case
    np.testing.assert_array_equal(F.concatenate([Tensor(a) for a in arrays], axis).numpy(),
                                  np.concatenate(arrays, axis))
    check_gradients(lambda *ts: F.cat(ts, axis=axis), *arrays)


@SETTINGS
@given(case=pieces_along_an_axis(same_size=True), data=st.data())
def test_stack(case, data):
    arrays, _ = case
    axis = data.draw(st.integers(-arrays[0].ndim - 1, arrays[0].ndim))
    np.testing.assert_array_equal(F.stack([Tensor(a) for a in arrays], axis).numpy(),
                                  np.stack(arrays, axis))
    check_gradients(lambda *ts: F.stack(ts, axis=axis), *arrays)


@SETTINGS
@given(x=array(), data=st.data())
def test_split_and_chunk(x, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    length = x.shape[axis]
    cuts = sorted(data.draw(st.lists(st.integers(0, length), max_size=3)))
    sizes = np.diff([0, *cuts, length]).tolist()
    pieces = F.split(Tensor(x), sizes, axis)
    expected = np.split(x, cuts, axis)
    assert len(pieces) == len(expected)
    for piece, want in zip(pieces, expected):
        np.testing.assert_array_equal(piece.numpy(), want)
    weights = [np.full(p.shape, k + 1.0) for k, p in enumerate(pieces)]  # pieces weigh apart
    check_gradients(lambda t: F.concatenate(
        [p * w for p, w in zip(F.split(t, sizes, axis), weights)], axis), x)

    size = data.draw(st.integers(1, length + 1))
    pieces = F.split(Tensor(x), size, axis)
    assert [p.shape[axis] for p in pieces] == \
        [size] * (length // size) + ([length % size] if length % size else [])
    np.testing.assert_array_equal(F.concatenate(pieces, axis).numpy(), x)

    n = data.draw(st.integers(1, length + 1))
    chunks = F.chunk(Tensor(x), n, axis)
    assert len(chunks) <= n and all(c.shape[axis] == -(-length // n) for c in chunks[:-1])
    check_gradients(lambda t: F.concatenate(
        [p * (k + 1.0) for k, p in enumerate(F.chunk(t, n, axis))], axis), x)


def test_chunk_follows_torch():
    x = Tensor(np.arange(12.0).reshape(2, 6), requires_grad=True)
    q, k, v = x.chunk(3, axis=-1)
    np.testing.assert_array_equal(k.numpy(), [[2.0, 3.0], [8.0, 9.0]])
    (q * 1 + k * 2 + v * 3).sum().backward()
    np.testing.assert_array_equal(x.grad, [[1, 1, 2, 2, 3, 3]] * 2)
    assert [p.shape[0] for p in F.chunk(Tensor(np.arange(5)), 2)] == [3, 2]
    assert [p.shape[0] for p in F.chunk(Tensor(np.arange(6)), 4)] == [2, 2, 2]


def test_joining_errors_and_dtypes():
    a, b = Tensor(np.ones((2, 3), np.float32)), Tensor(np.ones((2, 4), np.float32))
    with pytest.raises(ValueError, match="differ outside axis 0"):
        F.concatenate([a, b])
    assert F.concatenate([a, b], axis=1).shape == (2, 7)
    with pytest.raises(ValueError, match="same shape"):
        F.stack([a, b])
    with pytest.raises(TypeError, match="float32 and float64"):
        F.concatenate([a, Tensor(np.ones((2, 3)))])
    assert F.concatenate([a, Tensor(np.ones((2, 3), np.int64))]).dtype == np.float32
    with pytest.raises(ValueError, match="add up"):
        F.split(a, [1, 1], axis=1)


@SETTINGS
@given(x=array(hnp.array_shapes(min_dims=1, max_dims=3, max_side=3)), data=st.data(),
       value=st.floats(-2, 2))
def test_pad(x, data, value):
    widths = tuple((data.draw(st.integers(0, 2)), data.draw(st.integers(0, 2))) for _ in x.shape)
    np.testing.assert_array_equal(F.pad(Tensor(x), widths, value).numpy(),
                                  np.pad(x, widths, constant_values=value))
    check_gradients(lambda t: F.pad(t, widths, value), x)


def test_pad_on_each_device_and_short_forms(device):
    x = Tensor(np.ones((2, 3), np.float32), device=device)
    out = F.pad(x, 1, value=-1.0)
    assert out.shape == (4, 5) and out.dtype == np.float32 and out.device == device
    assert out.numpy()[0, 0] == -1.0 and out.numpy()[1, 1] == 1.0
    assert F.pad(x, ((0, 0), (2, 1))).shape == (2, 6)
    with pytest.raises(ValueError, match="pad_width"):
        F.pad(x, ((1, 1), (1, 1), (1, 1)))
    with pytest.raises(ValueError, match=">= 0"):
        F.pad(x, -1)
