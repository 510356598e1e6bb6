"""Optimizers, schedules and gradient clipping.

Reference updates are written here from the papers' equations, in float64,
one step at a time; the library's in-place float32 versions must agree.
"""
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from tinymuse import backend
from tinymuse.nn import Conv2d, Embedding, LayerNorm, Linear, Module, Parameter
from tinymuse.optim import (SGD, AdamW, WarmupCosine, clip_grad_norm,
                            warmup_cosine_lr, weight_decay_groups)

FAST = settings(max_examples=30, deadline=None)


def make_param(rng, shape, device="cpu"):
    return Parameter(backend.to_device(rng.standard_normal(shape).astype(np.float32), device))


def gradient_sequence(rng, shape, steps):
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(steps)]


# ------------------------------------------------------------------- AdamW
def adamw_reference(theta, grads, lr, beta1, beta2, eps, wd):
    """Loshchilov & Hutter (2019), Algorithm 2, with the schedule multiplier
    η_t = 1 and the decay written as lr·λ (PyTorch's convention)."""
    theta = theta.astype(np.float64)
    m = np.zeros_like(theta)
    v = np.zeros_like(theta)
    for t, g in enumerate(grads, start=1):
        g = g.astype(np.float64)
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g * g
        m_hat = m / (1 - beta1 ** t)
        v_hat = v / (1 - beta2 ** t)
        theta = theta - lr * (m_hat / (np.sqrt(v_hat) + eps) + wd * theta)
    return theta


@FAST
@given(lr=st.floats(1e-4, 0.1), beta1=st.floats(0.0, 0.95), beta2=st.floats(0.9, 0.9999),
       wd=st.floats(0.0, 0.5), seed=st.integers(0, 2**16))
def test_adamw_matches_the_paper(lr, beta1, beta2, wd, seed):
    rng = np.random.default_rng(seed)
    param = make_param(rng, (3, 4))
    start = param.data.copy()
    grads = gradient_sequence(rng, (3, 4), 4)
    opt = AdamW([param], lr=lr, betas=(beta1, beta2), eps=1e-8, weight_decay=wd)
    for g in grads:
        param.grad = g
        opt.step()
    expected = adamw_reference(start, grads, lr, beta1, beta2, 1e-8, wd)
    np.testing.assert_allclose(param.data, expected, rtol=1e-5, atol=1e-6)
    assert param.data.dtype == np.float32                      # never upcast by accident
    assert all(a.dtype == np.float32 for k, a in opt.state_dict()["state"].items()
               if not k.endswith("step"))


def test_adamw_groups_have_their_own_lr_and_decay(rng):
    decayed, plain = make_param(rng, (4, 3)), make_param(rng, (3,))
    starts = decayed.data.copy(), plain.data.copy()
    grads_d, grads_p = gradient_sequence(rng, (4, 3), 3), gradient_sequence(rng, (3,), 3)
    opt = AdamW([{"params": [decayed], "weight_decay": 0.3},
                 {"params": [plain], "weight_decay": 0.0, "lr": 0.05}], lr=0.01)
    for gd, gp in zip(grads_d, grads_p):
        decayed.grad, plain.grad = gd, gp
        opt.step()
    np.testing.assert_allclose(decayed.data, adamw_reference(starts[0], grads_d, 0.01, 0.9, 0.999,
                                                             1e-8, 0.3), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(plain.data, adamw_reference(starts[1], grads_p, 0.05, 0.9, 0.999,
                                                           1e-8, 0.0), rtol=1e-5, atol=1e-6)


def test_adamw_first_step_moves_each_weight_by_about_lr(rng):
    # After bias correction m̂ = g and v̂ = g², so the first step is lr · sign(g).
    param = make_param(rng, (50,))
    start = param.data.copy()
    param.grad = rng.standard_normal(50).astype(np.float32) * 1e3
    AdamW([param], lr=0.01, weight_decay=0.0).step()
    np.testing.assert_allclose(start - param.data, 0.01 * np.sign(param.grad), rtol=1e-4)


def test_weight_decay_alone_shrinks_weights_by_lr_times_lambda(rng):
    param = make_param(rng, (5,))
    start = param.data.copy()
    param.grad = np.zeros(5, np.float32)  # no gradient signal: only the decay acts
    AdamW([param], lr=0.1, weight_decay=0.5).step()
    np.testing.assert_allclose(param.data, start * (1 - 0.1 * 0.5), rtol=1e-6)


def test_step_updates_in_place_and_leaves_grad_alone(rng):
    for opt_class, kwargs in ((AdamW, {"lr": 0.1}),
                              (SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.1})):
        param = make_param(rng, (3, 3))
        array = param.data
        grad = rng.standard_normal((3, 3)).astype(np.float32)
        param.grad = grad.copy()
        opt_class([param], **kwargs).step()
        assert param.data is array, "the parameter array must be updated in place"
        np.testing.assert_array_equal(param.grad, grad)


