"""Operations that move values around without changing them: reshape,
permute, expand, indexing, concatenation, splitting and padding.

Their backward moves the gradient back the same way: a reshape's gradient is
reshaped back, a permutation's is permuted by the inverse permutation, and a
slice's gradient is written into a zero tensor of the input's shape. Where
the forward *reads* an element several times (``expand``, an index listing
the same row twice), the backward *adds* the gradients of all the reads.
"""
from __future__ import annotations

import math
import operator

import numpy as np

from .. import backend
from ..autograd import Function, SliceGradient, Tensor

__all__ = ["reshape", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand",
           "getitem", "concatenate", "cat", "stack", "split", "chunk", "pad"]


# ------------------------------------------------------------------- helpers
def normalize_axis(axis, ndim: int, name: str = "axis") -> int:
    """``axis`` as an index in [0, ndim), accepting negative axes."""
    try:
        axis = operator.index(axis)
    except TypeError:
        raise TypeError(f"{name}: an axis must be an int, got {type(axis).__name__}") from None
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}: axis {axis} is out of range for a tensor with {ndim} "
                         f"dimension(s) (valid: {-ndim} to {ndim - 1})")
    return axis % ndim


def normalize_axes(axis, ndim: int, name: str = "axis") -> tuple | None:
    """``axis`` (None, an int or a sequence of ints) as a sorted tuple of
    non-negative axes, or None for "all axes"."""
    if axis is None:
        return None
    if isinstance(axis, (tuple, list)):
        axes = tuple(sorted(normalize_axis(a, ndim, name) for a in axis))
        if len(set(axes)) != len(axes):
            raise ValueError(f"{name}: repeated axis in {tuple(axis)}")
        return axes
    return (normalize_axis(axis, ndim, name),)


