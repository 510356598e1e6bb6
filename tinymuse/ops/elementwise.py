"""Element-wise operations: arithmetic, powers, exp and log, activations,
selection and comparisons.

Every output element depends on the input elements at the same position, so
each Jacobian is diagonal and every backward is an element-wise product,

    dL/dx = dL/dy · f'(x),

where ``f'`` is written out by hand below. Binary operations broadcast like
NumPy; their backward returns a gradient of the broadcast shape and the engine
sums it down to each input's shape (:func:`tinymuse.autograd.unbroadcast`).

Operands may be Tensors or constants. Python numbers (and NumPy scalars) stay
"weak": ``x * 2.0`` keeps ``x``'s dtype. Lists and arrays become constant
tensors on the other operand's device. Two floating tensors of different
dtypes are an error rather than a silent cast; an integer or bool tensor meets
a floating one by being converted to the floating dtype.

Each backward is the formula of its docstring, written as it reads. The one
rule it must keep: never write into the incoming ``grad``, which the engine
may have handed to other functions as well (``add`` passes the same array to
both of its inputs).
"""
from __future__ import annotations

import math

import numpy as np

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs", "tanh",
           "sigmoid", "relu", "silu", "gelu", "maximum", "minimum", "where", "masked_fill",
           "clip", "eq", "ne", "lt", "le", "gt", "ge", "bitwise_not", "bitwise_and", "bitwise_or",
           "bitwise_xor"]

_PYTHON_SCALARS = (bool, int, float)


# ------------------------------------------------------------------ operands
def _is_scalar(value) -> bool:
    return isinstance(value, _PYTHON_SCALARS) or isinstance(value, np.generic)


def _constant(value, like: Tensor) -> Tensor:
    """A constant Tensor for a list or array, on ``like``'s device. Python data
    (lists) takes ``like``'s floating dtype; arrays keep their own dtype."""
    is_array = isinstance(value, backend.get_array_module(value).ndarray)
    dtype = like.dtype if like.dtype.kind == "f" and not is_array else None
    return Tensor(value, dtype=dtype, device=like.device)


def _float_tensor(x) -> Tensor:
    """``x`` as a Tensor with a floating dtype (integers and bools become float32)."""
    x = x if isinstance(x, Tensor) else Tensor(x)
    return x if x.dtype.kind == "f" else x.astype(backend.DEFAULT_DTYPE)


def _broadcastable(shape_a: tuple, shape_b: tuple) -> bool:
    """NumPy's rule: line the shapes up from the right; sizes must match or be 1."""
    return all(m == n or m == 1 or n == 1 for m, n in zip(reversed(shape_a), reversed(shape_b)))


def _check_broadcast(name: str, *shapes) -> None:
    # Shapes that broadcast pairwise broadcast together: on each axis the sizes
    # other than 1 must all be equal.
    if not all(_broadcastable(a, b) for i, a in enumerate(shapes) for b in shapes[i + 1:]):
        listed = " and ".join(str(tuple(s)) for s in shapes)
        raise ValueError(f"{name}: shapes {listed} cannot be broadcast together (broadcasting "
                         f"lines up trailing axes; each pair of sizes must be equal or 1). "
                         f"Reshape or unsqueeze an operand so the shapes line up.") from None