def test_parameters_without_gradient_are_skipped(rng):
    used, unused = make_param(rng, (2,)), make_param(rng, (2,))
    before = unused.data.copy()
    used.grad = np.ones(2, np.float32)
    opt = AdamW([used, unused], lr=0.1, weight_decay=0.1)
    opt.step()
    np.testing.assert_array_equal(unused.data, before)  # not even weight decay touches it
    assert id(unused) not in opt.state


def test_zero_grad_sets_gradients_to_none(rng):
    params = [make_param(rng, (2,)) for _ in range(3)]
    for p in params:
        p.grad = np.ones(2, np.float32)
    SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


def test_bad_settings_are_refused(rng):
    p = make_param(rng, (2,))
    with pytest.raises(ValueError, match="no setting"):
        AdamW([{"params": [p], "wd": 0.1}])            # a typo of weight_decay
    with pytest.raises(ValueError, match="two parameter groups"):
        AdamW([{"params": [p]}, {"params": [p]}])
    with pytest.raises(ValueError, match="no parameters"):
        AdamW([])
    with pytest.raises(ValueError):
        SGD([p], lr=0.1, momentum=1.5)


# --------------------------------------------------------------------- SGD
@FAST
@given(lr=st.floats(1e-3, 0.5), momentum=st.floats(0.0, 0.99), wd=st.floats(0.0, 0.1),
       seed=st.integers(0, 2**16))
def test_sgd_momentum_matches_the_formula(lr, momentum, wd, seed):
    rng = np.random.default_rng(seed)
    param = make_param(rng, (4,))
    theta = param.data.astype(np.float64)
    grads = gradient_sequence(rng, (4,), 4)
    opt = SGD([param], lr=lr, momentum=momentum, weight_decay=wd)
    velocity = np.zeros(4)
    for g in grads:
        param.grad = g
        opt.step()
        d = g + wd * theta                  # L2 weight decay, added to the gradient
        velocity = momentum * velocity + d  # heavy-ball momentum, v₀ = 0
        theta = theta - lr * velocity
    np.testing.assert_allclose(param.data, theta, rtol=1e-5, atol=1e-6)


def test_sgd_momentum_accelerates_along_a_constant_gradient(rng):
    # With a constant gradient g the velocity tends to g / (1 − μ).
    param = Parameter(np.zeros(1, np.float32))
    opt = SGD([param], lr=1.0, momentum=0.5)
    for _ in range(40):
        param.grad = np.ones(1, np.float32)
        before = param.data.copy()
        opt.step()
    np.testing.assert_allclose(before - param.data, [2.0], rtol=1e-6)


# ------------------------------------------------------- fused (flat) AdamW
FUSED_SHAPES = [(5, 3), (7,), (), (2, 3, 4)]


def decay_groups(params):
    return [{"params": params[:2], "weight_decay": 0.1},
            {"params": params[2:], "weight_decay": 0.0, "lr": 0.03}]


def run_adamw(starts, grads, fused, lrs=(0.01, 0.02, 0.005, 0.01, 0.03), device="cpu"):
    """AdamW over a schedule of learning rates; the parameters and the optimizer after it."""
    params = [Parameter(backend.to_device(s.copy(), device)) for s in starts]
    opt = AdamW(decay_groups(params), lr=0.01, betas=(0.8, 0.95), fused=fused)
    for step, lr in enumerate(lrs):
        opt.param_groups[0]["lr"] = lr
        for p, g in zip(params, grads):
            p.grad = backend.to_device(g[step], device)
        opt.step()
    return params, opt


