"""Optimizers, learning-rate schedules and gradient clipping.

An optimizer turns the gradients left in ``param.grad`` by ``loss.backward()``
into an update of ``param.data``. A training step is::

    optimizer.zero_grad()          # forget the last step's gradients (backward *adds*)
    loss = model_loss(batch)
    loss.backward()                # fills param.grad
    clip_grad_norm(model.parameters(), 1.0)
    optimizer.step()               # param.data -= ...
    scheduler.step()               # learning rate for the next step

Updates work on the raw arrays, in place, with the parameter's own array
module (NumPy or CuPy) and no autograd graph: an update is not something to
differentiate through.

Parameters can be split into *groups* that each have their own settings, e.g.
``AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay,
"weight_decay": 0.0}], lr=3e-4)``; :func:`weight_decay_groups` builds exactly
that split for a model.
"""
from __future__ import annotations

import contextlib
import math
import warnings
from types import SimpleNamespace

import numpy as np

from . import backend, nn
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdamW", "FlatGroup", "weight_decay_groups", "warmup_cosine_lr",
           "WarmupCosine", "clip_grad_norm", "EMA"]


class Optimizer:
    """Base class: holds parameter groups and per-parameter state.

    ``params`` is an iterable of parameters, or of dicts ``{"params": [...],
    <setting>: value}``; a setting missing from a group takes the
    optimizer's default. Subclasses write ``_update(param, grad, state, group)``.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        self.param_groups: list[dict] = []
        self.state: dict[int, dict] = {}  # id(param) -> that parameter's state
        params = [params] if isinstance(params, Tensor) else list(params)
        if not params:
            raise ValueError(f"{type(self).__name__} got no parameters to optimize")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        unknown = set(group) - set(self.defaults) - {"params"}
        if unknown:
            raise ValueError(f"{type(self).__name__} has no setting(s) {sorted(unknown)}; "
                             f"it knows {sorted(self.defaults)}")
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else list(params)
        known = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"{type(self).__name__} optimizes Tensors/Parameters, "
                                f"got a {type(p).__name__}")
            if id(p) in known:
                raise ValueError(f"a parameter of shape {p.shape} appears in two parameter "
                                 f"groups (or twice in one); give each parameter one group")
            known.add(id(p))
        self.param_groups.append({**self.defaults, **group, "params": params})

    def parameters(self):
        """Every parameter, group by group, in order (their index in ``state_dict``)."""
        for group in self.param_groups:
            yield from group["params"]

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None (``backward`` adds into it)."""
        for p in self.parameters():
            p.grad = None

    def step(self) -> None:
        """Update every parameter that has a gradient; others are left alone."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _update(self, param: Tensor, grad, state: dict, group: dict) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------ state dicts
    def state_dict(self) -> dict:
        """``{"param_groups": [settings per group (JSON-able)], "state":
        {"<index>.<name>": array}}``, where ``index`` counts parameters across
        groups in order. Step counts are 0-d int64 arrays, so the whole
        ``state`` fits in a safetensors file. Arrays are copies."""
        groups = [{**{k: v for k, v in g.items() if k != "params"},
                   "num_params": len(g["params"])} for g in self.param_groups]
        state = {}
        for index, p in enumerate(self.parameters()):
            for name, value in self.state.get(id(p), {}).items():
                state[f"{index}.{name}"] = (np.array(value, dtype=np.int64)
                                            if isinstance(value, int) else value.copy())
        return {"param_groups": groups, "state": state}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore settings and per-parameter state saved by ``state_dict()``
        from an optimizer built the same way (same groups, same parameter
        order). Arrays are copied to each parameter's device and dtype."""
        groups, saved = state_dict["param_groups"], state_dict["state"]
        name = type(self).__name__
        if len(groups) != len(self.param_groups):
            raise ValueError(f"{name} state has {len(groups)} parameter groups, this optimizer "
                             f"has {len(self.param_groups)}")
        for i, (group, mine) in enumerate(zip(groups, self.param_groups)):
            if group["num_params"] != len(mine["params"]):
                raise ValueError(f"{name} state: group {i} has {group['num_params']} parameters "
                                 f"in the state but {len(mine['params'])} here; was the "
                                 f"optimizer built from a different model?")
        params = list(self.parameters())
        new_state: dict[int, dict] = {}
        for key, value in saved.items():
            index, _, slot = key.partition(".")
            if not index.isdigit() or int(index) >= len(params) or not slot:
                raise ValueError(f"{name} state has an unexpected entry {key!r}")
            p = params[int(index)]
            value = value.data if isinstance(value, Tensor) else value
            if value.ndim == 0 and np.dtype(value.dtype).kind in "iu":  # a step count
                restored = int(value)
            elif tuple(value.shape) != p.shape:
                raise ValueError(f"{name} state {key!r} has shape {tuple(value.shape)} but "
                                 f"parameter {index} has shape {p.shape}")
            else:
                restored = backend.to_device(value, p.device).astype(p.dtype, copy=True)
            new_state.setdefault(id(p), {})[slot] = restored
        for group, mine in zip(groups, self.param_groups):
            for key, value in group.items():
                if key != "num_params":
                    mine[key] = tuple(value) if isinstance(value, list) else value
        self.state = new_state


