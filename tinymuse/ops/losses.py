"""Loss functions: cross-entropy (fused with log-softmax), mean squared error, L1.

Cross-entropy takes logits with the class axis LAST, shape (..., C), and integer
targets of shape (...): exactly what a transformer predicting one of C tokens at
every position produces. (PyTorch puts the class axis second; to use (N, C, H, W)
logits here, move the class axis to the end first.)
"""
from __future__ import annotations

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["cross_entropy", "mse_loss", "l1_loss"]

REDUCTIONS = ("mean", "sum", "none")


def _data(x):
    return x.data if isinstance(x, Tensor) else x


def _check_reduction(name, reduction):
    if reduction not in REDUCTIONS:
        raise ValueError(f"{name}: reduction must be one of {REDUCTIONS}, got {reduction!r}")


def position_weights(targets, weight, ignore_index: int, num_classes: int, dtype):
    """Flattened targets that are safe to index with, and the weight w of every
    position: ``weight`` (1 where None) times 0 where the target is ``ignore_index``.

    Shared by the fused and the composed cross-entropy, so both check their
    inputs the same way.
    """
    xp = backend.get_array_module(targets)
    targets = targets.reshape(-1)
    ignored = targets == ignore_index
    safe = xp.where(ignored, 0, targets)
    if safe.size and (int(safe.min()) < 0 or int(safe.max()) >= num_classes):
        raise IndexError(f"cross_entropy: targets must be class indices in [0, {num_classes}) "
                         f"or ignore_index={ignore_index}, got values from {int(safe.min())} "
                         f"to {int(safe.max())}")
    w = (~ignored).astype(dtype)
    if weight is not None:
        w *= weight.reshape(-1)
    return safe, w


def check_cross_entropy_args(logits, targets, weight, label_smoothing, reduction):
    """Validate the arguments of cross_entropy; return (targets, weight) as
    arrays on the logits' device, the weight broadcast to the targets' shape."""
    _check_reduction("cross_entropy", reduction)
    targets, weight = _data(targets), _data(weight)
    xp = logits.xp
    if not hasattr(targets, "dtype"):
        targets = xp.asarray(targets)
    if targets.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy: targets must be integer class indices, "
                        f"got dtype {targets.dtype}")
    if logits.ndim < 1 or tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"cross_entropy expects logits (..., C) with the class axis last and "
                         f"targets (...) matching the leading axes; got logits {logits.shape} and "
                         f"targets {targets.shape}. Logits shaped (N, C, H, W) need their class "
                         f"axis moved last, e.g. logits.permute(0, 2, 3, 1)")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if weight is not None and not hasattr(weight, "dtype"):
        weight = xp.asarray(weight)
    for name, array in (("targets", targets), ("weight", weight)):
        if array is not None and backend.device_of(array) != logits.device:
            raise RuntimeError(f"cross_entropy: {name} is on {backend.device_of(array)} but the "
                               f"logits are on {logits.device}; move it with "
                               f".to('{logits.device}')")
    if weight is not None:
        try:
            weight = xp.broadcast_to(weight, targets.shape)
        except ValueError:
            raise ValueError(f"cross_entropy: weight of shape {weight.shape} does not broadcast "
                             f"to the targets' shape {targets.shape}") from None
    return targets, weight


def mean_normalizer(w):
    """Σ w, the denominator of the mean; an error, not NaN, when it is 0."""
    total = w.sum()
    if float(total) == 0.0:
        raise ValueError("cross_entropy(reduction='mean'): no position contributes to the loss "
                         "(every target is ignore_index or has weight 0), so the mean is "
                         "undefined. Check the mask, or use reduction='sum'.")
    return total


class CrossEntropy(Function):
    """Softmax and cross-entropy in one step.

    For one position with logits z (C classes), target t, smoothing ε and the
    target distribution q = (1 − ε)·onehot(t) + ε/C (Szegedy et al., 2016):

        loss = −Σ_c q_c log p_c = lse(z) − (1 − ε)·z_t − ε·mean_c(z),

    with p = softmax(z) and lse(z) = log Σ_c exp z_c. The gradient is simply

        dloss/dz = p − q,

    so no log-probabilities are ever stored, only e = exp(z − max z) and its row sums
    S: p = e / S is formed in the backward, where the division joins the scaling of each
    position by its weight w (the mean divides by Σ w): one pass over the logits fewer.
    """

    def forward(self, logits, targets=None, weight=None, ignore_index=-100,
                label_smoothing=0.0, reduction="mean"):
        xp = backend.get_array_module(logits)
        classes = logits.shape[-1]
        z = logits.reshape(-1, classes)
        safe, w = position_weights(targets, weight, ignore_index, classes, logits.dtype)
        rows = xp.arange(z.shape[0])
        e = z - z.max(axis=1, keepdims=True)                # a new array: exp'd in place below
        loss = -(1.0 - label_smoothing) * e[rows, safe]
        if label_smoothing:
            loss -= label_smoothing * e.mean(axis=1)
        xp.exp(e, out=e)
        total = e.sum(axis=1)
        loss += xp.log(total)
        loss *= w
        if reduction == "mean":
            self.normalizer = mean_normalizer(w)
            out = loss.sum() / self.normalizer
        elif reduction == "sum":
            out = loss.sum()
        else:
            out = loss.reshape(targets.shape)
        self.e, self.total, self.safe, self.w, self.rows = e, total, safe, w, rows
        self.label_smoothing, self.reduction, self.shape = label_smoothing, reduction, logits.shape
        return out

    def backward(self, grad):
        eps, classes = self.label_smoothing, self.e.shape[1]
        if self.reduction == "mean":
            scale = self.w * (grad / self.normalizer)
        else:
            scale = self.w * grad.reshape(-1)
        dz = self.e * (scale / self.total)[:, None]              # p·s = e·(s / S)
        dz[self.rows, self.safe] -= (1.0 - eps) * scale           # − (1 − ε)·onehot·s
        if eps:
            dz -= (eps / classes) * scale[:, None]                # − (ε/C)·s
        return dz.reshape(self.shape)


