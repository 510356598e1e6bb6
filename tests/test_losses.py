"""Loss functions: the fused cross-entropy and the regression losses.

Values are compared with formulas written out here in NumPy (float64);
gradients with central finite differences.
"""
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import backend
from tinymuse.gradcheck import check_gradients
from tinymuse.functional import cross_entropy, l1_loss, mse_loss
from tinymuse.tensor import Tensor

FAST = settings(max_examples=30, deadline=None)
seeds = st.integers(0, 2**32 - 1)
leading_shapes = st.lists(st.integers(1, 3), min_size=0, max_size=2).map(tuple)


def np_log_softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_cross_entropy(logits, targets, weight=None, ignore_index=-100, eps=0.0, reduction="mean"):
    """Written straight from the definitions: q = (1 − ε)·onehot + ε/C, ℓ = −Σ q log p,
    w = weight · [t ≠ ignore_index]."""
    classes = logits.shape[-1]
    log_p = np_log_softmax(logits)
    keep = targets != ignore_index
    onehot = np.eye(classes)[np.where(keep, targets, 0)]
    q = (1 - eps) * onehot + eps / classes
    per_position = -(q * log_p).sum(axis=-1)
    w = keep * (np.ones(targets.shape) if weight is None else np.broadcast_to(weight, targets.shape))
    if reduction == "mean":
        return (w * per_position).sum() / w.sum()
    if reduction == "sum":
        return (w * per_position).sum()
    return w * per_position


ce_cases = st.fixed_dictionaries({
    "lead": leading_shapes, "classes": st.integers(1, 5), "seed": seeds,
    "reduction": st.sampled_from(["mean", "sum", "none"]),
    "eps": st.sampled_from([0.0, 0.1, 0.5]), "weighted": st.booleans(),
    "ignore": st.booleans(), "scale": st.floats(0.1, 10.0)})


def make_case(case):
    rng = np.random.default_rng(case["seed"])
    lead, classes = case["lead"], case["classes"]
    logits = case["scale"] * rng.standard_normal(lead + (classes,))
    targets = rng.integers(0, classes, lead)
    weight = rng.random(lead) + 0.1 if case["weighted"] else None
    if case["ignore"] and targets.size > 1:
        targets.reshape(-1)[0] = -100
    return logits, targets, weight


@FAST
@given(case=ce_cases)
def test_cross_entropy_values_and_gradients(case):
    logits, targets, weight = make_case(case)
    kwargs = dict(weight=weight, label_smoothing=case["eps"], reduction=case["reduction"])
    out = cross_entropy(Tensor(logits), targets, **kwargs)
    expected = np_cross_entropy(logits, targets, weight, eps=case["eps"], reduction=case["reduction"])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)
    check_gradients(lambda z: cross_entropy(z, targets, **kwargs), logits)


def test_cross_entropy_of_uniform_logits_is_log_c():
    assert np.isclose(cross_entropy(Tensor(np.zeros((4, 7))), np.arange(4)).item(), np.log(7))


def test_label_smoothing_against_the_direct_formula():
    """ℓ = (1 − ε)·(−log p_t) + ε·mean_c(−log p_c) for one position."""
    z = np.array([[2.0, -1.0, 0.5, 0.0]])
    eps = 0.2
    log_p = z[0] - np.log(np.exp(z[0]).sum())
    expected = (1 - eps) * -log_p[2] + eps * np.mean(-log_p)
    out = cross_entropy(Tensor(z), np.array([2]), label_smoothing=eps)
    assert np.isclose(out.item(), expected, rtol=1e-12)


def test_mask_covering_nothing_raises_a_clear_error():
    logits = Tensor(np.random.default_rng(0).standard_normal((2, 3, 5)), requires_grad=True)
    targets = np.zeros((2, 3), dtype=np.int64)
    with pytest.raises(ValueError, match="no position contributes"):
        cross_entropy(logits, targets, weight=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="no position contributes"):
        cross_entropy(logits, np.full((2, 3), -100))
    # with reduction="sum" an empty mask is a well-defined zero
    assert cross_entropy(logits, targets, weight=np.zeros((2, 3)), reduction="sum").item() == 0.0


def test_targets_at_zero_weight_positions_change_nothing():
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((3, 4, 6))
    mask = rng.random((3, 4)) < 0.5
    mask[0, 0], mask[0, 1] = True, False
    targets = rng.integers(0, 6, (3, 4))
    other = np.where(mask, targets, (targets + 1 + rng.integers(0, 4, targets.shape)) % 6)
    assert (other != targets)[~mask].all()
    results = []
    for t in (targets, other):
        z = Tensor(logits, requires_grad=True)
        loss = cross_entropy(z, t, weight=mask, label_smoothing=0.1)
        loss.backward()
        results.append((loss.item(), z.grad))
    assert results[0][0] == results[1][0]
    np.testing.assert_array_equal(results[0][1], results[1][1])
    assert (results[0][1][~mask] == 0).all() and (results[0][1][mask] != 0).any()