class SGD(Optimizer):
    """Stochastic gradient descent with momentum and (L2) weight decay:

        g ← g + λ θ                 (weight_decay λ, added to the gradient)
        b ← μ b + g                 (momentum μ; b starts at 0)
        θ ← θ − lr · b

    With μ = 0 this is plain θ ← θ − lr · g. The velocity ``b`` remembers past
    gradients, so steps along a consistent direction grow to lr / (1 − μ).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        if lr < 0 or not 0 <= momentum < 1 or weight_decay < 0:
            raise ValueError(f"SGD needs lr >= 0, 0 <= momentum < 1, weight_decay >= 0; got "
                             f"lr={lr}, momentum={momentum}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": weight_decay})

    def _update(self, param, grad, state, group):
        lr, momentum, weight_decay = group["lr"], group["momentum"], group["weight_decay"]
        theta = param.data
        if weight_decay:
            grad = grad + weight_decay * theta  # a new array: never change param.grad
        if momentum:
            if "momentum_buffer" not in state:
                state["momentum_buffer"] = backend.get_array_module(theta).zeros_like(theta)
            buffer = state["momentum_buffer"]
            buffer *= momentum
            buffer += grad
            grad = buffer
        theta -= lr * grad


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter, 2019).

    With gradient g at step t (counted from 1):

        m ← β₁ m + (1 − β₁) g                 running mean of gradients
        v ← β₂ v + (1 − β₂) g²                running mean of squared gradients
        m̂ = m / (1 − β₁ᵗ),  v̂ = v / (1 − β₂ᵗ)  bias correction (m, v start at 0)
        θ ← θ − lr · λ · θ                    decoupled weight decay
        θ ← θ − lr · m̂ / (√v̂ + ε)

    Each parameter moves by about ``lr`` per step whatever its gradient's
    scale. The decay shrinks the weights directly instead of being added to g
    (where Adam's scaling would weaken it for parameters with large gradients);
    as in PyTorch it is multiplied by the current lr, so a schedule scales it too.

    ``fused=True`` (what :func:`tinymuse.training.fit` uses) computes the same update for a
    whole parameter group at once, over flat arrays holding all of its parameters, moments
    and gradients (the idea of PyTorch's ``foreach`` and ``fused`` optimizers): about a
    dozen array operations per group and step instead of a dozen per parameter, which is
    what a GPU's step is made of. Each element goes through the same operations in the same
    order, so the result is the per-parameter update's, to the last bit; so is the saved
    state. See :class:`FlatGroup`.
    """

    def __init__(self, params, lr: float = 1e-3, betas: tuple = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01, fused: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"AdamW needs lr, eps, weight_decay >= 0 and betas in [0, 1); got "
                             f"lr={lr}, betas={betas}, eps={eps}, weight_decay={weight_decay}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "eps": eps,
                                  "weight_decay": weight_decay})
        self.fused = fused
        self._flat: dict[int, FlatGroup] = {}  # group index -> its flat arrays, made on use

    def step(self) -> None:
        """Update every parameter that has a gradient (see the class docstring for ``fused``)."""
        if not self.fused:
            return super().step()
        for index, group in enumerate(self.param_groups):
            params = [p for p in group["params"] if p.grad is not None]
            flat = self._flat_group(index, group) if params else None
            if flat is not None and len(params) == len(group["params"]) and flat.in_step():
                flat.update(group, self._update)
            else:  # some parameters without a gradient, or counting different steps
                for p in params:
                    self._update(p, p.grad, self.state.setdefault(id(p), {}), group)

    def _flat_group(self, index: int, group: dict) -> FlatGroup | None:
        """The group's flat arrays, (re)built when a parameter's array or state was replaced
        (``load_state_dict``, ``Module.to``); None for a group that mixes devices or dtypes."""
        params = group["params"]
        if len({(p.device, p.dtype) for p in params}) != 1:
            return None
        flat = self._flat.get(index)
        if flat is None or not flat.holds(params, self.state):
            flat = self._flat[index] = FlatGroup(params, self.state)
        return flat

    def _update(self, param, grad, state, group):
        lr, (beta1, beta2), eps = group["lr"], group["betas"], group["eps"]
        theta = param.data
        xp = backend.get_array_module(theta)
        # BEGIN EXERCISE ch02_ex3
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(theta)
            state["exp_avg_sq"] = xp.zeros_like(theta)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        # Python floats keep float32 arrays float32. One scratch array, reused.
        scratch = xp.multiply(grad, 1.0 - beta1, out=xp.empty_like(theta))
        m *= beta1
        m += scratch                                          # m = β₁m + (1−β₁)g
        xp.multiply(grad, grad, out=scratch)
        scratch *= 1.0 - beta2
        v *= beta2
        v += scratch                                          # v = β₂v + (1−β₂)g²
        if group["weight_decay"]:
            theta *= 1.0 - lr * group["weight_decay"]         # θ = θ − lr·λ·θ
        bias1, bias2 = 1.0 - beta1 ** t, 1.0 - beta2 ** t
        xp.sqrt(v, out=scratch)
        scratch *= 1.0 / math.sqrt(bias2)
        scratch += eps                                        # √v̂ + ε
        xp.divide(m, scratch, out=scratch)
        scratch *= lr / bias1                                 # lr · m̂ / (√v̂ + ε)
        theta -= scratch
        # END EXERCISE


