"""Matrix products: batched ``matmul`` and the fused ``linear`` layer.

For C = A B with A (m × k) and B (k × n), each C_ij = Σ_l A_il B_lj, so

    dL/dA = dL/dC · Bᵀ        dL/dB = Aᵀ · dL/dC,

two more matrix products of the same size: a backward pass costs about twice
the forward. Batched products apply this to every matrix of the batch.

Speed comes from handing BLAS a few large GEMMs rather than many small ones.
When one operand is a single matrix shared by the whole batch (a weight),
the batch axes are folded into the rows of one GEMM, and the gradient of the
shared matrix is then one GEMM too, never a batch of products followed by a
sum. ``linear`` is that case, written as one Function: it is the hot path of
every transformer. With ``activation="relu"`` it also applies the ReLU that follows it in
an MLP, in the same Function (:class:`LinearReLU`).
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor
from .shape import reshape

__all__ = ["matmul", "linear"]

ACTIVATIONS = (None, "relu")


class MatMul(Function):
    """C = A @ B for A (..., m, k) and B (..., k, n), both at least 2-D, with
    NumPy's broadcasting of the leading (batch) axes.

    Three layouts, so a matrix shared by the whole batch costs one GEMM:

    - ``rows``: A is N-D and B a matrix: A is viewed as one (batch·m, k)
      matrix, C = A₂ B, and dL/dB = A₂ᵀ dL/dC₂.
    - ``cols``: A is a matrix and B N-D: by Cᵀ = Bᵀ Aᵀ, the batch goes into
      the rows of Bᵀ, a (batch·n, k) matrix.
    - ``batched``: both N-D; NumPy's matmul, and the engine sums the
      gradients over any batch axes that were broadcast.
    """

    def forward(self, a, b):
        xp = backend.get_array_module(a)
        need_a, need_b = self.needs_input_grad
        if a.ndim > 2 and b.ndim == 2:
            self.layout = "rows"
            a2 = a.reshape(-1, a.shape[-1])
            self.a2 = a2 if need_b else None
            self.a_shape = a.shape
            self.b = b if need_a else None
            return (a2 @ b).reshape(a.shape[:-1] + (b.shape[-1],))
        if a.ndim == 2 and b.ndim > 2:
            self.layout = "cols"
            bt2 = b.swapaxes(-1, -2).reshape(-1, b.shape[-2])   # (batch·n, k)
            self.bt2 = bt2 if need_a else None
            self.a = a if need_b else None
            self.b_shape = b.shape
            ct2 = bt2 @ a.T                                    # (batch·n, m) = Cᵀ, stacked
            return ct2.reshape(b.shape[:-2] + (b.shape[-1], a.shape[0])).swapaxes(-1, -2)
        self.layout = "batched"
        self.a = a if need_b else None
        self.b = b if need_a else None
        return xp.matmul(a, b)

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        grad_a = grad_b = None
        if self.layout == "rows":
            g2 = grad.reshape(-1, grad.shape[-1])
            # BEGIN EXERCISE ch01_ex4
            if need_a:
                grad_a = (g2 @ self.b.T).reshape(self.a_shape)
            if need_b:
                grad_b = self.a2.T @ g2
            # END EXERCISE
        elif self.layout == "cols":
            m = grad.shape[-2]
            gt2 = grad.swapaxes(-1, -2).reshape(-1, m)          # dL/dCᵀ, stacked
            # BEGIN EXERCISE ch01_ex4
            if need_a:
                grad_a = gt2.T @ self.bt2                      # (m, k)
            if need_b:
                n, k = self.b_shape[-1], self.b_shape[-2]
                grad_b = (gt2 @ self.a).reshape(self.b_shape[:-2] + (n, k)).swapaxes(-1, -2)
            # END EXERCISE
        else:
            xp = backend.get_array_module(grad)
            # BEGIN EXERCISE ch01_ex4
            if need_a:
                grad_a = xp.matmul(grad, self.b.swapaxes(-1, -2))
            if need_b:
                grad_b = xp.matmul(self.a.swapaxes(-1, -2), grad)
            # END EXERCISE
        return grad_a, grad_b


class LinearFunction(Function):
    """y = x Wᵀ + b for x (..., in), W (out, in) and b (out,), as in PyTorch.

    The leading axes of x are folded into one (N, in) matrix x₂, so forward
    and backward are single GEMMs:

        y₂ = x₂ Wᵀ + b,   dL/dx₂ = dL/dy₂ W,   dL/dW = (dL/dy₂)ᵀ x₂,   dL/db = Σ_rows dL/dy₂
    """

    def forward(self, x, weight, bias):
        need_x, need_w, _ = self.needs_input_grad
        x2 = x.reshape(-1, x.shape[-1])
        out = x2 @ weight.T
        if bias is not None:
            out += bias
        self.x_shape = x.shape
        self.x2 = x2 if need_w else None
        self.weight = weight if need_x else None
        return out.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        g2 = grad.reshape(-1, grad.shape[-1])
        # BEGIN EXERCISE ch02_ex1
        grad_x = (g2 @ self.weight).reshape(self.x_shape) if need_x else None
        grad_w = g2.T @ self.x2 if need_w else None
        grad_b = g2.sum(axis=0) if need_b else None
        # END EXERCISE
        return grad_x, grad_w, grad_b


class LinearReLU(Function):
    """y = max(z, 0), z = x Wᵀ + b: a layer of an MLP as one Function.

    The backward is ReLU's, dL/dz = dL/dy where z > 0 and 0 elsewhere, followed by
    :class:`LinearFunction`'s three products with dL/dz in place of dL/dy. Fused, ReLU
    overwrites the product's fresh array with y instead of allocating a second array of the
    layer's width, and y > 0 exactly where z > 0, so y is all the backward keeps.
    """

    def forward(self, x, weight, bias):
        need_x, need_w, _ = self.needs_input_grad
        x2 = x.reshape(-1, x.shape[-1])
        y = x2 @ weight.T                                     # a new array: ours to overwrite
        if bias is not None:
            y += bias
        backend.get_array_module(y).maximum(y, 0, out=y)      # in place
        self.x_shape, self.y = x.shape, y
        self.x2 = x2 if need_w else None
        self.weight = weight if need_x else None
        return y.reshape(x.shape[:-1] + (weight.shape[0],))

    def backward(self, grad):
        need_x, need_w, need_b = self.needs_input_grad
        dz = grad.reshape(-1, grad.shape[-1]) * (self.y > 0)
        grad_x = (dz @ self.weight).reshape(self.x_shape) if need_x else None
        grad_w = dz.T @ self.x2 if need_w else None
        grad_b = dz.sum(axis=0) if need_b else None
        return grad_x, grad_w, grad_b


def matmul(a, b) -> Tensor:
    """Matrix product a @ b with NumPy's rules: 1-D operands are vectors, and
    the leading axes of N-D operands are batch axes that broadcast."""
    a, b = _matmul_dtypes(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands need at least one dimension, got shapes {a.shape} "
                         f"and {b.shape}; use mul for scaling")
    vector_a, vector_b = a.ndim == 1, b.ndim == 1
    if vector_a:
        a = reshape(a, (1,) + a.shape)
    if vector_b:
        b = reshape(b, b.shape + (1,))
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {_show(a, vector_a, 0)} and {_show(b, vector_b, -1)} "
                         f"do not chain: the last axis of the first ({a.shape[-1]}) must equal "
                         f"the second-to-last axis of the second ({b.shape[-2]})")
    try:
        np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch axes {a.shape[:-2]} and {b.shape[:-2]} of shapes "
                         f"{a.shape} and {b.shape} cannot be broadcast together") from None
    # A batch of size-1 axes on one side is really a single matrix: take the one-GEMM path.
    if b.ndim > 2 and a.ndim >= b.ndim and all(n == 1 for n in b.shape[:-2]):
        b = reshape(b, b.shape[-2:])
    elif a.ndim > 2 and b.ndim >= a.ndim and all(n == 1 for n in a.shape[:-2]):
        a = reshape(a, a.shape[-2:])
    out = MatMul.apply(a, b)
    if vector_a or vector_b:
        keep = out.shape[:-2] + (() if vector_a else out.shape[-2:-1]) + \
            (() if vector_b else out.shape[-1:])
        out = reshape(out, keep)
    return out


def _show(t: Tensor, was_vector: bool, axis: int) -> tuple:
    """The shape the user passed (before a vector was made a matrix)."""
    if not was_vector:
        return t.shape
    return (t.shape[-1],) if axis == 0 else (t.shape[0],)


def _matmul_dtypes(a, b) -> tuple[Tensor, Tensor]:
    """Tensors of one dtype: constants join the other operand's device, an
    integer tensor joins a floating one, two floating dtypes must agree."""
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)
    if not isinstance(a, Tensor):
        a = Tensor(a, dtype=b.dtype if b.dtype.kind == "f" and isinstance(a, list) else None,
                   device=b.device)
    if not isinstance(b, Tensor):
        b = Tensor(b, dtype=a.dtype if a.dtype.kind == "f" and isinstance(b, list) else None,
                   device=a.device)
    if a.dtype != b.dtype:
        a_float, b_float = a.dtype.kind == "f", b.dtype.kind == "f"
        if a_float and b_float:
            raise TypeError(f"matmul: cannot mix {a.dtype} and {b.dtype} tensors (shapes "
                            f"{a.shape} and {b.shape}); convert one first, e.g. with .float() "
                            f"(float32) or .double() (float64)")
        if a_float:
            b = b.astype(a.dtype)
        elif b_float:
            a = a.astype(b.dtype)
    return a, b


def linear(x, weight, bias=None, activation: str | None = None) -> Tensor:
    """y = x @ weight.T + bias, with weight shaped (out_features, in_features)
    and bias (out_features,), as ``torch.nn.functional.linear``. One fused
    Function: a single GEMM each for y, dL/dx and dL/dweight.

    ``activation="relu"`` applies ReLU to the result in the same Function:
    ``linear(x, w, b, activation="relu")`` equals ``relu(linear(x, w, b))`` and saves an
    array of the output's size."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"linear: activation must be one of {ACTIVATIONS}, got {activation!r}")
    x, weight = _matmul_dtypes(x, weight)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out_features, in_features), got shape "
                         f"{weight.shape}")
    if x.ndim == 0 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} has {x.shape[-1] if x.ndim else 0} "
                         f"features, but weight of shape {weight.shape} expects "
                         f"{weight.shape[1]} (weight is (out_features, in_features))")
    if bias is not None:
        if not isinstance(bias, Tensor):
            bias = Tensor(bias, device=weight.device,
                          dtype=weight.dtype if isinstance(bias, list) else None)
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias has shape {bias.shape}, expected "
                             f"({weight.shape[0]},) to match weight of shape {weight.shape}")
        if bias.dtype != weight.dtype:
            raise TypeError(f"linear: bias is {bias.dtype} but weight is {weight.dtype}; "
                            f"convert with .float() or .double()")
    if activation == "relu":
        return LinearReLU.apply(x, weight, bias)
    return LinearFunction.apply(x, weight, bias)