def test_weighted_mean_divides_by_the_total_weight():
    rng = np.random.default_rng(2)
    logits, targets = rng.standard_normal((5, 3)), rng.integers(0, 3, 5)
    weight = np.array([0.5, 0.0, 2.0, 1.0, 0.0])
    per_position = cross_entropy(Tensor(logits), targets, reduction="none").numpy()
    expected = (weight * per_position).sum() / weight.sum()
    assert np.isclose(cross_entropy(Tensor(logits), targets, weight=weight).item(), expected)
    # a weight broadcast along a leading axis
    weight_row = np.array([1.0, 0.0, 1.0])
    z = rng.standard_normal((2, 3, 4))
    t = rng.integers(0, 4, (2, 3))
    full = np.broadcast_to(weight_row, (2, 3))
    assert np.isclose(cross_entropy(Tensor(z), t, weight=weight_row).item(),
                      np_cross_entropy(z, t, full))


def test_ignore_index_custom_value():
    rng = np.random.default_rng(3)
    z, t = rng.standard_normal((4, 3)), np.array([0, 2, 7, 1])
    got = cross_entropy(Tensor(z), t, ignore_index=7).item()
    assert np.isclose(got, np_cross_entropy(z, t, ignore_index=7))


def test_cross_entropy_on_device_keeps_float32(device):
    rng = np.random.default_rng(4)
    z = rng.standard_normal((3, 4, 10)).astype(np.float32)
    t = rng.integers(0, 10, (3, 4))
    mask = rng.random((3, 4)) < 0.7
    mask[0, 0] = True
    logits = Tensor(backend.to_device(z, device), requires_grad=True)
    loss = cross_entropy(logits, backend.to_device(t, device), weight=backend.to_device(mask, device),
                         label_smoothing=0.1)
    assert loss.dtype == np.float32 and loss.shape == ()
    np.testing.assert_allclose(loss.item(), np_cross_entropy(z.astype(np.float64), t, mask, eps=0.1),
                               rtol=1e-5)
    loss.backward()
    assert logits.grad.dtype == np.float32
    # the softmax gradient of each position sums to zero over the classes
    np.testing.assert_allclose(backend.to_numpy(logits.grad).sum(axis=-1), 0, atol=1e-6)


def test_cross_entropy_reports_bad_input():
    z = Tensor(np.zeros((2, 5, 3)))
    with pytest.raises(ValueError, match="class axis last"):
        cross_entropy(z, np.zeros((2, 3), dtype=int))
    with pytest.raises(TypeError, match="integer"):
        cross_entropy(z, np.zeros((2, 5)))
    with pytest.raises(IndexError, match=r"\[0, 3\)"):
        cross_entropy(z, np.full((2, 5), 3))
    with pytest.raises(ValueError, match="reduction"):
        cross_entropy(z, np.zeros((2, 5), dtype=int), reduction="average")
    with pytest.raises(ValueError, match="broadcast"):
        cross_entropy(z, np.zeros((2, 5), dtype=int), weight=np.ones(3))
    with pytest.raises(ValueError, match="label_smoothing"):
        cross_entropy(z, np.zeros((2, 5), dtype=int), label_smoothing=1.5)


# --------------------------------------------------------- regression losses
regression_cases = st.fixed_dictionaries({
    "shape": st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple),
    "reduction": st.sampled_from(["mean", "sum", "none"]), "seed": seeds})


@FAST
@given(case=regression_cases)
def test_mse_loss_values_and_gradients(case):
    rng = np.random.default_rng(case["seed"])
    a, b = rng.standard_normal(case["shape"]), rng.standard_normal(case["shape"])
    squared = (a - b) ** 2
    expected = {"mean": squared.mean(), "sum": squared.sum(), "none": squared}[case["reduction"]]
    np.testing.assert_allclose(mse_loss(Tensor(a), Tensor(b), case["reduction"]).numpy(), expected,
                               rtol=1e-12)
    check_gradients(lambda a, b: mse_loss(a, b, case["reduction"]), a, b)


@FAST
@given(case=regression_cases)
def test_l1_loss_values_and_gradients(case):
    rng = np.random.default_rng(case["seed"])
    a = rng.standard_normal(case["shape"])
    # keep |a − b| ≥ 0.1: |·| has a kink at 0 where finite differences disagree
    b = a + rng.choice([-1, 1], case["shape"]) * rng.uniform(0.1, 2.0, case["shape"])
    absolute = np.abs(a - b)
    expected = {"mean": absolute.mean(), "sum": absolute.sum(), "none": absolute}[case["reduction"]]
    np.testing.assert_allclose(l1_loss(Tensor(a), Tensor(b), case["reduction"]).numpy(), expected,
                               rtol=1e-12)
    check_gradients(lambda a, b: l1_loss(a, b, case["reduction"]), a, b)


def test_regression_losses_on_device_and_errors(device):
    rng = np.random.default_rng(5)
    a = rng.standard_normal((3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4)).astype(np.float32)
    ta = Tensor(backend.to_device(a, device), requires_grad=True)
    tb = Tensor(backend.to_device(b, device))
    loss = mse_loss(ta, tb)
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.item(), np.mean((a - b) ** 2), rtol=1e-5)
    loss.backward()
    assert ta.grad.dtype == np.float32
    np.testing.assert_allclose(backend.to_numpy(ta.grad), 2 * (a - b) / a.size, rtol=1e-5)
    np.testing.assert_allclose(l1_loss(ta, tb, "sum").item(), np.abs(a - b).sum(), rtol=1e-5)
    with pytest.raises(ValueError, match="differ in shape"):
        mse_loss(ta, Tensor(backend.to_device(b[:, :1], device)))
    with pytest.raises(ValueError, match="reduction"):
        l1_loss(ta, tb, reduction="max")