class FlatGroup:
    """One parameter group of a fused :class:`AdamW`, laid out flat.

    Three arrays hold every parameter of the group end to end: θ, m and v; each parameter's
    ``.data`` and its ``exp_avg`` and ``exp_avg_sq`` state become views (pieces) of them, so
    the model, the saved state and the update all see the same numbers. A fourth array
    receives the gradients, copied in once per step (one concatenation). The update is then
    the per-parameter one, :meth:`AdamW._update`, run on the flat arrays as if the whole
    group were one parameter: the same operations for every element, in the same order, so
    the same bits; on a GPU each of its dozen operations is one kernel over the group, and on
    a CPU each thread runs it on its own slice of the arrays.
    """

    def __init__(self, params: list, state: dict):
        xp = params[0].xp
        sizes = [p.size for p in params]
        self.params, self.bounds = params, np.cumsum([0] + sizes).tolist()
        self.theta = xp.concatenate([p.data.ravel() for p in params])
        self.grad = xp.empty_like(self.theta)
        moments = []
        for name in ("exp_avg", "exp_avg_sq"):
            pieces = [state.get(id(p), {}).get(name) for p in params]
            moments.append(xp.concatenate(
                [xp.zeros(p.size, p.dtype) if a is None else
                 backend.to_device(a, p.device).astype(p.dtype, copy=False).ravel()
                 for p, a in zip(params, pieces)]))
        self.m, self.v = moments
        self.pieces, self.state = [], []
        for i, p in enumerate(params):
            pieces = [self._piece(flat, i) for flat in (self.theta, self.m, self.v)]
            entry = state.setdefault(id(p), {})
            entry.setdefault("step", 0)
            p.data, entry["exp_avg"], entry["exp_avg_sq"] = pieces
            self.pieces.append(pieces)
            self.state.append(entry)

    def _piece(self, flat, i: int):
        return flat[self.bounds[i]:self.bounds[i + 1]].reshape(self.params[i].shape)

    def holds(self, params: list, state: dict) -> bool:
        """Whether ``params`` and their state still live in these arrays."""
        return len(params) == len(self.params) and all(
            p is mine and state.get(id(p)) is entry and p.data is theta
            and entry.get("exp_avg") is m and entry.get("exp_avg_sq") is v
            for p, mine, entry, (theta, m, v) in zip(params, self.params, self.state,
                                                     self.pieces))

    def in_step(self) -> bool:
        """Whether every parameter of the group has taken the same number of steps."""
        return len({entry["step"] for entry in self.state}) == 1

    def update(self, group: dict, update_one) -> None:
        """One AdamW step of the whole group: ``update_one`` (:meth:`AdamW._update`, the
        equations of :class:`AdamW`) run on the flat arrays, as on one parameter."""
        xp = backend.get_array_module(self.theta)
        xp.concatenate([p.grad.ravel() for p in self.params], out=self.grad)
        step = self.state[0]["step"]

        def update_piece(piece):
            state = {"step": step, "exp_avg": self.m[piece], "exp_avg_sq": self.v[piece]}
            update_one(SimpleNamespace(data=self.theta[piece]), self.grad[piece], state, group)

        # On the CPU the flat arrays are cut into one piece per thread, updated side by side;
        # every element takes the same operations, so the bits do not depend on the cut.
        size = self.theta.size
        backend.run_in_parallel(update_piece, backend.thread_slices(xp, size, size))
        for entry in self.state:
            entry["step"] = step + 1


