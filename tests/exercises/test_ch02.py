"""Chapter 2's exercises: layers and training (tutorials/02-layers-and-training.md).

No test here walks a graph: the backward exercises call ``Function.backward`` directly on
float64 NumPy arrays and compare it with finite differences of a NumPy forward written here;
the optimizer test sets ``.grad`` by hand; the schedule is a plain function. So chapter 2's
exercises build on nothing, not even chapter 1's engine.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinymuse import nn
from tinymuse.ops.linalg import LinearFunction
from tinymuse.ops.norm import GroupNormFunction, LayerNormFunction
from tinymuse.optim import AdamW, WarmupCosine, warmup_cosine_lr

from finite_differences import numeric_gradient

FAST = settings(max_examples=40, deadline=None)



def run_backward(function, *inputs, grad, needs, **options):
    """``function``'s own forward, then its backward, with no graph and no engine."""
    fn = function()
    fn.needs_input_grad = tuple(needs)
    fn.forward(*inputs, **options)
    return fn.backward(grad)


# --------------------------------------------------------------------------- #
# ch02_ex1 — the Linear layer's backward
# --------------------------------------------------------------------------- #

def linear_reference(x, w, b):
    return np.einsum("...i,oi->...o", x, w) + b


def test_ch02_ex1_linear_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(2, 3, 4)), rng.normal(size=(5, 4)), rng.normal(size=5)
    g = rng.normal(size=(2, 3, 5))
    kept = g.copy()
    grad_x, grad_w, grad_b = run_backward(LinearFunction, x, w, b, grad=g, needs=(True,) * 3)
    assert grad_x.shape == x.shape and grad_w.shape == w.shape and grad_b.shape == b.shape
    for k, got in enumerate((grad_x, grad_w, grad_b)):
        np.testing.assert_allclose(got, numeric_gradient(linear_reference, [x, w, b], k, g),
                                   atol=1e-6)
    assert np.array_equal(g, kept), "backward must not write into grad"


def test_ch02_ex1_linear_backward_without_bias_and_for_frozen_inputs():
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(6, 3)), rng.normal(size=(2, 3))
    g = rng.normal(size=(6, 2))
    grad_x, grad_w, grad_b = run_backward(LinearFunction, x, w, None, grad=g,
                                          needs=(True, True, False))
    assert grad_b is None
    np.testing.assert_allclose(grad_x, numeric_gradient(lambda x, w: x @ w.T, [x, w], 0, g),
                               atol=1e-6)
    np.testing.assert_allclose(grad_w, numeric_gradient(lambda x, w: x @ w.T, [x, w], 1, g),
                               atol=1e-6)
    # An input batch needs no gradient: only the weight's and the bias's are wanted.
    b = rng.normal(size=2)
    grad_x, grad_w, grad_b = run_backward(LinearFunction, x, w, b, grad=g,
                                          needs=(False, True, True))
    assert grad_x is None
    np.testing.assert_allclose(grad_b, g.sum(axis=0))
    # Frozen weights (say, a pretrained text encoder): only dL/dx.
    grad_x, grad_w, grad_b = run_backward(LinearFunction, x, w, b, grad=g,
                                          needs=(True, False, False))
    assert grad_w is None and grad_b is None
    np.testing.assert_allclose(grad_x, numeric_gradient(linear_reference, [x, w, b], 0, g),
                               atol=1e-6)


# --------------------------------------------------------------------------- #
# ch02_ex2 — layer normalisation's backward
# --------------------------------------------------------------------------- #

def layer_norm_reference(x, gamma=None, beta=None, eps=1e-5):
    centred = x - x.mean(axis=-1, keepdims=True)
    y = centred / np.sqrt((centred ** 2).mean(axis=-1, keepdims=True) + eps)
    return y * (1.0 if gamma is None else gamma) + (0.0 if beta is None else beta)


def test_ch02_ex2_layer_norm_backward_matches_finite_differences():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 3, 5)) * 3 + 1
    gamma, beta = rng.normal(size=5), rng.normal(size=5)
    g = rng.normal(size=x.shape)
    kept = g.copy()
    dx, dgamma, dbeta = run_backward(LayerNormFunction, x, gamma, beta, grad=g,
                                     needs=(True,) * 3, eps=1e-5)
    assert dx.shape == x.shape and dgamma.shape == (5,) and dbeta.shape == (5,)
    for k, got in enumerate((dx, dgamma, dbeta)):
        np.testing.assert_allclose(got, numeric_gradient(layer_norm_reference, [x, gamma, beta],
                                                         k, g), atol=1e-6)
    assert np.array_equal(g, kept), "backward must not write into grad"


