"""Give :class:`~tinymuse.tensor.Tensor` its operators and methods.

``tensor.py`` only knows the graph; the arithmetic lives in the op modules.
:func:`install_tensor_methods` connects the two, so that ``a + b`` calls
:func:`~tinymuse.ops.elementwise.add` and ``x.sum(axis=1)`` calls
:func:`~tinymuse.ops.reduction.sum`. A method is the function itself, with
the tensor as its first argument: ``x.reshape(2, 3)`` is ``reshape(x, 2, 3)``.
"""
from __future__ import annotations

import numpy as np

from ..tensor import Tensor
from . import elementwise as E
from . import linalg as L
from . import reduction as R
from . import shape as S

# name on Tensor -> function; each is called as function(tensor, *args, **kwargs)
_METHODS = {
    "sum": R.sum, "mean": R.mean, "max": R.max, "min": R.min, "var": R.var, "argmax": R.argmax,
    "reshape": S.reshape, "view": S.reshape, "permute": S.permute, "transpose": S.transpose,
    "flatten": S.flatten, "squeeze": S.squeeze, "unsqueeze": S.unsqueeze, "expand": S.expand,
    "split": S.split, "chunk": S.chunk,
    "exp": E.exp, "log": E.log, "sqrt": E.sqrt, "abs": E.abs, "tanh": E.tanh,
    "sigmoid": E.sigmoid, "relu": E.relu, "gelu": E.gelu, "silu": E.silu, "clip": E.clip,
    "masked_fill": E.masked_fill,
}

# Functions from other op modules, installed when they exist (see install_tensor_methods).
_OPTIONAL_METHODS = ("softmax", "log_softmax")

_OPERAND_TYPES = (Tensor, bool, int, float, np.generic, np.ndarray, list, tuple)


def _binary(function, reflected: bool = False):
    """An operator method: ``a ⊕ b`` calls ``function(a, b)``; the reflected
    form (``2 - x`` is ``x.__rsub__(2)``) calls ``function(b, a)``. Operands
    of unrelated types give NotImplemented, so Python can try the other side
    (and ``x == None`` is simply False)."""
    def operator(self, other):
        if not isinstance(other, _OPERAND_TYPES) and not hasattr(other, "__array__"):
            return NotImplemented
        return function(other, self) if reflected else function(self, other)
    operator.__name__ = function.__name__
    operator.__doc__ = function.__doc__
    return operator


def _bitwise(ufunc: str):
    """``~``, ``&``, ``|``, ``^`` for bool (and integer) tensors, as in NumPy;
    not differentiable. ``~allowed`` is the usual way to flip a mask."""
    def operator(self, *other):
        if other and not isinstance(other[0], _OPERAND_TYPES):
            return NotImplemented
        operands = E._operands(ufunc, self, other[0], same_float_dtype=False) if other \
            else (self,)
        arrays = [t.data if isinstance(t, Tensor) else t for t in operands]
        if any(isinstance(a, float) or getattr(a, "dtype", None) is not None
               and a.dtype.kind == "f" for a in arrays):
            raise TypeError(f"{ufunc} needs bool or integer tensors, not floating point ones; "
                            f"compare first (e.g. x > 0) to get a mask")
        return Tensor(getattr(self.xp, ufunc)(*arrays))
    operator.__name__ = ufunc
    return operator


def _setitem(self, index, value):
    raise TypeError("Tensors do not support item assignment (x[...] = v): changing values in "
                    "place would corrupt the gradients of every operation that saved them. "
                    "Build a new tensor instead: where(mask, value, x), masked_fill(x, mask, "
                    "value), or concatenate pieces.")


def _bool(self):
    if self.size != 1:
        raise ValueError(f"the truth value of a tensor with {self.size} elements is ambiguous "
                         f"(shape {self.shape}); reduce it first, e.g. "
                         f"bool((x == y).numpy().all())")
    return bool(self.data)


def _transposed(self):
    """All axes reversed, as NumPy's ``.T`` (for a matrix, the transpose). Use
    ``x.transpose()`` to swap only the last two axes of a batch."""
    return S.permute(self, tuple(reversed(range(self.ndim))))


def install_tensor_methods() -> None:
    """Attach operators and methods to Tensor (idempotent)."""
    operators = {
        "__add__": _binary(E.add), "__radd__": _binary(E.add, reflected=True),
        "__sub__": _binary(E.sub), "__rsub__": _binary(E.sub, reflected=True),
        "__mul__": _binary(E.mul), "__rmul__": _binary(E.mul, reflected=True),
        "__truediv__": _binary(E.div), "__rtruediv__": _binary(E.div, reflected=True),
        "__pow__": _binary(E.pow), "__rpow__": _binary(E.pow, reflected=True),
        "__matmul__": _binary(L.matmul), "__rmatmul__": _binary(L.matmul, reflected=True),
        "__eq__": _binary(E.eq), "__ne__": _binary(E.ne),
        "__lt__": _binary(E.lt), "__le__": _binary(E.le),
        "__gt__": _binary(E.gt), "__ge__": _binary(E.ge),
        "__neg__": E.neg, "__abs__": E.abs,
        "__invert__": _bitwise("invert"), "__and__": _bitwise("bitwise_and"),
        "__or__": _bitwise("bitwise_or"), "__xor__": _bitwise("bitwise_xor"),
        "__rand__": _bitwise("bitwise_and"), "__ror__": _bitwise("bitwise_or"),
        "__rxor__": _bitwise("bitwise_xor"),
        "__getitem__": S.getitem, "__setitem__": _setitem, "__bool__": _bool,
    }
    for name, function in {**operators, **_METHODS}.items():
        setattr(Tensor, name, function)
    Tensor.T = property(_transposed)
    Tensor.__hash__ = object.__hash__  # defining __eq__ must not make tensors unhashable

    from .. import ops  # the package, still importing: other op modules may not exist yet
    for name in _OPTIONAL_METHODS:
        function = getattr(ops, name, None)
        if callable(function):
            setattr(Tensor, name, function)
