"""Modules: objects that own parameters and compute something with them.

A :class:`Module` is a piece of a model (a layer, a block, the whole model).
Assigning a :class:`Parameter` or another ``Module`` to one of its attributes
*registers* it, so the module can list every parameter it and its children
own::

    class MLP(Module):
        def __init__(self):
            super().__init__()
            self.fc1 = Linear(4, 16)      # registered as child "fc1"
            self.fc2 = Linear(16, 2)      # registered as child "fc2"

        def forward(self, x):
            return self.fc2(self.fc1(x).relu())

    MLP().named_parameters()  # fc1.weight, fc1.bias, fc2.weight, fc2.bias

From that one list come the optimizer's inputs (``parameters()``), the saved
weights (``state_dict()``/``load_state_dict()``), moving to a GPU (``to``)
and switching dropout off for evaluation (``eval()``).

Gradients and ``zero_grad``: ``loss.backward()`` *adds* into each parameter's
``.grad`` (so two backward passes accumulate the sum of their gradients, which
is how gradient accumulation over micro-batches works). ``zero_grad()`` sets
every ``.grad`` back to ``None``; call it once per optimizer step, or the next
step will also use the stale gradients of the previous one.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, NamedTuple

import numpy as np

from .. import backend
from ..tensor import Tensor, no_grad

__all__ = ["Parameter", "Module", "Sequential", "ModuleList", "ModuleDict", "LoadResult",
           "evaluation_mode"]


class Parameter(Tensor):
    """A tensor that a module learns: ``requires_grad=True``.

    Python numbers and lists become float32; an array keeps its dtype (so a
    gradient check can use float64 parameters).
    """

    def __init__(self, data, requires_grad: bool = True, dtype=None, device: str | None = None):
        super().__init__(data, requires_grad=requires_grad, dtype=dtype, device=device)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class LoadResult(NamedTuple):
    """What ``load_state_dict(strict=False)`` skipped."""
    missing_keys: list
    unexpected_keys: list


class Module:
    """Base class of every layer and model: subclasses set attributes in
    ``__init__`` (after ``super().__init__()``) and compute in ``forward``.

    Calling the module, ``module(x)``, calls ``module.forward(x)``.
    """

    training: bool

    def __init__(self):
        # object.__setattr__: our own __setattr__ needs these dicts to exist.
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward() method")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def fused_with(self, following: Module):
        """A function computing ``following(self(x))`` as one operation, or None: this module
        has no fused form with ``following`` (the default). :class:`Sequential` asks each
        child about the next one; a ``Linear`` followed by a ``ReLU`` answers."""

    # ---------------------------------------------------------- registration
    def __setattr__(self, name: str, value) -> None:
        """Attributes are plain attributes; Parameters, Modules and buffers are
        also recorded by name, so the module can find them again."""
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"cannot assign {name!r} before Module.__init__() ran: call "
                                 f"super().__init__() first in {type(self).__name__}.__init__")
        params, modules, buffers = self._parameters, self._modules, self._buffers
        if isinstance(value, (Parameter, Module)):
            self._unregister(name)
            (params if isinstance(value, Parameter) else modules)[name] = value
        elif name in params:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a parameter; assign a "
                                f"Parameter (or None), not a {type(value).__name__}")
            params[name] = None
        elif name in buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"{type(self).__name__}.{name} is a buffer; assign a Tensor "
                                f"(or None), not a {type(value).__name__}")
            buffers[name] = value
        elif name in modules:
            if value is not None:
                raise TypeError(f"{type(self).__name__}.{name} is a sub-module; assign a "
                                f"Module (or None), not a {type(value).__name__}")
            modules[name] = None
        object.__setattr__(self, name, value)

    def __delattr__(self, name: str) -> None:
        self._unregister(name)
        object.__delattr__(self, name)

    def _unregister(self, name: str) -> None:
        for registry in (self._parameters, self._buffers, self._modules):
            registry.pop(name, None)
        self._non_persistent.discard(name)

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Keep a tensor that is part of the module's state but not learnt
        (e.g. a fixed positional table): it moves with ``to()`` and, when
        ``persistent``, is saved in ``state_dict()``. It never gets a gradient."""
        if "_buffers" not in self.__dict__:
            raise AttributeError("call super().__init__() before register_buffer()")
        if name in self._parameters or name in self._modules:
            raise KeyError(f"{name!r} is already a parameter or sub-module of "
                           f"{type(self).__name__}")
        if tensor is not None and not isinstance(tensor, Tensor):
            tensor = Tensor(tensor)
        if tensor is not None and tensor.requires_grad:
            tensor = tensor.detach()
        self._buffers[name] = tensor
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)
        object.__setattr__(self, name, tensor)

    # ---------------------------------------------------------------- walking
    def named_children(self) -> Iterator[tuple[str, "Module"]]:
        for name, module in self._modules.items():
            if module is not None:
                yield name, module

    def children(self) -> Iterator["Module"]:
        for _, module in self.named_children():
            yield module

    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        """This module (name ``prefix``) and every module below it, each once,
        with dotted names such as ``blocks.0.attn``."""
        seen = set()
        stack = [(prefix, self)]
        while stack:  # depth first, children in the order they were assigned
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            children = [(f"{name}.{child_name}" if name else child_name, child)
                        for child_name, child in module.named_children()]
            stack.extend(reversed(children))

    def modules(self) -> Iterator["Module"]:
        for _, module in self.named_modules():
            yield module

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """``(dotted name, parameter)`` pairs; a parameter shared by two
        modules (tied weights) is listed once, under its first name."""
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for module_name, module in modules:
            for name, param in module._parameters.items():
                if param is None or id(param) in seen:
                    continue
                seen.add(id(param))
                yield (f"{module_name}.{name}" if module_name else name), param

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse: bool = True,
                      persistent_only: bool = False) -> Iterator[tuple[str, Tensor]]:
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for module_name, module in modules:
            for name, buffer in module._buffers.items():
                if buffer is None or id(buffer) in seen:
                    continue
                if persistent_only and name in module._non_persistent:
                    continue
                seen.add(id(buffer))
                yield (f"{module_name}.{name}" if module_name else name), buffer

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, buffer in self.named_buffers(recurse):
            yield buffer

    def num_parameters(self, trainable_only: bool = False) -> int:
        """How many numbers the model learns (shared parameters counted once)."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ------------------------------------------------------------------ modes
    def train(self, mode: bool = True) -> "Module":
        """Training mode (dropout active) for this module and all below it."""
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        """Evaluation mode (dropout off): ``train(False)``."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to ``None``: the next ``backward()``
        then starts from nothing instead of adding to the last step's gradients."""
        for param in self.parameters():
            param.grad = None

    # ----------------------------------------------------------------- device
    def to(self, device: str | None = None, dtype=None) -> "Module":
        """Move every parameter and buffer to ``device`` and/or cast the
        floating-point ones to ``dtype``, *in place*: the Parameter objects
        stay the same (an optimizer built earlier still holds them), only
        their arrays change. Returns ``self``."""
        if device is not None:
            backend.xp_for(device)  # a clear error for an unknown or missing device
        dtype = None if dtype is None else np.dtype(dtype)
        for tensor in list(self.parameters()) + list(self.buffers()):
            data = tensor.data
            if device is not None:
                data = backend.to_device(data, device)
            if dtype is not None and data.dtype.kind == "f":
                data = data.astype(dtype, copy=False)
            if data is not tensor.data:
                tensor.data = data
                tensor.grad = None  # a gradient of the old device/dtype would be wrong now
        return self

    @property
    def device(self) -> str:
        """The device of the first parameter (or buffer); 'cpu' for an empty module."""
        for tensor in self.parameters():
            return tensor.device
        for tensor in self.buffers():
            return tensor.device
        return "cpu"

    # ------------------------------------------------------------ state dicts
    def state_dict(self) -> dict:
        """Everything needed to rebuild the weights: dotted name → array, for
        every parameter and persistent buffer. The arrays are copies (a
        snapshot: training on does not change them); they stay on the
        module's device."""
        state = {name: param.data.copy() for name, param in self.named_parameters()}
        for name, buffer in self.named_buffers(persistent_only=True):
            state[name] = buffer.data.copy()
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> LoadResult:
        """Copy arrays from ``state`` (name → array or Tensor) into this
        module's parameters and persistent buffers, in place.

        Every problem is reported at once: keys the module has but ``state``
        lacks (missing), keys ``state`` has but the module lacks (unexpected),
        and keys whose shapes differ (both shapes named). With
        ``strict=False`` missing and unexpected keys are allowed and returned;
        a shape mismatch is always an error. Nothing is changed on error.
        """
        targets = dict(self.named_parameters())
        targets.update(self.named_buffers(persistent_only=True))
        missing = [name for name in targets if name not in state]
        unexpected = [name for name in state if name not in targets]
        mismatched = []
        for name, target in targets.items():
            if name in state:
                value = state[name]
                shape = tuple(value.shape)
                if shape != target.shape:
                    mismatched.append(f"{name}: checkpoint {shape} vs model {target.shape}")
                elif (np.dtype(value.dtype).kind == "f") != (target.dtype.kind == "f"):
                    mismatched.append(f"{name}: checkpoint dtype {value.dtype} "
                                      f"vs model dtype {target.dtype}")
        problems = []
        if strict and missing:
            problems.append(f"missing keys (in the model, not in the state): {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys (in the state, not in the model): {unexpected}")
        if mismatched:
            problems.append("mismatched keys: " + "; ".join(mismatched))
        if problems:
            raise ValueError(f"cannot load state into {type(self).__name__}:\n  "
                           + "\n  ".join(problems)
                           + "\nIs this state from a model with the same configuration?")
        for name, target in targets.items():
            if name in state:
                value = state[name]
                value = value.data if isinstance(value, Tensor) else value
                target.data[...] = backend.to_device(value, target.device)
        return LoadResult(missing, unexpected)

    # ------------------------------------------------------------------- repr
    def extra_repr(self) -> str:
        """The layer's own settings, shown in ``repr`` (e.g. ``4, 8, bias=True``)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        for name, module in self.named_children():
            child = repr(module).replace("\n", "\n  ")
            lines.append(f"  ({name}): {child}")
        extra = self.extra_repr()
        if not lines:
            return f"{type(self).__name__}({extra})"
        if extra:
            lines.insert(0, "  " + extra)
        return f"{type(self).__name__}(\n" + "\n".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied one after the other: ``Sequential(a, b)(x) == b(a(x))``.
    Its children are named ``"0"``, ``"1"``, ..."""

    def __init__(self, *modules: Module):
        super().__init__()
        for index, module in enumerate(modules):
            setattr(self, str(index), module)

    def forward(self, x):
        modules = list(self._modules.values())
        i = 0
        while i < len(modules):
            # A pair that has a fused form (Linear → ReLU) runs as one operation.
            fused = modules[i].fused_with(modules[i + 1]) if i + 1 < len(modules) else None
            x = modules[i](x) if fused is None else fused(x)
            i += 1 if fused is None else 2
        return x

    def __getitem__(self, index: int) -> Module:
        return list(self._modules.values())[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))