def _shape_args(shape: tuple) -> tuple:
    """Accept both f(x, 2, 3) and f(x, (2, 3))."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(operator.index(n) for n in shape)


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


# ------------------------------------------------------------- reshaping
class Reshape(Function):
    """Same values, new shape (a view when the memory layout allows)."""

    def forward(self, x, *, shape):
        self.in_shape = x.shape
        return x.reshape(shape)

    def backward(self, grad):
        return grad.reshape(self.in_shape)


class Permute(Function):
    """y = x with its axes reordered: y.shape[i] = x.shape[axes[i]]. The
    backward applies the inverse permutation (argsort of ``axes``)."""

    def forward(self, x, *, axes):
        self.axes = axes
        return x.transpose(axes)

    def backward(self, grad):
        return grad.transpose(np.argsort(self.axes))


class SwapAxes(Function):
    """Exchange two axes; swapping them again undoes it."""

    def forward(self, x, *, axis0, axis1):
        self.axis0, self.axis1 = axis0, axis1
        return x.swapaxes(axis0, axis1)

    def backward(self, grad):
        return grad.swapaxes(self.axis0, self.axis1)


class Expand(Function):
    """A broadcast view of x (no copy). The backward is the sum over the
    broadcast axes, which the engine already does for every input
    (:func:`tinymuse.autograd.unbroadcast`), so it passes dL/dy through."""

    def forward(self, x, *, shape):
        return backend.get_array_module(x).broadcast_to(x, shape)

    def backward(self, grad):
        return grad


def reshape(x, *shape) -> Tensor:
    """Same values in a new shape; one size may be -1 (inferred).
    ``reshape(x, 2, 3)`` and ``reshape(x, (2, 3))`` both work."""
    x = _tensor(x)
    shape = _shape_args(shape)
    known = math.prod(n for n in shape if n != -1)
    if (shape.count(-1) > 1 or any(n < -1 for n in shape)
            or (-1 in shape and (known == 0 or x.size % known))
            or (-1 not in shape and known != x.size)):
        raise ValueError(f"reshape: cannot reshape a tensor of shape {x.shape} ({x.size} "
                         f"elements) into shape {shape}")
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


def permute(x, *axes) -> Tensor:
    """Reorder the axes: ``permute(x, 0, 2, 1)`` swaps the last two of three."""
    x = _tensor(x)
    axes = tuple(normalize_axis(a, x.ndim, "permute") for a in _shape_args(axes))
    if sorted(axes) != list(range(x.ndim)):
        raise ValueError(f"permute: {axes} is not a permutation of the {x.ndim} axes of a "
                         f"tensor of shape {x.shape}")
    return Permute.apply(x, axes=axes)


def transpose(x, axis0=-2, axis1=-1) -> Tensor:
    """Swap two axes (by default the last two, i.e. transpose each matrix)."""
    x = _tensor(x)
    axis0 = normalize_axis(axis0, x.ndim, "transpose")
    axis1 = normalize_axis(axis1, x.ndim, "transpose")
    return SwapAxes.apply(x, axis0=axis0, axis1=axis1)


def flatten(x, start_axis=0, end_axis=-1) -> Tensor:
    """Merge axes ``start_axis`` … ``end_axis`` (inclusive) into one."""
    x = _tensor(x)
    if x.ndim == 0:
        return reshape(x, 1)
    start = normalize_axis(start_axis, x.ndim, "flatten")
    end = normalize_axis(end_axis, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_axis {start_axis} comes after end_axis {end_axis}")
    shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
    return reshape(x, shape)


def squeeze(x, axis=None) -> Tensor:
    """Remove size-1 axes: all of them (``axis=None``) or the given ones,
    which must have size 1."""
    x = _tensor(x)
    axes = normalize_axes(axis, x.ndim, "squeeze")
    if axes is None:
        axes = tuple(i for i, n in enumerate(x.shape) if n == 1)
    for a in axes:
        if x.shape[a] != 1:
            raise ValueError(f"squeeze: axis {a} of a tensor of shape {x.shape} has size "
                             f"{x.shape[a]}, not 1")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in axes))


def unsqueeze(x, axis) -> Tensor:
    """Insert a size-1 axis at position ``axis`` (−1 appends one at the end)."""
    x = _tensor(x)
    axis = normalize_axis(axis, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:axis] + (1,) + x.shape[axis:])


def expand(x, *shape) -> Tensor:
    """Broadcast x to ``shape`` without copying; -1 keeps a size. The gradient
    sums over the expanded axes."""
    x = _tensor(x)
    shape = _shape_args(shape)
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {x.shape} to fewer dimensions {shape}")
    shape = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(shape))
    if any(n == -1 for n in shape[:lead]) or any(
            m not in (1, n) for m, n in zip(x.shape, shape[lead:])):
        raise ValueError(f"expand: cannot expand shape {x.shape} to {shape}; only axes of "
                         f"size 1 can grow (new axes go in front)")
    if shape == x.shape:
        return x
    return Expand.apply(x, shape=shape)


# ------------------------------------------------------------------ indexing
def _reads_each_once(index: tuple) -> bool:
    """True when no element of x can be read twice: the index holds only ints,
    slices, None, Ellipsis and bool masks (no integer arrays, which may repeat)."""
    return all(i is None or i is Ellipsis or isinstance(i, (int, np.integer, slice))
               or getattr(i, "dtype", None) == np.bool_ for i in index)


def _scatter_add(xp, target, index: tuple, values) -> None:
    """target[index] += values, adding (not overwriting) where an index repeats."""
    if xp is np:
        if (len(index) == 1 and index[0].dtype.kind in "iu" and index[0].ndim >= 1):
            _add_rows(target, index[0], values)
        else:
            np.add.at(target, index, values)
    elif hasattr(xp.add, "at"):  # CuPy >= 13
        xp.add.at(target, index, values)
    else:
        import cupyx
        cupyx.scatter_add(target, index, values)


def _add_rows(target, rows, values) -> None:
    """target[rows] += values for an integer array ``rows`` along axis 0, with
    repeats added up. Sorting the rows and summing runs of equal ones with
    ``add.reduceat`` works on whole rows at a time, where ``np.add.at`` on an
    index along one axis of a 2-D array goes element by element."""
    rows = rows.ravel() % target.shape[0]  # -1 and n-1 name the same row
    if rows.size == 0:
        return
    values = values.reshape((rows.size,) + target.shape[1:])
    order = np.argsort(rows, kind="stable")
    rows = rows[order]
    starts = np.flatnonzero(np.concatenate(([True], rows[1:] != rows[:-1])))
    target[rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


class GetItem(Function):
    """y = x[index] with NumPy's indexing rules. The backward writes dL/dy into
    zeros shaped like x; for integer-array indices it *adds*, so a row that
    was read twice gets both gradients."""

    def forward(self, x, *, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        return x[index]

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        out = xp.zeros(self.shape, dtype=self.dtype)
        if _reads_each_once(self.index):
            out[self.index] = grad
        else:
            _scatter_add(xp, out, self.index, grad)
        return out


def _index_part(part, xp, device):
    """One component of an index, ready for arrays of module ``xp``."""
    if isinstance(part, Tensor):
        part = part.data
    elif isinstance(part, list):
        part = np.asarray(part)
    if hasattr(part, "dtype") and hasattr(part, "ndim"):  # an array
        if part.dtype.kind not in "iub":
            raise IndexError(f"getitem: index arrays must be integers or bools, got {part.dtype}")
        return backend.to_device(part, device) if backend.get_array_module(part) is not xp \
            else part
    return part


def getitem(x, index) -> Tensor:
    """x[index]: ints, slices, None, Ellipsis, integer arrays or Tensors
    (advanced indexing, repeats allowed) and bool masks, as in NumPy."""
    x = _tensor(x)
    parts = index if isinstance(index, tuple) else (index,)
    index = tuple(_index_part(p, x.xp, x.device) for p in parts)
    return GetItem.apply(x, index=index)


# ---------------------------------------------------------- joining, cutting
class Concatenate(Function):
    """Join along ``axis``; the backward cuts dL/dy into the same pieces."""

    def forward(self, *arrays, axis):
        self.axis = axis
        self.bounds = np.cumsum([a.shape[axis] for a in arrays])[:-1].tolist()
        return backend.get_array_module(arrays[0]).concatenate(arrays, axis=axis)

    def backward(self, grad):
        return tuple(backend.get_array_module(grad).split(grad, self.bounds, axis=self.axis))


class Stack(Function):
    """Stack along a new ``axis``; the backward takes slice i for input i."""

    def forward(self, *arrays, axis):
        self.axis = axis
        return backend.get_array_module(arrays[0]).stack(arrays, axis=axis)

    def backward(self, grad):
        before = (slice(None),) * self.axis
        return tuple(grad[before + (i,)] for i in range(grad.shape[self.axis]))


class Narrow(Function):
    """y = x[start:stop] along ``axis`` (a view). dL/dx is dL/dy in that slice and zero
    elsewhere; the backward says so with a :class:`~tinymuse.autograd.SliceGradient`, and
    the engine adds the pieces of one ``split`` into a single gradient of x."""

    def forward(self, x, *, axis, start, stop):
        self.where = (slice(None),) * axis + (slice(start, stop),)
        return x[self.where]

    def backward(self, grad):
        return SliceGradient(self.where, grad)


class Pad(Function):
    """Constant padding; the backward is the un-padded middle of dL/dy."""

    def forward(self, x, *, pad_width, value):
        xp = backend.get_array_module(x)
        shape = tuple(n + before + after for n, (before, after) in zip(x.shape, pad_width))
        self.middle = tuple(slice(before, before + n) for n, (before, _) in zip(x.shape, pad_width))
        out = xp.full(shape, value, dtype=x.dtype)
        out[self.middle] = x
        return out

    def backward(self, grad):
        return grad[self.middle]


def _same_kind(name: str, tensors) -> list:
    """Tensors (wrapping constants on the first tensor's device) with one dtype."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{name}: needs at least one tensor")
    first = next((t for t in tensors if isinstance(t, Tensor)), None)
    device = first.device if first is not None else None
    tensors = [t if isinstance(t, Tensor) else Tensor(t, device=device) for t in tensors]
    dtypes = {t.dtype for t in tensors}
    if len(dtypes) > 1:
        floats = sorted(str(d) for d in dtypes if d.kind == "f")
        if len(floats) > 1:
            raise TypeError(f"{name}: cannot mix {' and '.join(floats)} tensors; convert them "
                            f"first with .float() (float32) or .double() (float64)")
        target = floats[0] if floats else np.result_type(*dtypes)  # ints join the float
        tensors = [t.astype(target) for t in tensors]
    return tensors


def concatenate(tensors, axis=0) -> Tensor:
    """Join tensors along an existing ``axis``; the other sizes must match."""
    tensors = _same_kind("concatenate", tensors)
    ndim = tensors[0].ndim
    if ndim == 0:
        raise ValueError("concatenate: zero-dimensional tensors cannot be concatenated; "
                         "use stack")
    axis = normalize_axis(axis, ndim, "concatenate")
    for t in tensors:
        if t.ndim != ndim or t.shape[:axis] + t.shape[axis + 1:] != \
                tensors[0].shape[:axis] + tensors[0].shape[axis + 1:]:
            raise ValueError(f"concatenate: shapes {[t.shape for t in tensors]} differ outside "
                             f"axis {axis}")
    if len(tensors) == 1:
        return tensors[0]
    return Concatenate.apply(*tensors, axis=axis)


cat = concatenate


def stack(tensors, axis=0) -> Tensor:
    """Join same-shaped tensors along a new ``axis``."""
    tensors = _same_kind("stack", tensors)
    if any(t.shape != tensors[0].shape for t in tensors):
        raise ValueError(f"stack: all tensors need the same shape, got "
                         f"{[t.shape for t in tensors]}")
    axis = normalize_axis(axis, tensors[0].ndim + 1, "stack")
    return Stack.apply(*tensors, axis=axis)


def _pieces(x: Tensor, sizes, axis: int) -> list:
    pieces, start = [], 0
    for size in sizes:
        pieces.append(Narrow.apply(x, axis=axis, start=start, stop=start + size))
        start += size
    return pieces


def split(x, sizes_or_sections, axis=0) -> list:
    """Cut x along ``axis``, like ``torch.split``: an int gives pieces of that
    size (the last may be smaller); a list gives pieces of those sizes, which
    must add up to the axis length. ``split(qkv, d, axis=-1)`` → [q, k, v]."""
    x = _tensor(x)
    axis = normalize_axis(axis, x.ndim, "split")
    length = x.shape[axis]
    if isinstance(sizes_or_sections, (list, tuple)):
        sizes = [operator.index(s) for s in sizes_or_sections]
        if any(s < 0 for s in sizes) or sum(sizes) != length:
            raise ValueError(f"split: sizes {sizes} do not add up to {length}, the length of "
                             f"axis {axis} of shape {x.shape}")
    else:
        size = operator.index(sizes_or_sections)
        if size <= 0:
            raise ValueError(f"split: the piece size must be positive, got {size}")
        sizes = [size] * (length // size) + ([length % size] if length % size else [])
    return _pieces(x, sizes, axis)


def chunk(x, n, axis=0) -> list:
    """Cut x into ``n`` pieces along ``axis``, like ``torch.chunk``: each piece
    has ⌈length / n⌉ elements except a smaller last one (so fewer than ``n``
    pieces come back when the length is too short to make n)."""
    x = _tensor(x)
    n = operator.index(n)
    if n <= 0:
        raise ValueError(f"chunk: the number of pieces must be positive, got {n}")
    axis = normalize_axis(axis, x.ndim, "chunk")
    return split(x, max(1, -(-x.shape[axis] // n)), axis)


def pad(x, pad_width, value=0.0) -> Tensor:
    """Pad with a constant. ``pad_width`` follows NumPy: ((before, after), …)
    with one pair per axis, or one pair / one int for every axis."""
    x = _tensor(x)
    try:
        widths = np.broadcast_to(np.asarray(pad_width, dtype=np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(f"pad: pad_width {pad_width!r} does not give (before, after) for each "
                         f"of the {x.ndim} axes of shape {x.shape}") from None
    if (widths < 0).any():
        raise ValueError(f"pad: pad widths must be >= 0, got {pad_width!r}")
    return Pad.apply(x, pad_width=tuple(map(tuple, widths.tolist())), value=value)