def test_ch02_ex2_layer_norm_backward_without_gain_and_shift():
    rng = np.random.default_rng(3)
    x, g = rng.normal(size=(4, 6)), rng.normal(size=(4, 6))
    dx, dgamma, dbeta = run_backward(LayerNormFunction, x, None, None, grad=g,
                                     needs=(True, False, False), eps=1e-5)
    assert dgamma is None and dbeta is None
    np.testing.assert_allclose(dx, numeric_gradient(layer_norm_reference, [x], 0, g), atol=1e-6)
    # Only the gain and shift wanted (the input is data): dγ and dβ, no dx.
    gamma, beta = rng.normal(size=6), rng.normal(size=6)
    dx, dgamma, dbeta = run_backward(LayerNormFunction, x, gamma, beta, grad=g,
                                     needs=(False, True, True), eps=1e-5)
    assert dx is None
    np.testing.assert_allclose(dbeta, g.sum(axis=0))
    np.testing.assert_allclose(dgamma, (g * layer_norm_reference(x)).sum(axis=0), atol=1e-12)


@FAST
@given(st.integers(0, 2 ** 32 - 1), st.integers(2, 8), st.floats(0.01, 100.0))
def test_ch02_ex2_each_rows_gradient_sums_to_zero(seed, size, scale):
    # Adding c to every feature changes nothing, so dL/dx is orthogonal to (1, …, 1).
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(3, size)) * scale + rng.normal() * scale
    gamma, g = rng.normal(size=size), rng.normal(size=(3, size))
    dx, _, _ = run_backward(LayerNormFunction, x, gamma, None, grad=g,
                            needs=(True, True, False), eps=1e-5)
    assert np.abs(dx.sum(axis=-1)).max() <= 1e-9 * (1 + np.abs(dx).max())


def test_ch02_ex2_group_norm_shares_the_closed_form():
    def group_norm_reference(x, gamma, beta):
        n, c = x.shape[:2]
        y = layer_norm_reference(x.reshape(n, 2, -1)).reshape(x.shape)
        return y * gamma.reshape(c, 1, 1) + beta.reshape(c, 1, 1)

    rng = np.random.default_rng(4)
    x, g = rng.normal(size=(2, 4, 2, 3)), rng.normal(size=(2, 4, 2, 3))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    dx, dgamma, dbeta = run_backward(GroupNormFunction, x, gamma, beta, grad=g,
                                     needs=(True,) * 3, num_groups=2, eps=1e-5)
    np.testing.assert_allclose(dx, numeric_gradient(group_norm_reference, [x, gamma, beta], 0, g),
                               atol=1e-6)


# --------------------------------------------------------------------------- #
# ch02_ex3 — one AdamW step
# --------------------------------------------------------------------------- #

class ReferenceAdamW:
    """The update written out in float64, one line per equation of the chapter."""

    def __init__(self, theta, betas=(0.9, 0.999), eps=1e-8):
        self.theta = np.array(theta, dtype=np.float64)
        self.first, self.second, self.t = 0.0, 0.0, 0
        self.betas, self.eps = betas, eps

    def step(self, grad, lr, decay):
        b1, b2 = self.betas
        self.t += 1
        self.first = b1 * self.first + (1 - b1) * grad
        self.second = b2 * self.second + (1 - b2) * grad ** 2
        first_hat = self.first / (1 - b1 ** self.t)
        second_hat = self.second / (1 - b2 ** self.t)
        self.theta = self.theta - lr * decay * self.theta
        self.theta = self.theta - lr * first_hat / (np.sqrt(second_hat) + self.eps)


def test_ch02_ex3_adamw_follows_the_equations_step_by_step():
    rng = np.random.default_rng(5)
    weight = nn.Parameter(rng.normal(size=(3, 4)))                    # float64 parameters
    bias = nn.Parameter(rng.normal(size=(4,)))
    optimizer = AdamW([{"params": [weight], "weight_decay": 0.1},
                       {"params": [bias], "weight_decay": 0.0}], lr=0.01, betas=(0.8, 0.95))
    references = [ReferenceAdamW(weight.numpy(), betas=(0.8, 0.95)),
                  ReferenceAdamW(bias.numpy(), betas=(0.8, 0.95))]
    for step, lr in enumerate([0.01, 0.02, 0.005, 0.03, 0.01]):      # as a schedule would
        for group in optimizer.param_groups:
            group["lr"] = lr
        grads = [rng.normal(size=(3, 4)) * (step + 1), rng.normal(size=(4,))]
        for param, grad in zip((weight, bias), grads):
            param.grad = grad.copy()
        optimizer.step()
        for param, grad, reference, decay in zip((weight, bias), grads, references, (0.1, 0.0)):
            reference.step(grad, lr, decay)
            np.testing.assert_allclose(param.numpy(), reference.theta, rtol=1e-10, atol=1e-12)
            np.testing.assert_array_equal(param.grad, grad)             # .grad is left alone
    state = optimizer.state[id(weight)]
    assert state["step"] == 5
    np.testing.assert_allclose(state["exp_avg"], references[0].first, rtol=1e-10)
    np.testing.assert_allclose(state["exp_avg_sq"], references[0].second, rtol=1e-10)


