"""The Tensor a user meets: the graph engine plus its operator table.

Two modules below this one do the work. :mod:`tinymuse.autograd` defines
:class:`Tensor` (data, gradient, graph, ``backward``) and :class:`Function`;
:mod:`tinymuse.ops` defines every operation as a ``Function`` with a public
wrapper function (``add``, ``matmul``, ``sum``, ``softmax``, ...). This module
connects them with one table, so that an expression on tensors reads like
NumPy and still records the graph.

Python turns an operator into a method call on the left operand, and a method
here is just the operation with the tensor as its first argument:

    a + b          is  Tensor.__add__(a, b)       is  add(a, b)
    2 - x          is  Tensor.__rsub__(x, 2)      is  sub(2, x)    (the reflected form)
    x.sum(axis=1)  is  Tensor.sum(x, axis=1)      is  sum(x, axis=1)
    x.reshape(2, 3)                               is  reshape(x, 2, 3)

:data:`OPERATORS` lists Python's operators, :data:`METHODS` the named methods;
the loop at the bottom attaches both to ``Tensor``. Everything users import
from here (``Tensor``, ``Function``, ``no_grad``, the constructors, ...) is
re-exported from :mod:`tinymuse.autograd`, so ``from tinymuse.tensor import
Tensor`` gives the tensor with all of its operators.
"""
from __future__ import annotations

import numpy as np

from .autograd import (AsType, Function, Tensor, ToDevice, arange, as_tensor, enable_grad, full,
                       is_grad_enabled, no_grad, ones, ones_like, rand, randn, unbroadcast, zeros,
                       zeros_like)
from .ops import elementwise, linalg, nn, reduction, shape

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast",
           "ToDevice", "AsType", "zeros", "ones", "full", "arange", "randn", "rand",
           "zeros_like", "ones_like", "as_tensor", "OPERATORS", "METHODS"]

# What may stand on the other side of a binary operator. Anything else gives
# NotImplemented, so Python can ask the other operand (and `x == None` is False).
_OPERAND_TYPES = (Tensor, bool, int, float, np.generic, np.ndarray, list, tuple)


# ------------------------------------------------------------------ adapters
def _binary(function):
    """``a ⊕ b`` calls ``function(a, b)``, for operands it knows."""
    def operator(self, other):
        if not isinstance(other, _OPERAND_TYPES) and not hasattr(other, "__array__"):
            return NotImplemented
        return function(self, other)
    operator.__name__, operator.__doc__ = function.__name__, function.__doc__
    return operator


def _reflected(function):
    """The reflected operator: ``2 - x`` is ``x.__rsub__(2)``, which calls
    ``function(2, x)``, the operands back in the order they were written."""
    def operator(self, other):
        if not isinstance(other, _OPERAND_TYPES) and not hasattr(other, "__array__"):
            return NotImplemented
        return function(other, self)
    operator.__name__, operator.__doc__ = function.__name__, function.__doc__
    return operator


def _setitem(self, index, value):
    raise TypeError("Tensors do not support item assignment (x[...] = v): changing values in "
                    "place would corrupt the gradients of every operation that saved them. "
                    "Build a new tensor instead: where(mask, value, x), masked_fill(x, mask, "
                    "value), or concatenate pieces.")


def _bool(self):
    """``if x:`` for a one-element tensor; any other tensor has no single truth value."""
    if self.size != 1:
        raise ValueError(f"the truth value of a tensor with {self.size} elements is ambiguous "
                         f"(shape {self.shape}); reduce it first, e.g. "
                         f"bool((x == y).numpy().all())")
    return bool(self.data)


def _transposed(self):
    """All axes reversed, as NumPy's ``.T`` (for a matrix, the transpose). Use
    ``x.transpose()`` to swap only the last two axes of a batch."""
    return shape.permute(self, tuple(reversed(range(self.ndim))))


# -------------------------------------------------------------------- tables
OPERATORS = {
    # arithmetic (differentiable)
    "__add__": _binary(elementwise.add), "__radd__": _reflected(elementwise.add),
    "__sub__": _binary(elementwise.sub), "__rsub__": _reflected(elementwise.sub),
    "__mul__": _binary(elementwise.mul), "__rmul__": _reflected(elementwise.mul),
    "__truediv__": _binary(elementwise.div), "__rtruediv__": _reflected(elementwise.div),
    "__pow__": _binary(elementwise.pow), "__rpow__": _reflected(elementwise.pow),
    "__matmul__": _binary(linalg.matmul), "__rmatmul__": _reflected(linalg.matmul),
    "__neg__": elementwise.neg,
    "__abs__": elementwise.abs,
    # comparisons (bool tensors, no gradient)
    "__eq__": _binary(elementwise.eq), "__ne__": _binary(elementwise.ne),
    "__lt__": _binary(elementwise.lt), "__le__": _binary(elementwise.le),
    "__gt__": _binary(elementwise.gt), "__ge__": _binary(elementwise.ge),
    # logic on bool (or integer) tensors, no gradient: ~allowed flips a mask
    "__invert__": elementwise.bitwise_not,
    "__and__": _binary(elementwise.bitwise_and), "__rand__": _reflected(elementwise.bitwise_and),
    "__or__": _binary(elementwise.bitwise_or), "__ror__": _reflected(elementwise.bitwise_or),
    "__xor__": _binary(elementwise.bitwise_xor), "__rxor__": _reflected(elementwise.bitwise_xor),
    # indexing reads (differentiable); writing is refused
    "__getitem__": shape.getitem,
    "__setitem__": _setitem,
    "__bool__": _bool,
}

METHODS = {
    # reductions
    "sum": reduction.sum, "mean": reduction.mean, "var": reduction.var,
    "max": reduction.max, "min": reduction.min, "argmax": reduction.argmax,
    # shapes
    "reshape": shape.reshape, "view": shape.reshape, "flatten": shape.flatten,
    "permute": shape.permute, "transpose": shape.transpose,
    "squeeze": shape.squeeze, "unsqueeze": shape.unsqueeze, "expand": shape.expand,
    "split": shape.split, "chunk": shape.chunk,
    # element-wise functions
    "exp": elementwise.exp, "log": elementwise.log, "sqrt": elementwise.sqrt,
    "abs": elementwise.abs, "clip": elementwise.clip, "masked_fill": elementwise.masked_fill,
    "tanh": elementwise.tanh, "sigmoid": elementwise.sigmoid, "relu": elementwise.relu,
    "gelu": elementwise.gelu, "silu": elementwise.silu,
    # along an axis
    "softmax": nn.softmax, "log_softmax": nn.log_softmax,
}

for _name, _function in {**OPERATORS, **METHODS}.items():
    setattr(Tensor, _name, _function)
Tensor.T = property(_transposed)
del _name, _function