def _operands(name: str, a, b, same_float_dtype: bool = True):
    """Make ``a`` and ``b`` ready for a binary operation.

    Returns Tensors, or a Python number for a scalar operand. Checks that the
    shapes broadcast and, unless ``same_float_dtype`` is False (comparisons),
    that two floating tensors share a dtype.
    """
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.dtype == b.dtype:
        if a.shape != b.shape:  # the common case, tensors alike, costs two comparisons
            _check_broadcast(name, a.shape, b.shape)
        return a, b
    if _is_scalar(a):
        a = a.item() if isinstance(a, np.generic) else a
    if _is_scalar(b):
        b = b.item() if isinstance(b, np.generic) else b
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a)  # e.g. add(2, 3): the first operand sets device and dtype
    if not isinstance(a, (Tensor, *_PYTHON_SCALARS)):
        a = _constant(a, b)
    if not isinstance(b, (Tensor, *_PYTHON_SCALARS)):
        b = _constant(b, a)

    if isinstance(a, Tensor) and isinstance(b, Tensor):
        if a.dtype != b.dtype:
            a_float, b_float = a.dtype.kind == "f", b.dtype.kind == "f"
            if a_float and b_float:
                if same_float_dtype:
                    raise TypeError(
                        f"{name}: cannot mix {a.dtype} and {b.dtype} operands (shapes "
                        f"{a.shape} and {b.shape}); convert one first: a tensor with .float() "
                        f"(float32) or .double() (float64), an array with .astype(...)")
            elif a_float:
                b = b.astype(a.dtype)
            elif b_float:
                a = a.astype(b.dtype)
        _check_broadcast(name, a.shape, b.shape)
    elif same_float_dtype:  # a tensor and a Python number
        t, s = (a, b) if isinstance(a, Tensor) else (b, a)
        if t.dtype.kind != "f" and isinstance(s, float):
            t = t.astype(backend.DEFAULT_DTYPE)  # int_tensor * 0.5 is float32, as in PyTorch
            a, b = (t, s) if isinstance(a, Tensor) else (s, t)
    return a, b


def _xp(*values):
    """The array module of the first array among ``values``."""
    for v in values:
        if not isinstance(v, _PYTHON_SCALARS):
            return backend.get_array_module(v)
    return np


# ---------------------------------------------------------------- arithmetic
class Add(Function):
    """y = a + b; both gradients are dL/dy itself."""

    def forward(self, a, b):
        return a + b

    def backward(self, grad):
        return grad, grad


class Sub(Function):
    """y = a - b; dL/da = dL/dy, dL/db = -dL/dy."""

    def forward(self, a, b):
        return a - b

    def backward(self, grad):
        return grad, (-grad if self.needs_input_grad[1] else None)


class Mul(Function):
    """y = a · b; dL/da = dL/dy · b, dL/db = dL/dy · a."""

    def forward(self, a, b):
        need_a, need_b = self.needs_input_grad
        self.a = a if need_b else None
        self.b = b if need_a else None
        return a * b

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        # BEGIN EXERCISE ch01_ex3
        return (grad * self.b if need_a else None), (grad * self.a if need_b else None)
        # END EXERCISE


class Div(Function):
    """y = a / b; dL/da = dL/dy / b, dL/db = -dL/dy · a / b² = -(dL/da) · y."""

    def forward(self, a, b):
        out = a / b
        self.b = b
        self.out = out if self.needs_input_grad[1] else None
        return out

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        # BEGIN EXERCISE ch01_ex3
        grad_a = grad / self.b
        grad_b = -grad_a * self.out if need_b else None
        return (grad_a if need_a else None), grad_b
        # END EXERCISE


class Neg(Function):
    """y = −x; dL/dx = −dL/dy."""

    def forward(self, x):
        return -x

    def backward(self, grad):
        return -grad