class ModuleList(Module):
    """A list of modules whose parameters are registered (a plain Python list
    would hide them). Children are named ``"0"``, ``"1"``, ..."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"ModuleList holds Modules, not {type(module).__name__}")
        setattr(self, str(len(self._modules)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def __getitem__(self, index):
        items = list(self._modules.values())
        return ModuleList(items[index]) if isinstance(index, slice) else items[index]

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(list(self._modules.values()))

    def forward(self, *args, **kwargs):
        raise NotImplementedError("a ModuleList has no forward(): iterate over it instead")


class ModuleDict(Module):
    """A dict of modules (string keys) whose parameters are registered.
    Entries are reached with ``d["name"]``, not as attributes."""

    def __init__(self, modules: dict | None = None):
        super().__init__()
        for key, module in (modules or {}).items():
            self[key] = module

    def __setitem__(self, key: str, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(f"ModuleDict holds Modules, not {type(module).__name__}")
        if not isinstance(key, str) or "." in key or not key:
            raise KeyError(f"ModuleDict keys must be non-empty strings without dots, got {key!r}")
        self._modules[key] = module  # not an attribute: a key like "items" must not hide a method

    def __getitem__(self, key: str) -> Module:
        return self._modules[key]

    def __contains__(self, key: str) -> bool:
        return key in self._modules

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._modules))

    def keys(self):
        return self._modules.keys()

    def values(self):
        return self._modules.values()

    def items(self):
        return self._modules.items()

    def forward(self, *args, **kwargs):
        raise NotImplementedError("a ModuleDict has no forward(): call its entries instead")


@contextlib.contextmanager
def evaluation_mode(*modules: Module):
    """``with evaluation_mode(model):`` run ``model`` as it is used after training: in
    ``eval()`` mode (no dropout) and under ``no_grad()`` (no graph), then give every module
    back the mode it had, even if the block raised. Sampling and scoring run inside it."""
    modes = [module.training for module in modules]
    for module in modules:
        module.eval()
    try:
        with no_grad():
            yield
    finally:
        for module, mode in zip(modules, modes):
            module.train(mode)