def cross_entropy(logits: Tensor, targets, weight=None, ignore_index: int = -100,
                  label_smoothing: float = 0.0, reduction: str = "mean") -> Tensor:
    """Cross-entropy between softmax(logits) and integer targets.

    Args:
        logits: (..., C), the class axis LAST (a transformer's output).
        targets: integer class indices of shape (...), an array or a Tensor.
        weight: optional per-position weight, broadcastable to the targets'
            shape; a constant (no gradient). A 0/1 mask selects the positions
            that count, e.g. 1 on masked image tokens and 0 elsewhere.
        ignore_index: positions whose target equals it contribute nothing.
        label_smoothing: ε; the target distribution is (1 − ε)·onehot + ε/C.
        reduction: "mean", "sum" or "none".

    With w_i = weight_i · [target_i ≠ ignore_index] and ℓ_i the cross-entropy
    at position i:

        "mean": Σ_i w_i ℓ_i / Σ_i w_i   (a ValueError if Σ_i w_i = 0),
        "sum":  Σ_i w_i ℓ_i,
        "none": w_i ℓ_i, shaped like the targets.

    So with a 0/1 mask the mean is over the masked positions only, and without
    weight or ignored targets it is the plain average over all positions.
    """
    targets, weight = check_cross_entropy_args(logits, targets, weight, label_smoothing, reduction)
    return CrossEntropy.apply(logits, targets=targets, weight=weight, ignore_index=ignore_index,
                              label_smoothing=label_smoothing, reduction=reduction)


# --------------------------------------------------------- regression losses
def _reduce(values, reduction):
    if reduction == "mean":
        return values.mean()
    if reduction == "sum":
        return values.sum()
    return values


def _reduce_backward(grad, size: int, reduction):
    """g, the upstream gradient as it reaches each of the ``size`` elements:
    dL/dy / n for a mean, dL/dy itself for a sum or no reduction."""
    return grad / size if reduction == "mean" else grad


class MSELoss(Function):
    """reduce((a − b)²); d/da = 2(a − b)·g, d/db = −d/da."""

    def forward(self, a, b, reduction="mean"):
        self.diff, self.reduction = a - b, reduction
        return _reduce(self.diff * self.diff, reduction)

    def backward(self, grad):
        g = _reduce_backward(grad, self.diff.size, self.reduction)
        da = 2 * self.diff * g
        return da, (-da if self.needs_input_grad[1] else None)


class L1Loss(Function):
    """reduce(|a − b|); d/da = sign(a − b)·g (0 where a = b), d/db = −d/da."""

    def forward(self, a, b, reduction="mean"):
        xp = backend.get_array_module(a)
        diff = a - b
        self.sign, self.reduction = xp.sign(diff), reduction
        return _reduce(xp.abs(diff), reduction)

    def backward(self, grad):
        g = _reduce_backward(grad, self.sign.size, self.reduction)
        da = self.sign * g
        return da, (-da if self.needs_input_grad[1] else None)


def _regression(name, fn, a, b, reduction):
    _check_reduction(name, reduction)
    if not isinstance(a, Tensor):
        a = Tensor(a, device=b.device if isinstance(b, Tensor) else None)
    if not isinstance(b, Tensor):
        b = Tensor(b, device=a.device)
    if a.shape != b.shape:
        raise ValueError(f"{name}: prediction {a.shape} and target {b.shape} differ in shape; "
                         f"broadcasting them is almost always a bug, so reshape one first")
    return fn.apply(a, b, reduction=reduction)


def mse_loss(a: Tensor, b: Tensor, reduction: str = "mean") -> Tensor:
    """Mean squared error, reduce((a − b)²), for tensors of the same shape."""
    return _regression("mse_loss", MSELoss, a, b, reduction)


def l1_loss(a: Tensor, b: Tensor, reduction: str = "mean") -> Tensor:
    """Mean absolute error, reduce(|a − b|), for tensors of the same shape."""
    return _regression("l1_loss", L1Loss, a, b, reduction)