@FAST
@given(seed=st.integers(0, 2**16), scale=st.floats(1e-3, 1e3))
def test_fused_adamw_equals_per_parameter_adamw_to_the_bit(seed, scale):
    rng = np.random.default_rng(seed)
    starts = [rng.standard_normal(s).astype(np.float32) for s in FUSED_SHAPES]
    grads = [[(scale * rng.standard_normal(s)).astype(np.float32) for _ in range(5)]
             for s in FUSED_SHAPES]
    (plain, plain_opt), (fused, fused_opt) = (run_adamw(starts, grads, f) for f in (False, True))
    for a, b in zip(plain, fused):
        assert b.dtype == np.float32 and b.shape == a.shape
        np.testing.assert_array_equal(a.data, b.data)
    saved_plain, saved_fused = plain_opt.state_dict(), fused_opt.state_dict()
    assert saved_plain["param_groups"] == saved_fused["param_groups"]
    assert set(saved_plain["state"]) == set(saved_fused["state"])
    for key, value in saved_plain["state"].items():
        np.testing.assert_array_equal(value, saved_fused["state"][key], err_msg=key)


@pytest.mark.parametrize("threads", ["2", "3"])
def test_fused_adamw_cut_for_threads_equals_per_parameter_adamw_to_the_bit(monkeypatch, rng,
                                                                           threads):
    # A group of more than MIN_PARALLEL_SIZE numbers is updated in one piece per thread.
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", threads)
    big = backend.MIN_PARALLEL_SIZE
    shapes = [(big // 3 + 5, 2), (7,), (3, 4), (big + 1,), (2,)]
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(5)] for s in shapes]
    assert sum(s.size for s in starts[2:]) >= big                 # the second group too
    (plain, plain_opt), (fused, fused_opt) = (run_adamw(starts, grads, f) for f in (False, True))
    for a, b in zip(plain, fused):
        np.testing.assert_array_equal(a.data, b.data)
    for key, value in plain_opt.state_dict()["state"].items():
        np.testing.assert_array_equal(value, fused_opt.state_dict()["state"][key], err_msg=key)


def test_fused_adamw_follows_the_paper_in_float64(rng):
    starts = [rng.standard_normal(s) for s in FUSED_SHAPES]                      # float64
    grads = [[rng.standard_normal(s) for _ in range(4)] for s in FUSED_SHAPES]
    params = [Parameter(s.copy()) for s in starts]
    opt = AdamW(decay_groups(params), lr=0.01, betas=(0.8, 0.95), fused=True)
    for step in range(4):
        for p, g in zip(params, grads):
            p.grad = g[step]
        opt.step()
    for i, (p, start, g) in enumerate(zip(params, starts, grads)):
        lr, wd = (0.01, 0.1) if i < 2 else (0.03, 0.0)
        expected = adamw_reference(start, g, lr, 0.8, 0.95, 1e-8, wd)
        np.testing.assert_allclose(p.data, expected, rtol=1e-12, atol=1e-14)


def test_fused_adamw_keeps_the_model_and_the_state_on_its_flat_arrays(rng):
    layer = Linear(4, 3)
    opt = AdamW(weight_decay_groups(layer, 0.1), lr=0.1, fused=True)
    layer.weight.grad = np.ones((3, 4), np.float32)
    layer.bias.grad = np.ones(3, np.float32)
    before = layer.weight.data.copy()
    opt.step()
    assert not np.array_equal(layer.weight.data, before)         # the model sees the update
    x = rng.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(layer(x).numpy(), x @ layer.weight.data.T + layer.bias.data,
                               rtol=1e-6)
    state = opt.state[id(layer.weight)]
    assert np.shares_memory(state["exp_avg"], opt._flat[0].m)
    # Replacing a parameter's array (as loading or moving does) is picked up at the next step.
    layer.weight.data = np.zeros((3, 4), np.float32)
    opt.step()
    np.testing.assert_array_less(layer.weight.data, 0.0)           # moved from 0 against +g
    assert np.shares_memory(layer.weight.data, opt._flat[0].theta)


