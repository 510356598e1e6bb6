"""The graph engine: tensors that remember how they were computed, and the
backward pass that turns that memory into gradients.

A :class:`Tensor` wraps an array (NumPy or CuPy). When it is the result of an
operation on tensors that want gradients, it remembers the :class:`Function`
that made it, and the function remembers its inputs: together they form a
directed acyclic graph from the leaves (parameters, inputs) to the result.

``loss.backward()`` walks that graph from the loss back to the leaves. With
``y = f(x)`` and a scalar loss ``L``, each function turns the gradient of its
output, ``dL/dy``, into the gradient of each input by the chain rule,

    dL/dx = (dL/dy) · (dy/dx),

where the product with the Jacobian ``dy/dx`` is written by hand in the
function's ``backward`` (it is never formed as a matrix). A tensor used by
several functions receives one gradient from each, and they are *added*.

This module knows only the graph, and imports only :mod:`tinymuse.backend`.
The operations themselves (``add``, ``matmul``, ``softmax``, ...) are
``Function`` subclasses in :mod:`tinymuse.ops`, and :mod:`tinymuse.tensor`
gives ``Tensor`` its operators (``+``, ``@``, ``.sum()``, ...) from them.
"""
from __future__ import annotations

import contextlib

import numpy as np

from . import backend

__all__ = ["Tensor", "Function", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast",
           "SliceGradient", "ToDevice", "AsType", "zeros", "ones", "full", "arange", "randn",
           "rand", "zeros_like", "ones_like", "as_tensor"]

_grad_enabled = True


def is_grad_enabled() -> bool:
    """Whether operations record the graph now (False inside ``no_grad``)."""
    return _grad_enabled


class no_grad(contextlib.ContextDecorator):
    """Inside ``with no_grad():`` (or a function decorated with ``@no_grad()``)
    operations record no graph: nothing is kept alive for a backward pass.
    Use it for evaluation, sampling and optimizer updates."""

    mode = False

    def __init__(self):
        self._previous = []  # a stack: one instance may be entered again while active

    def __enter__(self):
        global _grad_enabled
        self._previous.append(_grad_enabled)
        _grad_enabled = self.mode

    def __exit__(self, *exc):
        global _grad_enabled
        _grad_enabled = self._previous.pop()
        return False


class enable_grad(no_grad):
    """Turn graph recording back on inside a ``no_grad`` region."""

    mode = True


def _default_float(array):
    """Python numbers become float32 (the library default); arrays keep their dtype."""
    return array.astype(backend.DEFAULT_DTYPE) if array.dtype == np.float64 else array