def weight_decay_groups(model, weight_decay: float) -> list[dict]:
    """Two parameter groups for an optimizer: the weight matrices of
    ``Linear`` and ``Conv2d`` layers get ``weight_decay``; everything else
    (biases, norm gains and biases, embeddings, any other parameter such as a
    positional table or a mask token) gets none.

    Decay pulls weights toward 0; that regularises the matrices that mix
    features, but would only distort a bias, a norm's scale, or an embedding
    row (which gets a gradient only when its token appears). Frozen
    parameters (``requires_grad=False``) are left out. A parameter shared by
    two modules goes by the first module that owns it.
    """
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        for name, param in module.named_parameters(recurse=False):
            if id(param) in seen or not param.requires_grad:
                continue
            seen.add(id(param))
            decays = isinstance(module, (nn.Linear, nn.Conv2d)) and name == "weight"
            (decay if decays else no_decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def warmup_cosine_lr(step: int, base_lr: float, warmup_steps: int, total_steps: int,
                     min_lr: float = 0.0) -> float:
    """The learning rate for optimizer step ``step`` (0 for the first update):

    - linear warm-up: ``base_lr · (step + 1) / warmup_steps`` for step < warmup_steps
      (small steps while Adam's moment estimates are still noisy), reaching
      ``base_lr`` at the last warm-up step;
    - cosine decay from ``base_lr`` at ``warmup_steps`` to ``min_lr`` at
      ``total_steps``:  min_lr + (base_lr − min_lr) · (1 + cos(π · p)) / 2,
      p = (step − warmup_steps) / (total_steps − warmup_steps);
    - ``min_lr`` from ``total_steps`` on.
    """
    if not 0 <= warmup_steps <= total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps, got warmup_steps="
                         f"{warmup_steps}, total_steps={total_steps}")
    if not 0 <= min_lr <= base_lr:
        raise ValueError(f"need 0 <= min_lr <= base_lr, got min_lr={min_lr}, base_lr={base_lr}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    # BEGIN EXERCISE ch02_ex4
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (base_lr - min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
    # END EXERCISE


class WarmupCosine:
    """Sets each group's ``lr`` by :func:`warmup_cosine_lr`, with the group's
    lr at construction as its ``base_lr`` and ``min_lr = min_lr_ratio · base_lr``.

    It sets the lr for step 0 at once; call ``step()`` after each
    ``optimizer.step()`` to move to the next step's lr.
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_lr_ratio: float = 0.0):
        self.optimizer = optimizer
        self.warmup_steps, self.total_steps, self.min_lr_ratio = (
            warmup_steps, total_steps, min_lr_ratio)
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.step_count = 0  # the optimizer step the current lrs are for
        self._set_lrs()

    def lrs(self) -> list[float]:
        """The learning rates for step ``step_count``, one per group."""
        return [warmup_cosine_lr(self.step_count, base, self.warmup_steps, self.total_steps,
                                 base * self.min_lr_ratio) for base in self.base_lrs]

    def _set_lrs(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.lrs()):
            group["lr"] = lr

    def step(self) -> None:
        self.step_count += 1
        self._set_lrs()

    def state_dict(self) -> dict:
        """Where the schedule is (JSON-able)."""
        return {"step_count": self.step_count, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.step_count = int(state["step_count"])
        self.base_lrs = [float(lr) for lr in state["base_lrs"]]
        self._set_lrs()


def clip_grad_norm(parameters, max_norm: float, error_if_nonfinite: bool = True) -> float:
    """Scale all gradients together so that their global L2 norm

        ‖g‖ = √(Σ_params Σ_elements g²)

    is at most ``max_norm``; returns ‖g‖ from *before* clipping (worth
    logging: spikes warn of instability). Scaling all gradients by one factor
    keeps the update's direction and only shortens it.

    A NaN or infinite norm means the loss or the model diverged: by default
    that raises; with ``error_if_nonfinite=False`` it warns, leaves the
    gradients untouched and returns the norm, so the caller can skip the step.
    """
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    # vdot: a BLAS dot product, Σ g² without a temporary; the per-parameter sums
    # are added in float64 and read back once (one device sync on a GPU).
    xp = backend.get_array_module(grads[0])
    squares = xp.stack([xp.vdot(g.ravel(), g.ravel()) for g in grads])
    total = math.sqrt(float(squares.sum(dtype=xp.float64)))
    if not math.isfinite(total):
        message = (f"gradient norm is {total}: the loss or the model produced NaN/inf. Lower "
                   f"the learning rate, check the inputs and loss, or clip earlier")
        if error_if_nonfinite:
            raise FloatingPointError(message + " (pass error_if_nonfinite=False to skip the "
                                     "step instead of raising)")
        warnings.warn(message + "; gradients were left unclipped", RuntimeWarning, stacklevel=2)
        return total
    if total > max_norm:
        scale = max_norm / (total + 1e-6)
        for g in grads:
            g *= scale
    return total


class EMA(nn.Module):
    """An exponential moving average of a model's trainable weights (Polyak averaging):

        θ_ema ← d · θ_ema + (1 − d) · θ     after every optimizer step.

    The average is smoother than the latest weights and often samples better. It is kept
    as buffers (one per trainable parameter) so it is saved with the training state;
    :meth:`swapped_into` lends it to the model for sampling.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        for name, param in model.named_parameters():
            if param.requires_grad:
                self.register_buffer(self._key(name), Tensor(param.data.copy()))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")  # a buffer name cannot hold a dot

    def _pairs(self, model):
        params = dict(model.named_parameters())
        return [(getattr(self, self._key(name)), params[name]) for name in self.names]

    def update(self, model: nn.Module) -> None:
        """One averaging step, after an optimizer step: θ_ema += (1 − d)(θ − θ_ema)."""
        for average, param in self._pairs(model):
            average.data += (1.0 - self.decay) * (param.data - average.data)

    @contextlib.contextmanager
    def swapped_into(self, model: nn.Module):
        """``with ema.swapped_into(model): ...`` runs with the averaged weights in ``model``
        and puts the trained weights back afterwards (only array references move)."""
        saved = [(param, param.data) for _, param in self._pairs(model)]
        for average, param in self._pairs(model):
            param.data = average.data
        try:
            yield model
        finally:
            for param, data in saved:
                param.data = data
