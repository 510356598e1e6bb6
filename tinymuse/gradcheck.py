"""Checking hand-written backward passes against finite differences.

For a function ``f`` of tensors, build the scalar ``L = sum(w * f(x))`` with a
fixed random weight ``w`` (so every output element matters, with its own
weight), and compare the autograd gradient ``dL/dx`` with central differences

    dL/dx_i  ≈  (L(x + ε e_i) − L(x − ε e_i)) / 2ε,

which are accurate to O(ε²). Checks run in float64, where ε = 1e-6 leaves
about ten correct digits; in float32 rounding error would swamp them.

For big operations (attention, convolution) checking every element is slow,
so :func:`check_directional` compares one directional derivative instead:
``Σ_k <dL/dx_k, v_k>`` against ``(L(x + εv) − L(x − εv)) / 2ε`` for a random
direction ``v``.
"""
from __future__ import annotations

import numpy as np

from .tensor import Tensor


def _as_float64_tensors(inputs):
    return [Tensor(np.array(x, dtype=np.float64), requires_grad=True) for x in inputs]


def _loss(f, arrays, weight):
    out = f(*[Tensor(a) for a in arrays])
    return float(np.sum(weight * out.numpy()))


def _autograd(f, inputs, seed):
    tensors = _as_float64_tensors(inputs)
    out = f(*tensors)
    weight = np.random.default_rng(seed).standard_normal(out.shape)
    out.backward(weight)
    grads = [t.grad if t.grad is not None else np.zeros(t.shape) for t in tensors]
    return grads, weight, [t.data for t in tensors]


def check_gradients(f, *inputs, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0) -> None:
    """Raise AssertionError unless every element of every input's gradient
    matches central finite differences. ``inputs`` are arrays (cast to float64)."""
    grads, weight, arrays = _autograd(f, inputs, seed)
    for k, (x, grad) in enumerate(zip(arrays, grads)):
        numeric = np.zeros_like(x)
        for i in np.ndindex(x.shape):
            original = x[i]
            x[i] = original + eps
            plus = _loss(f, arrays, weight)
            x[i] = original - eps
            minus = _loss(f, arrays, weight)
            x[i] = original
            numeric[i] = (plus - minus) / (2 * eps)
        np.testing.assert_allclose(grad, numeric, atol=atol, rtol=rtol,
                                   err_msg=f"gradient of input {k} (shape {x.shape})")


def check_directional(f, *inputs, eps=1e-6, atol=1e-6, rtol=1e-5, seed=0) -> None:
    """Raise AssertionError unless the directional derivative along a random
    direction matches central finite differences."""
    grads, weight, arrays = _autograd(f, inputs, seed)
    rng = np.random.default_rng(seed + 1)
    directions = [rng.standard_normal(x.shape) for x in arrays]
    analytic = sum(float(np.sum(g * v)) for g, v in zip(grads, directions))
    plus = _loss(f, [x + eps * v for x, v in zip(arrays, directions)], weight)
    minus = _loss(f, [x - eps * v for x, v in zip(arrays, directions)], weight)
    numeric = (plus - minus) / (2 * eps)
    np.testing.assert_allclose(analytic, numeric, atol=atol, rtol=rtol,
                               err_msg="directional derivative")