class Tensor:
    """An n-dimensional array that can record how it was computed.

    ``Tensor(data)`` accepts Python numbers, nested lists, NumPy or CuPy arrays.
    Python data becomes float32 (integers stay int64); an array keeps its dtype,
    so ``Tensor(np.zeros(3))`` is float64, as a gradient check wants.

    This class holds the data, the gradient, the link into the graph and
    ``backward``. Its operators and array methods (``a + b``, ``a @ b``,
    ``x.sum()``, ``x.reshape(...)``) are attached by the operator table of
    :mod:`tinymuse.tensor`.
    """

    __array_priority__ = 1000  # so `ndarray + Tensor` calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None, device: str | None = None):
        if isinstance(data, Tensor):
            data = data.data
        elif isinstance(data, np.generic):  # a NumPy scalar, e.g. from a full reduction
            data = np.asarray(data)
        xp = backend.get_array_module(data)
        if not isinstance(data, xp.ndarray):  # Python numbers or lists
            data = np.asarray(data)
            data = data.astype(dtype) if dtype is not None else _default_float(data)
            data = backend.to_device(data, device or backend.get_default_device())
        else:
            if dtype is not None:
                data = data.astype(dtype, copy=False)
            if device is not None:
                data = backend.to_device(data, device)
        self.data = data
        self.grad = None
        self._fn: Function | None = None
        self.name: str | None = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    # ----------------------------------------------------------- properties
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def device(self) -> str:
        return backend.device_of(self.data)

    @property
    def xp(self):
        """The array module (numpy or cupy) of this tensor's data."""
        return backend.get_array_module(self.data)

    @property
    def is_leaf(self) -> bool:
        return self._fn is None

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        body = np.array2string(backend.to_numpy(self.data), precision=4, separator=", ",
                               prefix="Tensor(")
        extra = f", device='{self.device}'" if self.device != "cpu" else ""
        if self._fn is _FREED:
            extra += ", fn=<freed by backward>"
        elif self._fn is not None:
            extra += f", fn={type(self._fn).__name__}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}, dtype={self.dtype}{extra})"

    __hash__ = object.__hash__  # tensors are keyed by identity, even with == overloaded

    # ------------------------------------------------------------ conversion
    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and self.dtype.kind != "f":
            raise TypeError(f"only floating-point tensors can require gradients, "
                            f"this one is {self.dtype}; convert it with .float() first")
        self.requires_grad = flag
        return self

    def numpy(self) -> np.ndarray:
        """The values as a NumPy array (copied from the GPU if needed)."""
        return backend.to_numpy(self.data)

    def item(self):
        if self.size != 1:
            raise ValueError(f"item() needs a tensor with one element, this one has shape {self.shape}")
        return self.data.item()

    def tolist(self):
        return self.numpy().tolist()

    def detach(self) -> "Tensor":
        """The same values, cut off from the graph (shares memory)."""
        return Tensor(self.data)

    def to(self, device: str) -> "Tensor":
        """A copy on ``device`` ('cpu' or 'cuda'); gradients flow back across."""
        if device == self.device:
            return self
        return ToDevice.apply(self, device=device)

    def cpu(self) -> "Tensor":
        return self.to("cpu")

    def cuda(self) -> "Tensor":
        return self.to("cuda")

    def astype(self, dtype) -> "Tensor":
        """Cast to ``dtype``; floating casts are differentiable."""
        if np.dtype(dtype) == self.dtype:
            return self
        return AsType.apply(self, dtype=np.dtype(dtype))

    def float(self) -> "Tensor":
        return self.astype(np.float32)

    def double(self) -> "Tensor":
        return self.astype(np.float64)

    def zero_grad(self) -> None:
        """Forget the accumulated gradient (``backward`` adds into ``.grad``)."""
        self.grad = None

    # -------------------------------------------------------------- backward
    def backward(self, grad=None, retain_graph: bool = False) -> None:
        """Compute d(self)/d(leaf) for every leaf that requires a gradient and
        *add* it to that leaf's ``.grad``.

        ``grad`` is dL/d(self); it defaults to 1 for a one-element tensor.
        The graph is freed afterwards unless ``retain_graph=True``.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() called on a tensor that does not require a gradient: "
                               "none of its inputs had requires_grad=True, or it was computed "
                               "under no_grad()")
        if grad is None:
            if self.size != 1:
                raise RuntimeError(f"backward() without a gradient needs a one-element tensor; "
                                   f"this one has shape {self.shape}. Reduce it first "
                                   f"(e.g. loss.mean()) or pass grad=...")
            grad = self.xp.ones_like(self.data)
        else:
            grad = self.xp.asarray(grad.data if isinstance(grad, Tensor) else grad,
                                   dtype=self.dtype)
        if grad.shape != self.shape:
            raise ValueError(f"backward() got a gradient of shape {grad.shape} "
                             f"for a tensor of shape {self.shape}")
        _run_backward(self, grad, retain_graph)


def _topological_order(root: Tensor) -> list[Tensor]:
    """Tensors that need a gradient, every tensor after all of its inputs.

    An explicit stack instead of recursion, so a graph thousands of operations
    deep does not hit Python's recursion limit.
    """
    # BEGIN EXERCISE ch01_ex1
    order, expanded = [], set()
    stack = [(root, False)]
    while stack:
        tensor, inputs_done = stack.pop()
        if inputs_done:
            order.append(tensor)
            continue
        if id(tensor) in expanded:
            continue
        expanded.add(id(tensor))
        stack.append((tensor, True))
        if tensor._fn is not None:
            for parent in tensor._fn.inputs:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in expanded:
                    stack.append((parent, False))
    return order
    # END EXERCISE


def unbroadcast(grad, shape: tuple):
    """Sum ``grad`` down to ``shape``, undoing NumPy broadcasting.

    If ``x`` of shape (3, 1) was broadcast to (2, 3, 4) in the forward pass,
    each of its entries was used 2·4 times, so its gradient is the sum of the
    output gradient over the broadcast axes.
    """
    if grad.shape == shape:
        return grad
    # BEGIN EXERCISE ch01_ex2
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad
    # END EXERCISE


class SliceGradient:
    """The gradient of an input of which an operation read only the slice ``input[index]``:
    ``values`` there, zero everywhere else.

    ``split`` cuts q, k and v out of one fused projection; if the backward of each piece
    returned a zero-filled gradient of the whole input, three full-size arrays would be
    allocated and added up to say what three slices say. A backward returns this instead, and
    the engine adds every piece into one gradient of the input, allocated once.
    """

    __slots__ = ("index", "values")

    def __init__(self, index: tuple, values):
        self.index, self.values = index, values


def _add_slice(grads: dict, owned: dict, parent: Tensor, part: SliceGradient, fn) -> None:
    """grads[parent] += part, in an array of the parent's shape that the engine owns
    (``owned``), so later slices add into it in place."""
    key = id(parent)
    pending = grads.get(key)
    if pending is None or owned.get(key) is not pending:
        buffer = parent.xp.zeros(parent.shape, dtype=parent.dtype)
        if pending is not None:
            buffer += pending
        grads[key] = owned[key] = buffer
    target = grads[key][part.index]
    if target.shape != part.values.shape or part.values.dtype != parent.dtype:
        raise RuntimeError(f"{type(fn).__name__}.backward returned a slice gradient of shape "
                           f"{part.values.shape} and dtype {part.values.dtype} for a slice of "
                           f"shape {target.shape} of an input of dtype {parent.dtype}")
    target += part.values


def _run_backward(root: Tensor, root_grad, retain_graph: bool) -> None:
    grads = {id(root): root_grad}
    owned = {}  # the full-size gradients the engine allocated for slice gradients
    for tensor in reversed(_topological_order(root)):
        grad = grads.pop(id(tensor), None)
        owned.pop(id(tensor), None)
        if grad is None:
            continue
        fn = tensor._fn
        if fn is None:  # a leaf: accumulate into .grad (a fresh array, never aliased)
            # xp.array, not .copy(): NumPy arithmetic on 0-d arrays returns NumPy scalars,
            # and .grad must be an array that clipping and optimizers update in place.
            # BEGIN EXERCISE ch01_ex1
            tensor.grad = (tensor.xp.array(grad) if tensor.grad is None
                           else tensor.xp.asarray(tensor.grad + grad))
            # END EXERCISE
            continue
        input_grads = fn.backward(grad)
        if not isinstance(input_grads, tuple):
            input_grads = (input_grads,)
        if len(input_grads) != len(fn.inputs):
            raise RuntimeError(f"{type(fn).__name__}.backward returned {len(input_grads)} "
                               f"gradients for {len(fn.inputs)} inputs")
        for parent, needed, parent_grad in zip(fn.inputs, fn.needs_input_grad, input_grads):
            if not needed or parent_grad is None:
                continue
            if isinstance(parent_grad, SliceGradient):
                _add_slice(grads, owned, parent, parent_grad, fn)
                continue
            parent_grad = unbroadcast(parent_grad, parent.shape)
            if parent_grad.shape != parent.shape or parent_grad.dtype != parent.dtype:
                raise RuntimeError(
                    f"{type(fn).__name__}.backward returned a gradient of shape "
                    f"{parent_grad.shape} and dtype {parent_grad.dtype} for an input of shape "
                    f"{parent.shape} and dtype {parent.dtype}")
            # BEGIN EXERCISE ch01_ex1
            key = id(parent)
            grads[key] = parent_grad if key not in grads else grads[key] + parent_grad
            # END EXERCISE
        if not retain_graph:
            tensor._fn = _FREED  # drop the saved arrays as soon as they are used


class Function:
    """One differentiable operation.

    Subclasses write ``forward(self, *arrays, **options) -> array`` and
    ``backward(self, grad) -> grad or tuple of grads`` (one per positional input,
    ``None`` for inputs that need none) on raw arrays. Anything ``backward``
    needs is stored on ``self`` in ``forward``. ``self.needs_input_grad`` tells
    ``forward`` which inputs want gradients, so it can skip saving the rest.

    ``backward`` must never write into ``grad``: the engine may hand the same
    array to several functions (``add`` returns it for both of its inputs).
    It may return a gradient of the *broadcast* shape: the engine
    sums it down to the input's shape (see :func:`unbroadcast`) and checks it.
    Users call ``MyFunction.apply(*inputs, **options)``, which records the graph
    only when a gradient is wanted.
    """

    inputs: tuple = ()
    needs_input_grad: tuple = ()

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    @classmethod
    def apply(cls, *args, **kwargs) -> Tensor:
        fn = cls()
        arrays, devices = [], set()
        for a in args:
            if isinstance(a, Tensor):
                arrays.append(a.data)
                devices.add(a.device)
            else:
                arrays.append(a)
        if len(devices) > 1 and cls is not ToDevice:
            shapes = [(a.device, a.shape) for a in args if isinstance(a, Tensor)]
            raise RuntimeError(f"{cls.__name__} got tensors on different devices {shapes}; "
                               f"move them to one device with .to('cpu') or .to('cuda')")
        needs = tuple(isinstance(a, Tensor) and a.requires_grad for a in args)
        record = _grad_enabled and any(needs)
        fn.needs_input_grad = needs
        out = Tensor(fn.forward(*arrays, **kwargs))
        if record:
            fn.inputs = args
            out._fn = fn
            out.requires_grad = True
        return out


class _FreedGraph(Function):
    """Stands in for a function whose saved arrays were freed by ``backward``."""

    def backward(self, grad):
        raise RuntimeError("backward() through a graph a second time: its saved values were "
                           "freed by the first backward(). Pass retain_graph=True to the first "
                           "call if you need two backward passes.")


_FREED = _FreedGraph()


class ToDevice(Function):
    def forward(self, x, device):
        self.source = backend.device_of(x)
        return backend.to_device(x, device)

    def backward(self, grad):
        return backend.to_device(grad, self.source)


class AsType(Function):
    def forward(self, x, dtype):
        self.source = x.dtype
        return x.astype(dtype)

    def backward(self, grad):
        return grad.astype(self.source) if self.source.kind == "f" else None


# ------------------------------------------------------------- constructors
def _make(fill, shape, dtype, device, requires_grad):
    xp = backend.xp_for(device or backend.get_default_device())
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(fill(xp, shape, dtype or backend.DEFAULT_DTYPE), requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(lambda xp, s, d: xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(lambda xp, s, d: xp.ones(s, d), shape, dtype, device, requires_grad)


def full(shape, value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _make(lambda xp, s, d: xp.full(s, value, d), (shape,), dtype, device, requires_grad)


def arange(*args, dtype=np.int64, device=None) -> Tensor:
    xp = backend.xp_for(device or backend.get_default_device())
    return Tensor(xp.arange(*args, dtype=dtype))


def randn(*shape, dtype=None, device=None, generator=None, requires_grad=False) -> Tensor:
    gen = generator or backend.default_generator
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(gen.normal(shape, dtype=dtype or backend.DEFAULT_DTYPE, device=device),
                  requires_grad=requires_grad)


def rand(*shape, dtype=None, device=None, generator=None, requires_grad=False) -> Tensor:
    gen = generator or backend.default_generator
    shape = tuple(shape[0]) if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
    return Tensor(gen.random(shape, dtype=dtype or backend.DEFAULT_DTYPE, device=device),
                  requires_grad=requires_grad)


def zeros_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(t.xp.zeros_like(t.data), requires_grad=requires_grad)


def ones_like(t: Tensor, requires_grad=False) -> Tensor:
    return Tensor(t.xp.ones_like(t.data), requires_grad=requires_grad)


def as_tensor(x, device=None) -> Tensor:
    """``x`` itself if it is a Tensor, otherwise a new constant Tensor."""
    return x if isinstance(x, Tensor) else Tensor(x, device=device)