def test_fused_adamw_falls_back_per_parameter_when_a_gradient_is_missing(rng):
    starts = [rng.standard_normal(s).astype(np.float32) for s in FUSED_SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(4)] for s in FUSED_SHAPES]
    results = []
    for fused in (False, True):
        params = [Parameter(s.copy()) for s in starts]
        opt = AdamW(decay_groups(params), lr=0.01, fused=fused)
        for step in range(4):
            for i, (p, g) in enumerate(zip(params, grads)):
                p.grad = None if (step == 1 and i in (0, 3)) else g[step]   # skipped once
            opt.step()
        results.append((params, opt.state_dict()["state"]))
    (plain, plain_state), (fused, fused_state) = results
    for a, b in zip(plain, fused):
        np.testing.assert_array_equal(a.data, b.data)
    assert int(fused_state["0.step"]) == 3 and int(fused_state["1.step"]) == 4
    for key, value in plain_state.items():
        np.testing.assert_array_equal(value, fused_state[key], err_msg=key)


@pytest.mark.parametrize("first, second", [(True, True), (False, True), (True, False)])
def test_fused_adamw_state_resumes_exactly_either_way(rng, first, second):
    starts = [rng.standard_normal(s).astype(np.float32) for s in FUSED_SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(6)] for s in FUSED_SHAPES]
    straight, _ = run_adamw(starts, grads, True, lrs=(0.01,) * 6)
    half, opt = run_adamw(starts, grads, first, lrs=(0.01,) * 3)
    resumed = [Parameter(p.data.copy()) for p in half]
    opt2 = AdamW(decay_groups(resumed), lr=0.01, betas=(0.8, 0.95), fused=second)
    opt2.load_state_dict(opt.state_dict())
    for step in range(3, 6):
        for p, g in zip(resumed, grads):
            p.grad = g[step]
        opt2.step()
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_fused_adamw_on_every_device(device, rng):
    starts = [rng.standard_normal(s).astype(np.float32) for s in FUSED_SHAPES]
    grads = [[rng.standard_normal(s).astype(np.float32) for _ in range(5)] for s in FUSED_SHAPES]
    expected, _ = run_adamw(starts, grads, False)
    got, _ = run_adamw(starts, grads, True, device=device)
    for a, b in zip(expected, got):
        assert b.device == device
        np.testing.assert_allclose(b.numpy(), a.data, rtol=1e-6, atol=1e-7)


# ------------------------------------------------------------ state dicts
@pytest.mark.parametrize("make_opt", [lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1),
                                      lambda ps: AdamW(ps, lr=0.01, weight_decay=0.1, fused=True),
                                      lambda ps: SGD(ps, lr=0.01, momentum=0.9)])
def test_optimizer_state_dict_resumes_exactly(rng, make_opt):
    shapes = [(3, 4), (4,)]
    grads = [gradient_sequence(rng, s, 6) for s in shapes]
    starts = [rng.standard_normal(s).astype(np.float32) for s in shapes]

    def run(params, opt, steps):
        for t in steps:
            for p, g in zip(params, grads):
                p.grad = g[t]
            opt.step()

    straight = [Parameter(s.copy()) for s in starts]
    opt = make_opt(straight)
    run(straight, opt, range(6))

    first = [Parameter(s.copy()) for s in starts]
    opt1 = make_opt(first)
    run(first, opt1, range(3))
    state = opt1.state_dict()
    resumed = [Parameter(p.data.copy()) for p in first]
    opt2 = make_opt(resumed)
    opt2.load_state_dict(state)
    run(resumed, opt2, range(3, 6))
    for a, b in zip(straight, resumed):
        np.testing.assert_array_equal(a.data, b.data)


def test_optimizer_state_dict_is_arrays_and_json(rng):
    import json
    p = make_param(rng, (2, 2))
    opt = AdamW([p], lr=0.1)
    p.grad = np.ones((2, 2), np.float32)
    opt.step()
    state = opt.state_dict()
    json.dumps(state["param_groups"])
    assert set(state["state"]) == {"0.step", "0.exp_avg", "0.exp_avg_sq"}
    assert all(isinstance(a, np.ndarray) for a in state["state"].values())
    assert int(state["state"]["0.step"]) == 1