class Pow(Function):
    """y = a ** b, for a tensor or number on either side.

    dL/da = dL/dy · b · a^(b−1) and dL/db = dL/dy · y · ln a. Two corners are
    set by hand, as PyTorch does: dL/da = 0 where b = 0 (a⁰ = 1 is constant,
    even at a = 0), and dL/db = 0 where a = 0 and b ≥ 0 (the limit from
    a > 0) instead of 0 · (−∞) = nan.
    """

    def forward(self, a, b):
        out = a ** b
        self.a, self.b = a, b
        self.out = out if self.needs_input_grad[1] else None
        return out

    def backward(self, grad):
        need_a, need_b = self.needs_input_grad
        return (self._grad_a(grad) if need_a else None), (self._grad_b(grad) if need_b else None)

    def _grad_a(self, grad):
        """dL/dy · b · a^(b−1), and 0 where b = 0."""
        a, b = self.a, self.b
        if isinstance(b, _PYTHON_SCALARS):
            if b == 0:  # a ** 0 = 1 everywhere, even at a = 0
                return backend.get_array_module(grad).zeros_like(grad)
            return grad * b * a ** (b - 1)
        xp = backend.get_array_module(a)
        with np.errstate(divide="ignore", invalid="ignore"):  # a^(b−1) at a = 0, b < 1
            slope = b * a ** (b - 1)
        return grad * xp.where(b == 0, 0, slope)

    def _grad_b(self, grad):
        """dL/dy · y · ln a, and 0 where a = 0 and b ≥ 0."""
        a, b = self.a, self.b
        if isinstance(a, _PYTHON_SCALARS):
            log_a = math.log(a) if a > 0 else (0.0 if a == 0 else math.nan)
            return grad * self.out * log_a
        xp = backend.get_array_module(a)
        with np.errstate(divide="ignore", invalid="ignore"):  # ln a for a ≤ 0
            slope = xp.log(a) * self.out
        return grad * xp.where((a == 0) & (b >= 0), 0, slope)


# ------------------------------------------------------ exponentials, powers
class Exp(Function):
    """y = eˣ; dy/dx = eˣ = y, so the output is all backward needs."""

    def forward(self, x):
        self.out = backend.get_array_module(x).exp(x)
        return self.out

    def backward(self, grad):
        return grad * self.out


class Log(Function):
    """y = ln x; dy/dx = 1/x."""

    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).log(x)

    def backward(self, grad):
        return grad / self.x


class Sqrt(Function):
    """y = √x; dy/dx = 1 / (2√x) = 1 / (2y)."""

    def forward(self, x):
        self.out = backend.get_array_module(x).sqrt(x)
        return self.out

    def backward(self, grad):
        return grad / (2 * self.out)


class Abs(Function):
    """y = |x|; dy/dx = sign(x), taken as 0 at x = 0."""

    def forward(self, x):
        self.x = x
        return backend.get_array_module(x).abs(x)

    def backward(self, grad):
        return grad * backend.get_array_module(grad).sign(self.x)


# ---------------------------------------------------------------- activations
class Tanh(Function):
    """y = tanh x; dy/dx = 1 − y²."""

    def forward(self, x):
        self.out = backend.get_array_module(x).tanh(x)
        return self.out

    def backward(self, grad):
        return grad * (1 - self.out * self.out)


def _sigmoid(xp, x):
    """σ(x) = 1 / (1 + e⁻ˣ), numerically stable for every x as it stands.

    e⁻ˣ overflows to inf only where σ(x) is below the smallest normal float
    (x < −88 in float32, x < −709 in float64), and there 1 / (1 + inf) = 0 is
    the correctly rounded answer, so that overflow is harmless and its warning
    is silenced. Elsewhere exp, +1 and the division each keep relative
    precision: σ(−30) comes out as 9.4e−14, where 0.5 · (1 + tanh(x/2)) would
    give 0.
    """
    with np.errstate(over="ignore"):
        e = xp.exp(-x)
    return 1 / (1 + e)


class Sigmoid(Function):
    """y = σ(x) = 1 / (1 + e⁻ˣ); dy/dx = y (1 − y)."""

    def forward(self, x):
        self.out = _sigmoid(backend.get_array_module(x), x)
        return self.out

    def backward(self, grad):
        return grad * self.out * (1 - self.out)


class ReLUFunction(Function):
    """y = max(x, 0); dy/dx = 1 where x > 0, else 0 (0 at x = 0)."""

    def forward(self, x):
        self.out = backend.get_array_module(x).maximum(x, 0)
        return self.out

    def backward(self, grad):
        return grad * (self.out > 0)  # a multiply by a bool mask is faster than where()