def test_ch02_ex3_the_first_step_moves_each_weight_by_about_lr():
    # Bias correction: after one step m̂ = g and v̂ = g², so the move is lr · g/|g|.
    rng = np.random.default_rng(6)
    start = rng.normal(size=(5, 5)).astype(np.float32)
    param = nn.Parameter(start.copy())
    param.grad = (rng.normal(size=(5, 5)) * np.logspace(-3, 3, 25).reshape(5, 5)).astype(np.float32)
    AdamW([param], lr=1e-2, weight_decay=0.0).step()
    assert param.dtype == np.float32
    np.testing.assert_allclose(start - param.numpy(), 1e-2 * np.sign(param.grad), rtol=1e-4)


def test_ch02_ex3_weight_decay_is_decoupled_from_the_gradient():
    # With decay in the update, not in g, the shrink θ ← θ − lr·λ·θ is the same whatever the
    # gradient's scale: two weights with gradients g and 1000·g end up equal.
    rng = np.random.default_rng(7)
    theta, g = rng.normal(size=4), rng.normal(size=4)
    small, large = nn.Parameter(theta.copy()), nn.Parameter(theta.copy())
    optimizer = AdamW([small, large], lr=0.1, weight_decay=0.5, eps=1e-12)
    for _ in range(3):
        small.grad, large.grad = g.copy(), 1000 * g
        optimizer.step()
    np.testing.assert_allclose(small.numpy(), large.numpy(), rtol=1e-9)
    # A zero gradient leaves only the decay: θ (1 − lr·λ) per step.
    lonely = nn.Parameter(theta.copy())
    optimizer = AdamW([lonely], lr=0.1, weight_decay=0.5)
    for _ in range(2):
        lonely.grad = np.zeros(4)
        optimizer.step()
    np.testing.assert_allclose(lonely.numpy(), theta * (1 - 0.1 * 0.5) ** 2, rtol=1e-12)


# --------------------------------------------------------------------------- #
# ch02_ex4 — the warm-up + cosine learning-rate schedule
# --------------------------------------------------------------------------- #

def schedule_reference(s, base, warmup, total, low=0.0):
    if s < warmup:
        return base * (s + 1) / warmup
    if s >= total:
        return low
    angle = math.pi * (s - warmup) / (total - warmup)
    return low + (base - low) * (1 + math.cos(angle)) / 2


def test_ch02_ex4_the_chapter_values():
    got = [round(warmup_cosine_lr(s, 0.03, 20, 300), 5) for s in (0, 9, 19, 20, 160, 299)]
    assert got == [0.0015, 0.015, 0.03, 0.03, 0.015, 0.0]


@FAST
@given(st.floats(1e-5, 10.0), st.floats(0.0, 1.0), st.integers(0, 50), st.integers(0, 200))
def test_ch02_ex4_warm_up_then_cosine_down_to_the_floor(base, ratio, warmup, extra):
    total, low = warmup + extra, base * ratio
    rates = [warmup_cosine_lr(s, base, warmup, total, low) for s in range(total + 5)]
    for s, rate in enumerate(rates):
        assert rate == pytest.approx(schedule_reference(s, base, warmup, total, low),
                                     rel=1e-12, abs=1e-15)
    rising, falling = rates[:warmup], rates[warmup:]
    assert all(0 < r <= base * (1 + 1e-12) for r in rising)
    assert all(low * (1 - 1e-12) <= r <= base * (1 + 1e-12) for r in falling)
    assert all(a < b for a, b in zip(rising, rising[1:]))
    assert all(a >= b - 1e-12 for a, b in zip(falling, falling[1:]))
    if warmup:
        assert rates[warmup - 1] == pytest.approx(base)
    assert rates[total:] == [low] * 5


def test_ch02_ex4_the_scheduler_sets_every_groups_rate():
    a, b = nn.Parameter(np.zeros(2)), nn.Parameter(np.zeros(2))
    optimizer = AdamW([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}])
    scheduler = WarmupCosine(optimizer, warmup_steps=4, total_steps=10, min_lr_ratio=0.1)
    for step in range(12):
        rates = [group["lr"] for group in optimizer.param_groups]
        assert rates == pytest.approx([schedule_reference(step, base, 4, 10, base * 0.1)
                                       for base in (0.1, 0.01)], rel=1e-12)
        scheduler.step()