def test_optimizer_load_state_dict_refuses_a_different_model(rng):
    p = make_param(rng, (2, 2))
    opt = AdamW([p], lr=0.1)
    p.grad = np.ones((2, 2), np.float32)
    opt.step()
    state = opt.state_dict()
    with pytest.raises(ValueError, match="parameters"):
        AdamW([make_param(rng, (2, 2)), make_param(rng, (2,))]).load_state_dict(state)
    with pytest.raises(ValueError, match=r"shape \(2, 2\).*shape \(3,\)"):
        AdamW([make_param(rng, (3,))]).load_state_dict(state)


def test_optimizer_runs_on_every_device(device, rng):
    starts = rng.standard_normal((3, 2)).astype(np.float32)
    grads = gradient_sequence(rng, (3, 2), 3)
    results = []
    for dev in ("cpu", device):
        p = Parameter(backend.to_device(starts.copy(), dev))
        opt = AdamW([p], lr=0.1, weight_decay=0.1)
        for g in grads:
            p.grad = backend.to_device(g, dev)
            opt.step()
        assert p.device == dev
        results.append(p.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6, atol=1e-7)


# ------------------------------------------------------ weight-decay groups
def test_weight_decay_groups_decay_only_linear_and_conv_weights():
    class Net(Module):
        def __init__(self):
            super().__init__()
            self.embed = Embedding(10, 4)
            self.conv = Conv2d(1, 4, 3)
            self.norm = LayerNorm(4)
            self.fc = Linear(4, 4)
            self.mask_token = Parameter(np.zeros(4, np.float32))
            self.head = Linear(4, 10)
            self.head.weight = self.embed.weight  # tied weights: counted once
            self.frozen = Linear(4, 4, bias=False)
            self.frozen.weight.requires_grad_(False)

    net = Net()
    decay, no_decay = weight_decay_groups(net, 0.1)
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {id(p) for p in decay["params"]} == {id(net.conv.weight), id(net.fc.weight)}
    assert {id(p) for p in no_decay["params"]} == {
        id(net.embed.weight), id(net.conv.bias), id(net.norm.weight), id(net.norm.bias),
        id(net.fc.bias), id(net.mask_token), id(net.head.bias)}
    AdamW([decay, no_decay], lr=1e-3)  # a valid optimizer: every parameter in one group


# -------------------------------------------------------------- schedules
schedule_args = st.tuples(st.integers(0, 50), st.integers(1, 200), st.floats(1e-5, 1.0),
                          st.floats(0.0, 1.0))


@FAST
@given(schedule_args)
def test_warmup_cosine_endpoints_and_bounds(args):
    warmup, extra, base, min_ratio = args
    total, min_lr = warmup + extra, base * min_ratio
    lr = lambda step: warmup_cosine_lr(step, base, warmup, total, min_lr)  # noqa: E731
    if warmup:
        assert lr(0) == pytest.approx(base / warmup)   # the first update is not wasted
        assert lr(warmup - 1) == pytest.approx(base)   # warm-up ends at the peak
    assert lr(warmup) == pytest.approx(base)           # the cosine starts at the peak
    assert lr(total) == pytest.approx(min_lr)          # ... and ends at min_lr
    assert lr(total + 1000) == pytest.approx(min_lr)
    for step in range(0, total + 5):
        assert min(min_lr, base / max(warmup, 1)) - 1e-12 <= lr(step) <= base + 1e-12


@FAST
@given(schedule_args)
def test_warmup_cosine_rises_then_falls(args):
    warmup, extra, base, min_ratio = args
    total = warmup + extra
    lrs = [warmup_cosine_lr(s, base, warmup, total, base * min_ratio) for s in range(total + 3)]
    rising, falling = np.diff(lrs[:warmup + 1]), np.diff(lrs[warmup:])
    assert np.all(rising >= -1e-12) and np.all(falling <= 1e-12)
    if warmup > 1:
        assert np.all(rising[:warmup - 1] > 0)


def test_warmup_cosine_midpoint_is_halfway():
    # cos(π/2) = 0: halfway through the decay the lr is halfway between base and min.
    assert warmup_cosine_lr(60, 1.0, 10, 110, 0.2) == pytest.approx(0.6)


