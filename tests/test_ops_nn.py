"""Neural-network operations: softmax, embedding, dropout, convolution, pooling,
upsampling, normalisation and attention.

Gradients are checked in float64 against central finite differences
(tinymuse.gradcheck); forward values against direct NumPy formulas or naive
loops written here, never against numbers copied from the implementation.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import backend
from tinymuse.gradcheck import check_directional, check_gradients
from tinymuse.functional import (avg_pool2d, conv2d, conv_transpose2d, dropout, embedding,
                                 group_norm, layer_norm, log_softmax,
                                 scaled_dot_product_attention, softmax, upsample_nearest2d)
from tinymuse.tensor import Tensor

FAST = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)


def small_shape(min_dims=1, max_dims=3, max_side=4):
    return st.lists(st.integers(1, max_side), min_size=min_dims, max_size=max_dims).map(tuple)


def on(device, array, dtype=np.float32, requires_grad=False):
    return Tensor(backend.to_device(np.asarray(array, dtype=dtype), device),
                  requires_grad=requires_grad)


# ------------------------------------------------------------------ softmax
def np_softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@FAST
@given(shape=small_shape(), data=st.data(), seed=seeds, scale=st.floats(0.1, 5.0))
def test_softmax_and_log_softmax_gradients(shape, data, seed, scale):
    axis = data.draw(st.integers(-len(shape), len(shape) - 1), label="axis")
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    check_gradients(lambda t: softmax(t, axis=axis), x)
    check_gradients(lambda t: log_softmax(t, axis=axis), x)


def test_softmax_forward_matches_formula_and_is_stable(device):
    x = np.random.default_rng(1).standard_normal((3, 5)).astype(np.float32)
    x[0] += 1000.0                                   # exp(1000) overflows without the shift
    y = softmax(on(device, x), axis=-1)
    log_y = log_softmax(on(device, x), axis=-1)
    assert y.dtype == np.float32 and log_y.dtype == np.float32
    np.testing.assert_allclose(y.numpy(), np_softmax(x.astype(np.float64), -1), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(y.numpy().sum(axis=-1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(log_y.numpy(), np.log(np_softmax(x.astype(np.float64), -1)),
                               rtol=1e-5, atol=1e-5)
    assert np.isfinite(log_y.numpy()).all()


def test_softmax_axis_0_and_shift_invariance():
    x = np.random.default_rng(2).standard_normal((4, 3))
    y = softmax(Tensor(x), axis=0).numpy()
    np.testing.assert_allclose(y.sum(axis=0), 1.0)
    np.testing.assert_allclose(softmax(Tensor(x + 7.5), axis=0).numpy(), y, atol=1e-12)


# ---------------------------------------------------------------- embedding
@FAST
@given(vocabulary=st.integers(1, 6), dim=st.integers(1, 3), ids_shape=small_shape(1, 2),
       seed=seeds)
def test_embedding_gradient_accumulates_repeated_ids(vocabulary, dim, ids_shape, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, vocabulary, ids_shape)
    weight = rng.standard_normal((vocabulary, dim))
    check_gradients(lambda w: embedding(ids, w), weight)
    # d(sum of all outputs)/d(row r) = (how many times r was looked up) · 1
    w = Tensor(weight, requires_grad=True)
    embedding(Tensor(ids), w).backward(np.ones(ids_shape + (dim,)))
    counts = np.bincount(ids.ravel(), minlength=vocabulary)
    np.testing.assert_array_equal(w.grad, np.repeat(counts[:, None], dim, axis=1))


def test_embedding_forward_and_errors(device):
    weight = np.arange(12, dtype=np.float32).reshape(4, 3)
    ids = np.array([[3, 0], [0, 2]])
    out = embedding(backend.to_device(ids, device), on(device, weight))
    assert out.shape == (2, 2, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out.numpy(), weight[ids])
    with pytest.raises(IndexError, match=r"\[0, 4\)"):
        embedding(backend.to_device(np.array([4]), device), on(device, weight))
    with pytest.raises(IndexError):
        embedding(backend.to_device(np.array([-1]), device), on(device, weight))
    with pytest.raises(TypeError, match="integers"):
        embedding(backend.to_device(np.array([1.0]), device), on(device, weight))


# ------------------------------------------------------------------ dropout
def test_dropout_is_seeded_scaled_and_has_the_masks_gradient():
    x = Tensor(np.random.default_rng(0).uniform(1, 2, (200, 50)).astype(np.float32),
               requires_grad=True)
    p = 0.3
    y1 = dropout(x, p, generator=backend.Generator(5))
    y2 = dropout(x, p, generator=backend.Generator(5))
    y3 = dropout(x, p, generator=backend.Generator(6))
    np.testing.assert_array_equal(y1.numpy(), y2.numpy())
    assert not np.array_equal(y1.numpy(), y3.numpy())
    kept = y1.numpy() != 0
    np.testing.assert_allclose(y1.numpy()[kept], x.numpy()[kept] / (1 - p), rtol=1e-6)
    assert abs(kept.mean() - (1 - p)) < 0.02            # 10 000 draws: σ ≈ 0.005
    assert y1.dtype == np.float32
    y1.backward(np.ones(x.shape, np.float32))
    np.testing.assert_allclose(x.grad, kept / (1 - p), rtol=1e-6)


def test_dropout_default_generator_follows_manual_seed():
    x = Tensor(np.ones((20, 20), np.float32))
    backend.manual_seed(123)
    a = dropout(x, 0.5).numpy()
    backend.manual_seed(123)
    np.testing.assert_array_equal(dropout(x, 0.5).numpy(), a)


def test_dropout_identity_in_eval_or_p_zero_and_p_one_drops_all(device):
    x = on(device, np.arange(6).reshape(2, 3) + 1.0)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0) is x
    assert (dropout(x, 1.0).numpy() == 0).all()
    with pytest.raises(ValueError, match="probability"):
        dropout(x, 1.5)


# -------------------------------------------------------------- convolution
def naive_conv2d(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.zeros((n, c, h + 2 * ph, wd + 2 * pw))
    xp[:, :, ph:ph + h, pw:pw + wd] = x
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    out = np.zeros((n, o, ho, wo))
    for bi in range(n):
        for oc in range(o):
            for y in range(ho):
                for xx in range(wo):
                    patch = xp[bi, :, y * sh:y * sh + kh, xx * sw:xx * sw + kw]
                    out[bi, oc, y, xx] = (patch * w[oc]).sum() + (b[oc] if b is not None else 0)
    return out


def naive_conv_transpose2d(x, w, b, stride, padding):
    n, c, h, wd = x.shape
    _, o, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    full = np.zeros((n, o, (h - 1) * sh + kh, (wd - 1) * sw + kw))
    for bi in range(n):
        for ic in range(c):
            for y in range(h):
                for xx in range(wd):
                    full[bi, :, y * sh:y * sh + kh, xx * sw:xx * sw + kw] += x[bi, ic, y, xx] * w[ic]
    out = full[:, :, ph:full.shape[2] - ph, pw:full.shape[3] - pw]
    return out + (b[None, :, None, None] if b is not None else 0)


conv_cases = st.fixed_dictionaries({
    "n": st.integers(1, 2), "c": st.integers(1, 3), "o": st.integers(1, 3),
    "kh": st.integers(1, 3), "kw": st.integers(1, 3),
    "stride": st.tuples(st.integers(1, 3), st.integers(1, 3)),
    "padding": st.tuples(st.integers(0, 2), st.integers(0, 2)),
    "h": st.integers(3, 7), "w": st.integers(3, 7), "bias": st.booleans(), "seed": seeds})


@FAST
@given(case=conv_cases)
def test_conv2d_forward_matches_naive_loops(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((case["n"], case["c"], case["h"], case["w"]))
    w = rng.standard_normal((case["o"], case["c"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["o"]) if case["bias"] else None
    out = conv2d(Tensor(x), Tensor(w), Tensor(b) if b is not None else None,
                 stride=case["stride"], padding=case["padding"])
    np.testing.assert_allclose(out.numpy(), naive_conv2d(x, w, b, case["stride"], case["padding"]),
                               rtol=1e-10, atol=1e-10)


@settings(max_examples=15, deadline=None)
@given(case=conv_cases)
def test_conv2d_gradients_elementwise(case):
    rng = np.random.default_rng(case["seed"])
    x = rng.standard_normal((1, case["c"], 4, 5))
    w = rng.standard_normal((case["o"], case["c"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["o"])
    kw = dict(stride=case["stride"], padding=case["padding"])
    check_gradients(lambda x, w, b: conv2d(x, w, b, **kw), x, w, b)


@settings(max_examples=10, deadline=None)
@given(stride=st.integers(1, 2), padding=st.integers(0, 2), seed=seeds)
def test_conv2d_directional_derivative_at_realistic_size(stride, padding, seed):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2, 8, 12, 12))
    w = rng.standard_normal((16, 8, 3, 3)) * 0.2
    b = rng.standard_normal(16)
    check_directional(lambda x, w, b: conv2d(x, w, b, stride=stride, padding=padding), x, w, b)


def test_conv2d_forward_float32_on_device(device):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    b = rng.standard_normal(4).astype(np.float32)
    out = conv2d(on(device, x), on(device, w), on(device, b), stride=2, padding=1)
    assert out.dtype == np.float32 and out.device == device
    np.testing.assert_allclose(out.numpy(), naive_conv2d(x, w, b, (2, 2), (1, 1)), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("conv, weight_shape", [(conv2d, (4, 3, 3, 3)),
                                                 (conv_transpose2d, (3, 4, 3, 3))])
def test_convolutions_give_the_same_gradient_when_only_one_input_wants_it(conv, weight_shape):
    """Backward saves only what the requested gradients need; check each alone."""
    rng = np.random.default_rng(8)
    x, w = rng.standard_normal((2, 3, 5, 5)), rng.standard_normal(weight_shape)
    upstream = rng.standard_normal(conv(Tensor(x), Tensor(w), stride=2, padding=1).shape)

    def grads(x_wants, w_wants):
        tx, tw = Tensor(x, requires_grad=x_wants), Tensor(w, requires_grad=w_wants)
        conv(tx, tw, stride=2, padding=1).backward(upstream)
        return tx.grad, tw.grad

    full_dx, full_dw = grads(True, True)
    np.testing.assert_allclose(grads(True, False)[0], full_dx, rtol=1e-12)
    np.testing.assert_allclose(grads(False, True)[1], full_dw, rtol=1e-12)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_convolutions_on_several_threads_give_the_bits_of_one(monkeypatch, threads):
    # im2col's copy and col2im's additions are shared out over threads by channel: every
    # column and every pixel must still be written once, by the same additions in the same
    # order (the BLAS's own threads stay as they are).
    rng = np.random.default_rng(6)
    x = rng.standard_normal((16, 12, 16, 16)).astype(np.float32)
    w = rng.standard_normal((8, 12, 3, 3)).astype(np.float32)
    w_up = rng.standard_normal((12, 8, 4, 4)).astype(np.float32)

    def run():
        xt, wt, ut = (Tensor(a, requires_grad=True) for a in (x, w, w_up))
        y = conv2d(xt, wt, None, stride=1, padding=1)
        z = conv_transpose2d(xt, ut, None, stride=2, padding=1)
        ((y * y).sum() + (z * z).sum()).backward()
        return [y.numpy(), z.numpy(), xt.grad, wt.grad, ut.grad]

    results = {}
    for count in ("1", threads):
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", count)
        results[count] = run()
    for one, several in zip(results["1"], results[threads]):
        np.testing.assert_array_equal(one, several)


def test_conv2d_rejects_mismatched_channels():
    with pytest.raises(ValueError, match="channels"):
        conv2d(Tensor(np.zeros((1, 3, 5, 5))), Tensor(np.zeros((2, 4, 3, 3))))


@FAST
@given(case=conv_cases)
def test_conv_transpose2d_forward_and_gradients(case):
    rng = np.random.default_rng(case["seed"])
    stride = case["stride"]
    padding = (min(case["padding"][0], case["kh"] - 1), min(case["padding"][1], case["kw"] - 1))
    x = rng.standard_normal((case["n"], case["c"], 3, 3))
    w = rng.standard_normal((case["c"], case["o"], case["kh"], case["kw"]))
    b = rng.standard_normal(case["o"]) if case["bias"] else None
    out = conv_transpose2d(Tensor(x), Tensor(w), Tensor(b) if b is not None else None,
                           stride=stride, padding=padding)
    np.testing.assert_allclose(out.numpy(), naive_conv_transpose2d(x, w, b, stride, padding),
                               rtol=1e-10, atol=1e-10)
    args = (x, w) if b is None else (x, w, b)
    check_gradients(lambda *t: conv_transpose2d(*t, stride=stride, padding=padding), *args)


@FAST
@given(stride=st.integers(1, 3), padding=st.integers(0, 1), k=st.integers(2, 3), seed=seeds)
def test_conv_transpose2d_is_the_adjoint_of_conv2d(stride, padding, k, seed):
    """<conv2d(x, W), y> = <x, conv_transpose2d(y, W)> for every x and y."""
    rng = np.random.default_rng(seed)
    h = stride * 3 + k - 2 * padding           # so that (h + 2p − k) divides by the stride
    x = rng.standard_normal((2, 3, h, h))
    w = rng.standard_normal((4, 3, k, k))
    y = rng.standard_normal(conv2d(Tensor(x), Tensor(w), stride=stride, padding=padding).shape)
    lhs = np.sum(conv2d(Tensor(x), Tensor(w), stride=stride, padding=padding).numpy() * y)
    back = conv_transpose2d(Tensor(y), Tensor(w), stride=stride, padding=padding).numpy()
    assert back.shape == x.shape
    np.testing.assert_allclose(lhs, np.sum(x * back), rtol=1e-10)


def test_conv_transpose2d_kernel4_stride2_doubles_the_image(device):
    x = on(device, np.ones((1, 2, 5, 7)))
    w = on(device, np.ones((2, 3, 4, 4)))
    assert conv_transpose2d(x, w, stride=2, padding=1).shape == (1, 3, 10, 14)


# ------------------------------------------------------ pooling, upsampling
@FAST
@given(n=st.integers(1, 2), c=st.integers(1, 2), h=st.integers(2, 6), w=st.integers(2, 6),
       k=st.tuples(st.integers(1, 2), st.integers(1, 2)), stride=st.none() | st.integers(1, 2),
       seed=seeds)
def test_avg_pool2d_forward_and_gradients(n, c, h, w, k, stride, seed):
    x = np.random.default_rng(seed).standard_normal((n, c, h, w))
    sh, sw = k if stride is None else (stride, stride)
    ho, wo = (h - k[0]) // sh + 1, (w - k[1]) // sw + 1
    expected = np.array([[[[x[i, j, y * sh:y * sh + k[0], z * sw:z * sw + k[1]].mean()
                            for z in range(wo)] for y in range(ho)] for j in range(c)]
                         for i in range(n)])
    np.testing.assert_allclose(avg_pool2d(Tensor(x), k, stride).numpy(), expected, atol=1e-12)
    check_gradients(lambda t: avg_pool2d(t, k, stride), x)


@FAST
@given(shape=st.tuples(st.integers(1, 2), st.integers(1, 2), st.integers(1, 3), st.integers(1, 3)),
       scale=st.integers(1, 3), seed=seeds)
def test_upsample_nearest2d_forward_and_gradients(shape, scale, seed):
    x = np.random.default_rng(seed).standard_normal(shape)
    expected = np.repeat(np.repeat(x, scale, axis=2), scale, axis=3)
    np.testing.assert_array_equal(upsample_nearest2d(Tensor(x), scale).numpy(), expected)
    check_gradients(lambda t: upsample_nearest2d(t, scale), x)


def test_pool_and_upsample_on_device(device):
    x = np.random.default_rng(4).standard_normal((2, 3, 4, 6)).astype(np.float32)
    pooled = avg_pool2d(on(device, x), 2)
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled.numpy(), x.reshape(2, 3, 2, 2, 3, 2).mean(axis=(3, 5)),
                               rtol=1e-6)
    up = upsample_nearest2d(on(device, x), 2)
    np.testing.assert_array_equal(up.numpy()[:, :, ::2, ::2], x)


# ------------------------------------------------------------ normalisation
def np_layer_norm(x, w, b, eps=1e-5):
    mu = x.mean(axis=-1, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=-1, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@FAST
@given(shape=small_shape(1, 3, 5), affine=st.sampled_from(["both", "weight", "bias", "none"]),
       scale=st.floats(0.1, 10.0), seed=seeds)
def test_layer_norm_gradients(shape, affine, scale, seed):
    shape = shape[:-1] + (shape[-1] + 1,)        # at least 2 features, so σ > 0
    rng = np.random.default_rng(seed)
    x = scale * rng.standard_normal(shape) + rng.standard_normal()
    w, b = rng.standard_normal(shape[-1]), rng.standard_normal(shape[-1])
    if affine == "both":
        check_gradients(lambda x, w, b: layer_norm(x, w, b), x, w, b)
    elif affine == "weight":
        check_gradients(lambda x, w: layer_norm(x, w, None), x, w)
    elif affine == "bias":
        check_gradients(lambda x, b: layer_norm(x, None, b), x, b)
    else:
        check_gradients(lambda x: layer_norm(x, None, None), x)


def test_layer_norm_forward(device):
    rng = np.random.default_rng(5)
    x = (3 * rng.standard_normal((4, 6, 8)) + 2).astype(np.float32)
    w, b = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    y = layer_norm(on(device, x), on(device, w), on(device, b))
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y.numpy(), np_layer_norm(x.astype(np.float64), w, b),
                               rtol=1e-4, atol=1e-5)
    plain = layer_norm(on(device, x), None, None).numpy()
    np.testing.assert_allclose(plain.mean(axis=-1), 0, atol=1e-5)
    np.testing.assert_allclose(plain.var(axis=-1), 1, atol=1e-3)
    with pytest.raises(ValueError, match="last axis"):
        layer_norm(on(device, x), on(device, np.ones(6)), None)


def np_group_norm(x, groups, w, b, eps=1e-5):
    n, c = x.shape[:2]
    blocks = x.reshape(n, groups, -1)
    mu = blocks.mean(axis=-1, keepdims=True)
    var = blocks.var(axis=-1, keepdims=True)
    y = ((blocks - mu) / np.sqrt(var + eps)).reshape(x.shape)
    per_channel = (c,) + (1,) * (x.ndim - 2)
    return y * w.reshape(per_channel) + b.reshape(per_channel)


@FAST
@given(n=st.integers(1, 2), groups=st.integers(1, 3), per_group=st.integers(1, 2),
       spatial=st.tuples(st.integers(1, 3), st.integers(2, 3)), affine=st.booleans(), seed=seeds)
def test_group_norm_forward_and_gradients(n, groups, per_group, spatial, affine, seed):
    rng = np.random.default_rng(seed)
    c = groups * per_group
    x = rng.standard_normal((n, c) + spatial)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    np.testing.assert_allclose(group_norm(Tensor(x), groups, Tensor(w), Tensor(b)).numpy(),
                               np_group_norm(x, groups, w, b), rtol=1e-10, atol=1e-10)
    if affine:
        check_gradients(lambda x, w, b: group_norm(x, groups, w, b), x, w, b)
    else:
        check_gradients(lambda x: group_norm(x, groups, None, None), x)


def test_group_norm_rejects_groups_that_do_not_divide_channels(device):
    with pytest.raises(ValueError, match="equal groups"):
        group_norm(on(device, np.zeros((1, 6, 2, 2))), 4, None, None)


# ---------------------------------------------------------------- attention
def np_attention(q, k, v, mask=None):
    s = q @ np.swapaxes(k, -1, -2) / np.sqrt(q.shape[-1])
    if mask is not None:
        s = np.where(mask, s, -np.inf)
        m = s.max(axis=-1, keepdims=True)
        e = np.where(mask, np.exp(s - np.where(np.isfinite(m), m, 0)), 0)
        total = e.sum(axis=-1, keepdims=True)
        return (e / np.where(total == 0, 1, total)) @ v
    return np_softmax(s, -1) @ v


attention_shapes = st.fixed_dictionaries({
    "batch": small_shape(0, 2, 2), "tq": st.integers(1, 3), "tk": st.integers(1, 4),
    "d": st.integers(1, 3), "dv": st.integers(1, 3), "seed": seeds,
    "masked": st.booleans(), "broadcast_kv": st.booleans()})


@FAST
@given(case=attention_shapes)
def test_attention_gradients_elementwise(case):
    rng = np.random.default_rng(case["seed"])
    batch = case["batch"]
    kv_batch = tuple(1 for _ in batch) if case["broadcast_kv"] else batch   # shared over batch
    q = rng.standard_normal(batch + (case["tq"], case["d"]))
    k = rng.standard_normal(kv_batch + (case["tk"], case["d"]))
    v = rng.standard_normal(kv_batch + (case["tk"], case["dv"]))
    mask = rng.random((case["tq"], case["tk"])) < 0.6 if case["masked"] else None
    np.testing.assert_allclose(
        scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask).numpy(),
        np_attention(q, k, v, mask), rtol=1e-10, atol=1e-12)
    check_gradients(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), q, k, v)


@settings(max_examples=10, deadline=None)
@given(masked=st.booleans(), seed=seeds)
def test_attention_directional_derivative_at_realistic_size(masked, seed):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((2, 4, 16, 8)) for _ in range(3))
    mask = np.tril(np.ones((16, 16), bool)) if masked else None
    check_directional(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask), q, k, v)


def test_attention_row_with_no_allowed_key_gives_zeros_not_nan(device):
    rng = np.random.default_rng(6)
    q, k, v = (on(device, rng.standard_normal((2, 3, 4)), requires_grad=True) for _ in range(3))
    mask = np.ones((2, 3, 3), bool)
    mask[0, 1] = False                                 # query 1 of batch 0 may see nothing
    out = scaled_dot_product_attention(q, k, v, backend.to_device(mask, device))
    assert np.isfinite(out.numpy()).all()
    np.testing.assert_array_equal(out.numpy()[0, 1], 0.0)
    np.testing.assert_allclose(out.numpy()[1], np_attention(q.numpy()[1], k.numpy()[1],
                                                            v.numpy()[1]), rtol=1e-5, atol=1e-6)
    out.backward(on(device, np.ones(out.shape)).data)
    for t in (q, k, v):
        assert np.isfinite(backend.to_numpy(t.grad)).all()
    np.testing.assert_array_equal(backend.to_numpy(q.grad)[0, 1], 0.0)


def test_attention_ignores_values_at_masked_keys():
    rng = np.random.default_rng(7)
    q, k, v = (rng.standard_normal((3, 5, 4)) for _ in range(3))
    mask = np.ones((5, 5), bool)
    mask[:, 2] = False
    v2 = v.copy()
    v2[:, 2] = 100.0
    a = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v), mask).numpy()
    b = scaled_dot_product_attention(Tensor(q), Tensor(k), Tensor(v2), mask).numpy()
    np.testing.assert_array_equal(a, b)


def test_attention_rejects_bad_masks_and_shapes():
    q = Tensor(np.zeros((2, 3, 4)))
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, q, q, np.ones((3, 3)))
    with pytest.raises(ValueError, match="broadcast"):
        scaled_dot_product_attention(q, q, q, np.ones((3, 2), bool))
    with pytest.raises(ValueError, match="share"):
        scaled_dot_product_attention(q, Tensor(np.zeros((2, 3, 5))), q)