class SiLUFunction(Function):
    """y = x · σ(x) (also called swish); dy/dx = σ(x) · (1 + x (1 − σ(x)))."""

    def forward(self, x):
        s = _sigmoid(backend.get_array_module(x), x)
        self.x, self.s = x, s
        return x * s

    def backward(self, grad):
        return grad * self.s * (1 + self.x * (1 - self.s))


_GELU_C = math.sqrt(2 / math.pi)
_GELU_K = 0.044715

# How many elements one pass of a blocked element-wise kernel works on: a few arrays of this
# many float32 numbers stay in a core's L2 cache, so the later passes over a block read it
# from there instead of from memory. On a GPU every pass is one kernel over the whole array.
BLOCK_ELEMENTS = 1 << 15


def row_blocks(xp, rows: int, width: int):
    """Slices of ``rows`` rows of ``width`` numbers, about :data:`BLOCK_ELEMENTS` each (one
    slice of all rows for CuPy)."""
    step = rows if xp is not np else max(1, BLOCK_ELEMENTS // max(width, 1))
    return [slice(start, start + step) for start in range(0, rows, step)]


def gelu_forward_rows(z):
    """GELU of the rows of a 2-D array: (y, s) with y = z · s and s = σ(2u),
    u = √(2/π) (z + 0.044715 z³) (see :class:`GELUFunction`). Block by block, so that all
    the passes over one block run while it is in cache, the blocks shared over the CPU's
    threads (:func:`~tinymuse.backend.run_in_parallel`)."""
    xp = backend.get_array_module(z)
    y, s = xp.empty_like(z), xp.empty_like(z)

    def block(rows):
        zb, v = z[rows], s[rows]
        xp.multiply(zb, zb, out=v)
        v *= _GELU_C * _GELU_K
        v += _GELU_C
        v *= zb                                       # v = u
        xp.tanh(v, out=v)
        v *= 0.5
        v += 0.5                                      # s = ½ (1 + tanh u) = σ(2u)
        xp.multiply(zb, v, out=y[rows])

    backend.run_in_parallel(block, row_blocks(xp, z.shape[0], z.shape[1]))
    return y, s


def gelu_backward_rows(z, s, grad):
    """dL/dz = dL/dy · s (1 + (1 − s) · z · 2√(2/π) (1 + 3 · 0.044715 z²)), a new array,
    block by block like :func:`gelu_forward_rows`, in this thread: its passes are cheap
    multiplications that wait on memory, which a second thread does not speed up."""
    xp = backend.get_array_module(z)
    dz = xp.empty_like(z)
    blocks = row_blocks(xp, z.shape[0], z.shape[1])
    one_minus_s = xp.empty_like(z[blocks[0]]) if blocks else None
    for rows in blocks:
        zb, sb, g = z[rows], s[rows], dz[rows]
        t = one_minus_s[:g.shape[0]]
        xp.multiply(zb, zb, out=g)
        g *= 6 * _GELU_C * _GELU_K
        g += 2 * _GELU_C
        g *= zb                                       # z · 2 du/dz
        xp.subtract(1, sb, out=t)
        g *= t
        g += 1
        g *= sb
        g *= grad[rows]
    return dz


def _rows(x):
    """``x`` as a 2-D array of rows over its last axis (a view when its layout allows)."""
    return x.reshape(-1, 1) if x.ndim == 0 or x.size == 0 else x.reshape(-1, x.shape[-1])


class GELUFunction(Function):
    """GELU with the tanh approximation of BERT and GPT-2, fused into one op:

        y = ½ x (1 + tanh u),    u = √(2/π) (x + 0.044715 x³)

    This is y = x · s with s = ½ (1 + tanh u) = σ(2u), kept for the backward. (The
    forward computes s by tanh: one pass, where σ would take exp and a reciprocal.)
    With 1 − tanh² u = 4 s (1 − s):

        dy/dx = s + x · s (1 − s) · 2 du/dx
              = s · (1 + (1 − s) · x · 2√(2/π) (1 + 3 · 0.044715 x²))

    The exact GELU is x · Φ(x), with Φ the standard normal CDF; the tanh
    form differs from it by less than 1e-3 everywhere.
    """

    def forward(self, x):
        self.x2 = _rows(x)
        y, self.s = gelu_forward_rows(self.x2)
        return y.reshape(x.shape)

    def backward(self, grad):
        return gelu_backward_rows(self.x2, self.s, _rows(grad)).reshape(grad.shape)


# ------------------------------------------------------------------ selection
class _Extremum(Function):
    """Element-wise maximum or minimum of a and b. The gradient goes to the
    operand that won; on a tie it is split equally (½ each), so the two
    gradients always add up to dL/dy."""

    pick = None  # "greater" for maximum, "less" for minimum

    def forward(self, a, b):
        xp = _xp(a, b)
        self.a, self.b = a, b
        return xp.maximum(a, b) if self.pick == "greater" else xp.minimum(a, b)

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        wins = getattr(xp, self.pick)(self.a, self.b)                      # a > b, for maximum
        wins_or_ties = getattr(xp, self.pick + "_equal")(self.a, self.b)   # a ≥ b
        share_a = xp.add(wins, wins_or_ties, dtype=grad.dtype) / 2         # 1, ½ or 0
        grad_a = grad * share_a
        grad_b = grad - grad_a if self.needs_input_grad[1] else None
        return (grad_a if self.needs_input_grad[0] else None), grad_b


class Maximum(_Extremum):
    pick = "greater"


class Minimum(_Extremum):
    pick = "less"


class Where(Function):
    """y = a where the condition holds, b elsewhere; the gradient is routed
    the same way (dL/da is dL/dy where the condition holds, 0 elsewhere)."""

    def forward(self, condition, a, b):
        self.condition = condition
        return _xp(condition).where(condition, a, b)

    def backward(self, grad):
        _, need_a, need_b = self.needs_input_grad
        grad_a = grad * self.condition if need_a else None
        grad_b = grad * ~self.condition if need_b else None
        return None, grad_a, grad_b


class MaskedFill(Function):
    """y = value where mask, x elsewhere; dL/dx is 0 where the mask is set."""

    def forward(self, x, *, mask, value):
        self.mask = mask
        return backend.get_array_module(x).where(mask, value, x)

    def backward(self, grad):
        return grad * ~self.mask


class Clip(Function):
    """y = min(max(x, low), high); dy/dx = 1 where low ≤ x ≤ high (bounds
    included, as in PyTorch's clamp), 0 where x was clipped."""

    def forward(self, x, *, low, high):
        xp = backend.get_array_module(x)
        self.x, self.low, self.high = x, low, high
        return xp.clip(x, low, high)

    def backward(self, grad):
        above_low = True if self.low is None else self.x >= self.low
        below_high = True if self.high is None else self.x <= self.high
        return grad * (above_low & below_high)


# -------------------------------------------------------------- public API
def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def add(a, b) -> Tensor:
    """a + b, broadcasting."""
    return Add.apply(*_operands("add", a, b))


def sub(a, b) -> Tensor:
    """a − b, broadcasting."""
    return Sub.apply(*_operands("sub", a, b))


def mul(a, b) -> Tensor:
    """a · b, element-wise, broadcasting."""
    return Mul.apply(*_operands("mul", a, b))


def div(a, b) -> Tensor:
    """a / b (true division), broadcasting. Integer tensors give float32."""
    a, b = _operands("div", a, b)
    if isinstance(a, Tensor) and a.dtype.kind != "f":
        a = a.astype(backend.DEFAULT_DTYPE)  # int / int would be float64 in NumPy
        if isinstance(b, Tensor):
            b = b.astype(a.dtype)
    elif isinstance(b, Tensor) and b.dtype.kind != "f":
        b = b.astype(backend.DEFAULT_DTYPE)
    return Div.apply(a, b)


def neg(x) -> Tensor:
    """−x."""
    return Neg.apply(_tensor(x))


def pow(a, b) -> Tensor:  # noqa: A001 (shadows the builtin inside this module only)
    """a ** b: tensor ** number, number ** tensor or tensor ** tensor."""
    return Pow.apply(*_operands("pow", a, b))


def exp(x) -> Tensor:
    """eˣ element-wise."""
    return Exp.apply(_float_tensor(x))


def log(x) -> Tensor:
    """Natural logarithm, element-wise (−inf at 0, nan below)."""
    return Log.apply(_float_tensor(x))


def sqrt(x) -> Tensor:
    """√x element-wise."""
    return Sqrt.apply(_float_tensor(x))


def abs(x) -> Tensor:  # noqa: A001
    """|x| element-wise; its gradient at 0 is 0."""
    return Abs.apply(_tensor(x))


def tanh(x) -> Tensor:
    """Hyperbolic tangent, element-wise."""
    return Tanh.apply(_float_tensor(x))


def sigmoid(x) -> Tensor:
    """σ(x) = 1 / (1 + e⁻ˣ), computed without overflow for any x."""
    return Sigmoid.apply(_float_tensor(x))


def relu(x) -> Tensor:
    """max(x, 0)."""
    return ReLUFunction.apply(_tensor(x))


def silu(x) -> Tensor:
    """x · σ(x) (SiLU, also called swish)."""
    return SiLUFunction.apply(_float_tensor(x))


def gelu(x) -> Tensor:
    """GELU, tanh approximation: ½ x (1 + tanh(√(2/π) (x + 0.044715 x³))).
    See :class:`GELUFunction`."""
    return GELUFunction.apply(_float_tensor(x))


def maximum(a, b) -> Tensor:
    """Element-wise max(a, b); on ties the gradient is split equally."""
    return Maximum.apply(*_operands("maximum", a, b))


def minimum(a, b) -> Tensor:
    """Element-wise min(a, b); on ties the gradient is split equally."""
    return Minimum.apply(*_operands("minimum", a, b))


def _bool_mask(name: str, mask, like) -> Tensor:
    """``mask`` as a bool Tensor on the device of ``like`` (a Tensor or number)."""
    device = like.device if isinstance(like, Tensor) else None
    mask = mask if isinstance(mask, Tensor) else Tensor(mask, device=device)
    if isinstance(like, Tensor) and mask.device != like.device:
        raise RuntimeError(f"{name}: the mask is on '{mask.device}' but the tensor on "
                           f"'{like.device}'; move one with .to('{like.device}')")
    if mask.dtype != np.bool_:
        raise TypeError(f"{name}: the mask/condition must be a bool tensor (for example "
                        f"x > 0), got dtype {mask.dtype}")
    return mask


def where(condition, a, b) -> Tensor:
    """a where ``condition`` (a bool tensor) is True, b elsewhere; all three broadcast."""
    if isinstance(condition, Tensor) and not isinstance(a, Tensor) and not isinstance(b, Tensor):
        a = Tensor(a, device=condition.device)  # where(mask, 1.0, 0.0): float32, on mask's device
    a, b = _operands("where", a, b)
    condition = _bool_mask("where", condition, a if isinstance(a, Tensor) else b)
    shapes = [condition.shape] + [t.shape for t in (a, b) if isinstance(t, Tensor)]
    _check_broadcast("where", *shapes)
    return Where.apply(condition, a, b)


def masked_fill(x, mask, value) -> Tensor:
    """A copy of ``x`` with ``value`` wherever the bool ``mask`` (broadcastable
    to x's shape) is True; e.g. ``masked_fill(scores, ~allowed, float('-inf'))``."""
    x = _tensor(x)
    mask = _bool_mask("masked_fill", mask, x)
    if mask.ndim > x.ndim or not _broadcastable(mask.shape, x.shape) or any(
            m != n and n == 1 for m, n in zip(reversed(mask.shape), reversed(x.shape))):
        raise ValueError(f"masked_fill: a mask of shape {mask.shape} does not broadcast to the "
                         f"tensor's shape {x.shape} (the result keeps the tensor's shape)")
    if isinstance(value, Tensor):
        value = value.item()
    if not _is_scalar(value):
        raise TypeError(f"masked_fill: value must be a number, got {type(value).__name__}; "
                        f"use where(mask, other, x) to fill from a tensor")
    value = value.item() if isinstance(value, np.generic) else value
    return MaskedFill.apply(x, mask=mask.data, value=value)


def clip(x, low=None, high=None) -> Tensor:
    """x limited to [low, high] (numbers; either may be None for no bound).
    The gradient flows where low ≤ x ≤ high."""
    if low is None and high is None:
        raise ValueError("clip: give at least one of low and high")
    low = low.item() if isinstance(low, (Tensor, np.generic)) else low
    high = high.item() if isinstance(high, (Tensor, np.generic)) else high
    return Clip.apply(_tensor(x), low=low, high=high)


# ------------------------------------------------------ comparisons, logic
def _compare(name: str, ufunc: str, a, b, logical: bool = False) -> Tensor:
    """``ufunc(a, b)`` on the data, as a tensor outside the graph (no gradient).
    ``logical`` operations (and, or, xor) refuse floating-point operands."""
    a, b = _operands(name, a, b, same_float_dtype=False)
    if logical:
        _check_not_float(name, a, b)
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a.device != b.device:
        raise RuntimeError(f"{name}: tensors on different devices ({a.device} and {b.device}); "
                           f"move one with .to('{a.device}')")
    a_data = a.data if isinstance(a, Tensor) else a
    b_data = b.data if isinstance(b, Tensor) else b
    return Tensor(getattr(_xp(a_data, b_data), ufunc)(a_data, b_data))


def _check_not_float(name: str, *operands) -> None:
    if any(isinstance(v, float) or isinstance(v, Tensor) and v.dtype.kind == "f"
           for v in operands):
        raise TypeError(f"{name} needs bool or integer tensors, not floating point ones; "
                        f"compare first (e.g. x > 0) to get a mask")


def eq(a, b) -> Tensor:
    """a == b element-wise, as a bool tensor (no gradient)."""
    return _compare("eq", "equal", a, b)


def ne(a, b) -> Tensor:
    """a != b element-wise, as a bool tensor (no gradient)."""
    return _compare("ne", "not_equal", a, b)


def lt(a, b) -> Tensor:
    """a < b element-wise, as a bool tensor (no gradient)."""
    return _compare("lt", "less", a, b)


def le(a, b) -> Tensor:
    """a <= b element-wise, as a bool tensor (no gradient)."""
    return _compare("le", "less_equal", a, b)


def gt(a, b) -> Tensor:
    """a > b element-wise, as a bool tensor (no gradient)."""
    return _compare("gt", "greater", a, b)


def ge(a, b) -> Tensor:
    """a >= b element-wise, as a bool tensor (no gradient)."""
    return _compare("ge", "greater_equal", a, b)


def bitwise_not(x) -> Tensor:
    """~x: for a bool tensor the logical not (``~allowed`` flips a mask), for an
    integer one the bitwise not, as in NumPy. No gradient."""
    x = _tensor(x)
    _check_not_float("bitwise_not", x)
    return Tensor(x.xp.invert(x.data))


def bitwise_and(a, b) -> Tensor:
    """a & b for bool (logical and) or integer tensors, as in NumPy. No gradient."""
    return _compare("bitwise_and", "bitwise_and", a, b, logical=True)


def bitwise_or(a, b) -> Tensor:
    """a | b for bool (logical or) or integer tensors, as in NumPy. No gradient."""
    return _compare("bitwise_or", "bitwise_or", a, b, logical=True)


def bitwise_xor(a, b) -> Tensor:
    """a ^ b for bool (logical xor) or integer tensors, as in NumPy. No gradient."""
    return _compare("bitwise_xor", "bitwise_xor", a, b, logical=True)