def test_warmup_cosine_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_cosine_lr(0, 1.0, 10, 5)
    with pytest.raises(ValueError, match="min_lr"):
        warmup_cosine_lr(0, 1.0, 1, 5, min_lr=2.0)


def test_scheduler_sets_every_group_and_resumes(rng):
    a, b = make_param(rng, (2,)), make_param(rng, (2,))
    opt = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    sched = WarmupCosine(opt, warmup_steps=4, total_steps=20, min_lr_ratio=0.1)
    seen = []
    for step in range(10):
        seen.append([g["lr"] for g in opt.param_groups])
        assert seen[-1] == pytest.approx([warmup_cosine_lr(step, 0.1, 4, 20, 0.01),
                                          warmup_cosine_lr(step, 0.5, 4, 20, 0.05)])
        sched.step()
    state = sched.state_dict()
    opt2 = SGD([{"params": [a]}, {"params": [b], "lr": 0.5}], lr=0.1)
    opt2.param_groups[0]["lr"] = 123.0  # whatever it was, loading restores the schedule
    sched2 = WarmupCosine(opt2, warmup_steps=4, total_steps=20, min_lr_ratio=0.1)
    sched2.load_state_dict(state)
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]


# ---------------------------------------------------------------- clipping
@FAST
@given(seed=st.integers(0, 2**16), scale=st.floats(0.01, 100.0), max_norm=st.floats(0.1, 10.0))
def test_clip_grad_norm(seed, scale, max_norm):
    rng = np.random.default_rng(seed)
    params = [make_param(rng, s) for s in [(3, 4), (5,), (2, 2, 2)]]
    for p in params:
        p.grad = (rng.standard_normal(p.shape) * scale).astype(np.float32)
    originals = [p.grad.copy() for p in params]
    expected = math.sqrt(sum(float(np.sum(g.astype(np.float64) ** 2)) for g in originals))
    total = clip_grad_norm(params, max_norm)
    assert total == pytest.approx(expected, rel=1e-5)
    clipped = math.sqrt(sum(float(np.sum(p.grad.astype(np.float64) ** 2)) for p in params))
    if expected > max_norm:
        assert clipped == pytest.approx(max_norm, rel=1e-4)
        ratio = params[0].grad / originals[0]  # one common factor: the direction is kept
        np.testing.assert_allclose(ratio, ratio.flat[0], rtol=1e-5)
    else:
        for p, g in zip(params, originals):
            np.testing.assert_array_equal(p.grad, g)


def test_clip_grad_norm_skips_missing_gradients_and_nonfinite_norms(rng):
    with_grad, without = make_param(rng, (3,)), make_param(rng, (3,))
    with_grad.grad = np.array([3.0, 4.0, 0.0], np.float32)
    assert clip_grad_norm([with_grad, without], 100.0) == pytest.approx(5.0)
    with_grad.grad = np.array([np.nan, 1.0, 1.0], np.float32)
    with pytest.raises(FloatingPointError, match="nan"):
        clip_grad_norm([with_grad], 1.0)
    with_grad.grad = np.array([np.inf, 1.0, 1.0], np.float32)
    with pytest.warns(RuntimeWarning, match="inf"):
        total = clip_grad_norm([with_grad], 1.0, error_if_nonfinite=False)
    assert math.isinf(total)
    assert with_grad.grad[1] == 1.0  # left untouched so the caller can skip the step


def test_scalar_parameter_gradients_are_arrays_that_clip_and_step():
    """A 0-d parameter's gradient must be an array: NumPy turns 0-d arithmetic into
    scalars, which in-place clipping and AdamW's out= updates cannot write into."""
    p = Parameter(np.array(3.0, dtype=np.float32))
    for _ in range(2):
        (p * 10.0).backward()
    assert isinstance(p.grad, np.ndarray) and p.grad.shape == ()
    assert clip_grad_norm([p], max_norm=1.0) == pytest.approx(20.0)
    assert float(p.grad) == pytest.approx(1.0)
    AdamW([p], lr=0.1, weight_decay=0.0).step()
    assert float(p.data) == pytest.approx(2.9, abs=1e-5)
