"""Chapter 4's exercises: the vector quantizer (tutorials/04-images-as-tokens.md).

Each test calls the exercised method of :class:`tinymuse.vq.VectorQuantizer` directly and
checks it against a NumPy reference written here. None of them calls ``Tensor.backward()``
(chapter 1's exercises): the straight-through gradient is read by walking the graph here and
calling each recorded operation's own ``backward``. The codebook upkeep (EMA, restarts) is
fed chosen ids, so it does not need the nearest-code look-up.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from tinymuse import Tensor
from tinymuse.vq import VectorQuantizer


def quantizer_with(codebook, **options):
    """A quantizer whose codebook is ``codebook`` (K, D)."""
    k, d = codebook.shape
    quantizer = VectorQuantizer(k, d, **options)
    quantizer.codebook.data[...] = codebook
    return quantizer


def squared_distances(z, codebook):
    """(N, K) table of ‖z_n − e_k‖², every difference spelled out."""
    z64, e64 = np.asarray(z, np.float64), np.asarray(codebook, np.float64)
    return ((z64[:, None, :] - e64[None, :, :]) ** 2).sum(axis=-1)


# --------------------------------------------------------------------------- #
# ch04_ex1 — the nearest-code look-up
# --------------------------------------------------------------------------- #

def test_ch04_ex1_nearest_code_matches_the_brute_force_argmin():
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(16, 5)).astype(np.float32)
    quantizer = quantizer_with(codebook, update="loss")
    z = rng.normal(size=(300, 5)).astype(np.float32)
    ids = quantizer.nearest(z)
    assert isinstance(ids, Tensor) and ids.shape == (300,) and ids.dtype.kind in "iu"
    table = squared_distances(z, codebook)
    chosen = table[np.arange(300), ids.numpy()]
    np.testing.assert_allclose(chosen, table.min(axis=1), rtol=1e-5, atol=1e-5)
    # a Tensor gives the same ids as its array
    np.testing.assert_array_equal(quantizer.nearest(Tensor(z)).numpy(), ids.numpy())


def test_ch04_ex1_every_code_is_its_own_nearest():
    rng = np.random.default_rng(1)
    codebook = rng.normal(size=(32, 3)).astype(np.float32) * 4
    quantizer = quantizer_with(codebook, update="ema")
    order = rng.permutation(32)
    z = codebook[order] + 1e-3 * rng.normal(size=(32, 3)).astype(np.float32)
    np.testing.assert_array_equal(quantizer.nearest(z).numpy(), order)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float64, st.tuples(st.integers(1, 20), st.just(4)),
              elements=st.floats(-10, 10, width=32)),
       arrays(np.float64, st.tuples(st.integers(1, 12), st.just(4)),
              elements=st.floats(-10, 10, width=32)))
def test_ch04_ex1_no_code_is_nearer_than_the_chosen_one(z, codebook):
    quantizer = quantizer_with(codebook.astype(np.float32), update="loss")
    ids = quantizer.nearest(z.astype(np.float32)).numpy()
    table = squared_distances(z, codebook)
    chosen = table[np.arange(len(z)), ids]
    assert (chosen <= table.min(axis=1) + 1e-3 * (1 + table.max())).all()


def test_ch04_ex1_cosine_codes_pick_the_most_similar_direction():
    rng = np.random.default_rng(2)
    codebook = rng.normal(size=(10, 6)).astype(np.float32) * rng.uniform(0.1, 5, (10, 1))
    quantizer = quantizer_with(codebook.astype(np.float32), update="loss", l2_normalize=True)
    z = rng.normal(size=(200, 6)).astype(np.float32) * 7
    cosine = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (
        codebook / np.linalg.norm(codebook, axis=1, keepdims=True)).T
    ids = quantizer.nearest(z).numpy()
    np.testing.assert_allclose(cosine[np.arange(200), ids], cosine.max(axis=1), atol=1e-5)


# --------------------------------------------------------------------------- #
# ch04_ex2 — the losses and the straight-through estimator
# --------------------------------------------------------------------------- #

def rows_of(z):
    """(B, D, h, w) → (B·h·w, D): one encoder output per row, as the quantizer sees them."""
    b, d, h, w = z.shape
    return z.transpose(0, 2, 3, 1).reshape(b * h * w, d)


def quantize(update, seed=0, beta=0.25):
    rng = np.random.default_rng(seed)
    codebook = rng.normal(size=(8, 3)).astype(np.float32)
    quantizer = quantizer_with(codebook, update=update, beta=beta)
    quantizer.eval()                        # no codebook upkeep: only the forward pass
    z = Tensor(rng.normal(size=(2, 3, 4, 5)).astype(np.float32), requires_grad=True)
    return quantizer, codebook, z, quantizer(z)


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_ch04_ex2_codes_and_losses_have_the_right_values(update):
    quantizer, codebook, z, out = quantize(update, beta=0.4)
    flat = rows_of(z.numpy())
    ids = out.ids.numpy().reshape(-1)
    q = codebook[ids]                                         # (N, D): each row's code
    np.testing.assert_allclose(rows_of(out.z_q.numpy()), q, atol=1e-6)
    assert out.z_q.shape == z.shape and out.ids.shape == (2, 4, 5)
    error = float(((flat.astype(np.float64) - q) ** 2).mean())
    assert out.commitment == pytest.approx(error, rel=1e-5)
    codebook_term = error if update == "loss" else 0.0       # EMA moves the codes instead
    assert out.loss.shape == ()
    assert out.loss.item() == pytest.approx(codebook_term + 0.4 * error, rel=1e-5)


def graph_leaves(tensor):
    """The tensors with no recorded operation that ``tensor`` was computed from."""
    found, stack, seen = [], [tensor], set()
    while stack:
        t = stack.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        if t._fn is None:
            found.append(t)
        else:
            stack.extend(p for p in t._fn.inputs if isinstance(p, Tensor) and p.requires_grad)
    return found


def vector_jacobian(output, upstream, leaf):
    """d⟨upstream, output⟩/d leaf, by calling each recorded operation's backward directly
    (a plain reverse walk written here, so Tensor.backward is not needed)."""
    order, seen = [], set()

    def visit(t):
        if id(t) in seen:
            return
        seen.add(id(t))
        if t._fn is not None:
            for parent in t._fn.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad:
                    visit(parent)
        order.append(t)

    visit(output)
    grads = {id(output): np.asarray(upstream, dtype=output.dtype)}
    for t in reversed(order):
        g = grads.get(id(t))
        if g is None or t._fn is None:
            continue
        back = t._fn.backward(g)
        back = back if isinstance(back, tuple) else (back,)
        for parent, needed, parent_grad in zip(t._fn.inputs, t._fn.needs_input_grad, back):
            if needed and parent_grad is not None:
                assert parent_grad.shape == parent.shape     # nothing here broadcasts
                grads[id(parent)] = grads.get(id(parent), 0) + parent_grad
    return grads.get(id(leaf))


@pytest.mark.parametrize("update", ["loss", "ema"])
def test_ch04_ex2_the_gradient_goes_straight_through(update):
    quantizer, _, z, out = quantize(update, seed=3)
    assert out.z_q.requires_grad
    leaves = graph_leaves(out.z_q)
    assert any(leaf is z for leaf in leaves)
    assert not any(leaf is quantizer.codebook for leaf in leaves)   # z_q never moves codes
    upstream = np.random.default_rng(4).normal(size=z.shape).astype(np.float32)
    np.testing.assert_array_equal(vector_jacobian(out.z_q, upstream, z), upstream)


def test_ch04_ex2_only_the_gradient_codebook_gets_a_codebook_loss():
    quantizer, _, z, out = quantize("loss")
    assert out.loss.requires_grad
    leaves = graph_leaves(out.loss)
    assert any(leaf is quantizer.codebook for leaf in leaves)
    assert any(leaf is z for leaf in leaves)
    quantizer, _, z, out = quantize("ema")
    assert [leaf is z for leaf in graph_leaves(out.loss)] == [True]


# --------------------------------------------------------------------------- #
# ch04_ex3 — the EMA codebook update
# --------------------------------------------------------------------------- #

def ema_reference(steps, codebook_size, decay, eps):
    """Counts N, sums S and codes e after ``steps`` = [(z, ids), ...], in float64."""
    n = np.zeros(codebook_size)
    s = None
    for z, ids in steps:
        z = z.astype(np.float64)
        s = np.zeros((codebook_size, z.shape[1])) if s is None else s
        batch_n = np.array([(ids == k).sum() for k in range(codebook_size)], dtype=np.float64)
        batch_s = np.stack([z[ids == k].sum(axis=0) for k in range(codebook_size)])
        n = decay * n + (1 - decay) * batch_n
        s = decay * s + (1 - decay) * batch_s
    total = n.sum()
    smoothed = total * (n + eps) / (total + codebook_size * eps)
    return n, s, s / smoothed[:, None]


def test_ch04_ex3_the_ema_update_keeps_moving_averages():
    rng = np.random.default_rng(0)
    k, d, decay, eps = 6, 3, 0.9, 1e-5
    quantizer = quantizer_with(rng.normal(size=(k, d)).astype(np.float32), update="ema",
                               decay=decay, eps=eps, restart_dead_codes=False)
    steps = []
    for _ in range(3):
        z = rng.normal(size=(40, d)).astype(np.float32)
        ids = rng.integers(0, k - 1, size=40)                  # the last code is never chosen
        steps.append((z, ids))
        quantizer._update_codebook(z, ids)
    n, s, codes = ema_reference(steps, k, decay, eps)
    np.testing.assert_allclose(quantizer.code_count.numpy(), n, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(quantizer.code_sum.numpy(), s, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(quantizer.codebook.numpy(), codes, rtol=1e-4, atol=1e-5)


def test_ch04_ex3_with_the_same_batch_each_code_becomes_the_mean_of_its_vectors():
    """k-means' step, done slowly: after many updates, e_k is the mean of the vectors that
    chose code k."""
    rng = np.random.default_rng(1)
    quantizer = quantizer_with(np.zeros((4, 2), np.float32), update="ema", decay=0.8,
                               restart_dead_codes=False)
    z = rng.normal(size=(60, 2)).astype(np.float32) + 5
    ids = np.arange(60) % 4
    for _ in range(200):
        quantizer._update_codebook(z, ids)
    means = np.stack([z[ids == k].mean(axis=0) for k in range(4)])
    np.testing.assert_allclose(quantizer.codebook.numpy(), means, rtol=1e-3)
    np.testing.assert_allclose(quantizer.code_count.numpy(), 15.0, rtol=1e-3)


def test_ch04_ex3_a_gradient_codebook_only_counts():
    rng = np.random.default_rng(2)
    codebook = rng.normal(size=(5, 2)).astype(np.float32)
    quantizer = quantizer_with(codebook, update="loss", decay=0.5, restart_dead_codes=False)
    ids = np.array([0, 0, 3, 4, 4, 4])
    quantizer._update_codebook(rng.normal(size=(6, 2)).astype(np.float32), ids)
    quantizer._update_codebook(rng.normal(size=(6, 2)).astype(np.float32), ids[:2])
    np.testing.assert_array_equal(quantizer.codebook.numpy(), codebook)
    np.testing.assert_allclose(quantizer.code_count.numpy(),
                               0.5 * (0.5 * np.array([2, 0, 0, 1, 3])) + 0.5 * np.array(
                                   [2, 0, 0, 0, 0]), rtol=1e-6)


# --------------------------------------------------------------------------- #
# ch04_ex4 — dead-code restarts
# --------------------------------------------------------------------------- #

def is_row_of(vector, matrix):
    return bool((np.abs(matrix - vector).max(axis=1) == 0).any())


@pytest.mark.parametrize("update", ["ema", "loss"])
def test_ch04_ex4_dead_codes_move_onto_distinct_encoder_outputs(update):
    rng = np.random.default_rng(0)
    codebook = rng.normal(size=(8, 3)).astype(np.float32)
    quantizer = quantizer_with(codebook, update=update, dead_code_threshold=0.5)
    counts = np.array([3.0, 0.1, 2.0, 0.7, 0.0, 5.0, 0.49, 1.0], dtype=np.float32)
    quantizer.code_count.data[...] = counts
    if update == "ema":
        sums = rng.normal(size=(8, 3)).astype(np.float32)
        quantizer.code_sum.data[...] = sums
    z = rng.normal(size=(20, 3)).astype(np.float32)
    quantizer._restart_dead_codes(z)
    dead = counts < 0.5
    after = quantizer.codebook.numpy()
    np.testing.assert_array_equal(after[~dead], codebook[~dead])          # the living stay
    assert all(is_row_of(code, z) for code in after[dead])                 # the dead move
    assert len({tuple(code) for code in after[dead]}) == dead.sum()        # onto distinct rows
    np.testing.assert_allclose(quantizer.code_count.numpy(), np.where(dead, 0.5, counts))
    if update == "ema":   # N_k = threshold and S_k = threshold · e_k, so S_k / N_k = e_k
        np.testing.assert_allclose(quantizer.code_sum.numpy()[dead], 0.5 * after[dead],
                                   rtol=1e-6)
        np.testing.assert_array_equal(quantizer.code_sum.numpy()[~dead], sums[~dead])


def test_ch04_ex4_nothing_changes_when_every_code_is_alive():
    rng = np.random.default_rng(1)
    codebook = rng.normal(size=(6, 2)).astype(np.float32)
    quantizer = quantizer_with(codebook, update="ema", dead_code_threshold=0.1)
    counts = np.float32(0.1) + np.arange(6, dtype=np.float32)
    quantizer.code_count.data[...] = counts
    sums = quantizer.code_sum.numpy().copy()
    quantizer._restart_dead_codes(rng.normal(size=(10, 2)).astype(np.float32))
    np.testing.assert_array_equal(quantizer.codebook.numpy(), codebook)
    np.testing.assert_array_equal(quantizer.code_sum.numpy(), sums)
    np.testing.assert_array_equal(quantizer.code_count.numpy(), counts)


def test_ch04_ex4_more_dead_codes_than_encoder_outputs():
    """A fresh quantizer's counts are all zero: the first batch seeds the whole codebook,
    reusing encoder outputs when there are fewer of them than codes."""
    rng = np.random.default_rng(2)
    quantizer = VectorQuantizer(16, 4, update="ema")
    z = rng.normal(size=(5, 4)).astype(np.float32)
    quantizer._restart_dead_codes(z)
    assert all(is_row_of(code, z) for code in quantizer.codebook.numpy())
    np.testing.assert_allclose(quantizer.code_count.numpy(), quantizer.dead_code_threshold)
