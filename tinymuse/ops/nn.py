"""Neural-network operations: softmax, embedding lookup, dropout, convolution,
pooling and upsampling.

Each is one :class:`~tinymuse.autograd.Function` whose forward and backward work
on raw arrays (NumPy or CuPy, taken from the data), so none of them builds a
graph of small primitive operations.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import Function, Tensor

__all__ = ["softmax", "log_softmax", "embedding", "dropout", "conv2d", "conv_transpose2d",
           "upsample_nearest2d", "avg_pool2d"]


def _data(x):
    """The raw array of a Tensor, or ``x`` itself (an array, or None)."""
    return x.data if isinstance(x, Tensor) else x


# ----------------------------------------------------------------- softmax
class Softmax(Function):
    """y_i = exp(x_i − m) / Σ_j exp(x_j − m) with m = max_j x_j.

    Subtracting the maximum changes nothing mathematically (it cancels between
    numerator and denominator) but keeps exp from overflowing. The backward is
    the Jacobian-vector product dx = y ⊙ (g − Σ_j g_j y_j).
    """

    def forward(self, x, axis=-1):
        xp = backend.get_array_module(x)
        y = x - x.max(axis=axis, keepdims=True)
        xp.exp(y, out=y)
        y /= y.sum(axis=axis, keepdims=True)
        self.y, self.axis = y, axis
        return y

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        y = self.y
        dx = grad * y
        dot = dx.sum(axis=self.axis, keepdims=True)
        xp.subtract(grad, dot, out=dx)
        dx *= y
        return dx


class LogSoftmax(Function):
    """log softmax(x)_i = (x_i − m) − log Σ_j exp(x_j − m), with m = max_j x_j.

    The backward is dx = g − softmax(x) · Σ_j g_j.
    """

    def forward(self, x, axis=-1):
        xp = backend.get_array_module(x)
        z = x - x.max(axis=axis, keepdims=True)
        z -= xp.log(xp.exp(z).sum(axis=axis, keepdims=True))
        self.log_y, self.axis = z, axis
        return z

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        dx = xp.exp(self.log_y)
        dx *= grad.sum(axis=self.axis, keepdims=True)
        xp.subtract(grad, dx, out=dx)
        return dx


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Softmax along ``axis``: non-negative values that sum to 1."""
    return Softmax.apply(x, axis=axis)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """Logarithm of :func:`softmax`, computed stably (never log of 0)."""
    return LogSoftmax.apply(x, axis=axis)


# --------------------------------------------------------------- embedding
def _scatter_add_rows(ids, rows, num_rows: int):
    """``out[ids[k]] += rows[k]`` for every k, repeated ids accumulating.

    ``add.at`` is the unbuffered ``+=`` that accumulates repeated indices
    (plain ``out[ids] += rows`` would keep only one of them). It is given the
    flat element indices ``ids[k]·D + j`` rather than row indices, because
    NumPy has a fast path for one-dimensional ``add.at`` that row-wise
    ``add.at``, sorting plus ``add.reduceat`` and a one-hot matmul all lack.
    On a GPU the same call is a kernel of atomic adds.
    """
    xp = backend.get_array_module(rows)
    dim = rows.shape[1]
    out = xp.zeros((num_rows, dim), dtype=rows.dtype)
    flat_index = (ids.astype(xp.int64)[:, None] * dim + xp.arange(dim)).reshape(-1)
    if hasattr(xp.add, "at"):
        xp.add.at(out.reshape(-1), flat_index, rows.reshape(-1))
    else:  # CuPy before version 13
        import cupyx
        cupyx.scatter_add(out.reshape(-1), flat_index, rows.reshape(-1))
    return out


class EmbeddingFunction(Function):
    """out[..., :] = weight[ids[...], :], a row lookup.

    Each row of ``weight`` receives the sum of the output gradients at every
    position that looked it up (a token used twice gets two contributions).
    """

    def forward(self, weight, ids):
        self.ids, self.num_rows = ids, weight.shape[0]
        return weight.take(ids, axis=0)

    def backward(self, grad):
        dim = grad.shape[-1]
        return _scatter_add_rows(self.ids.reshape(-1), grad.reshape(-1, dim), self.num_rows)


def embedding(ids, weight: Tensor) -> Tensor:
    """Look up rows of ``weight`` (vocabulary, dim) for integer ``ids`` of any
    shape; the result has shape ``ids.shape + (dim,)``."""
    ids = _data(ids)
    xp = backend.get_array_module(weight.data)
    if not hasattr(ids, "dtype"):
        ids = xp.asarray(ids)
    if ids.dtype.kind not in "iu":
        raise TypeError(f"embedding ids must be integers, got dtype {ids.dtype}; "
                        "convert them with .astype(int)")
    if weight.ndim != 2:
        raise ValueError(f"embedding weight must be (vocabulary, dim), got shape {weight.shape}")
    if backend.device_of(ids) != weight.device:
        raise RuntimeError(f"embedding ids are on {backend.device_of(ids)} but the weight is on "
                           f"{weight.device}; move them with .to('{weight.device}')")
    vocabulary = weight.shape[0]
    if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= vocabulary):
        raise IndexError(f"embedding ids must lie in [0, {vocabulary}), got values from "
                         f"{int(ids.min())} to {int(ids.max())}")
    return EmbeddingFunction.apply(weight, ids=ids)


# ----------------------------------------------------------------- dropout
class MaskedScale(Function):
    """y = x ⊙ mask for a constant ``mask``; the backward is g ⊙ mask."""

    def forward(self, x, mask):
        self.mask = mask
        return x * mask

    def backward(self, grad):
        return grad * self.mask


def dropout(x: Tensor, p: float, training: bool = True, generator=None) -> Tensor:
    """Inverted dropout (Srivastava et al., 2014): zero each element with
    probability ``p`` and scale the survivors by 1/(1 − p), so the expected
    value of every element is unchanged and evaluation needs no rescaling.

    The mask comes from ``generator`` (a :class:`tinymuse.backend.Generator`),
    or from ``tinymuse.backend.default_generator`` when it is None, so the same
    seed drops the same elements. When ``training`` is False or ``p`` is 0 the
    input is returned unchanged.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    generator = generator or backend.default_generator
    keep = generator.random(x.shape, dtype=np.float32, device=x.device) >= p
    scale = 1.0 / (1.0 - p) if p < 1.0 else 0.0  # with p = 1 nothing survives to be scaled
    return MaskedScale.apply(x, mask=keep.astype(x.dtype) * scale)


# ------------------------------------------------------------ convolution
def _pair(value, name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise ValueError(f"{name} must be a non-negative int or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def _windows(x, kernel, stride, out_size):
    """A view of shape (N, C, kh, kw, Ho, Wo) with

        windows[n, c, i, j, y, x] = x[n, c, y·sh + i, x·sw + j],

    i.e. every kernel-sized patch of ``x``, made by choosing strides instead
    of copying: stepping the new axis ``i`` moves one row, stepping ``y``
    moves ``sh`` rows. Nothing is copied until the view is reshaped.
    """
    xp = backend.get_array_module(x)
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_size
    n, c = x.shape[:2]
    s_n, s_c, s_h, s_w = x.strides
    return xp.lib.stride_tricks.as_strided(
        x, shape=(n, c, kh, kw, ho, wo), strides=(s_n, s_c, s_h, s_w, s_h * sh, s_w * sw))


def _im2col(x, kernel, stride, out_size):
    """The patches of ``x`` as the columns of one matrix (C·kh·kw, N·Ho·Wo):
    column (n, y, x) holds the patch that output pixel (y, x) of image n sees."""
    xp = backend.get_array_module(x)
    n, c = x.shape[:2]
    (kh, kw), (ho, wo) = kernel, out_size
    windows = _windows(x, kernel, stride, out_size).transpose(1, 2, 3, 0, 4, 5)
    cols = xp.empty(windows.shape, dtype=x.dtype)

    def copy(channels):
        cols[channels] = windows[channels]

    # shared over the CPU's threads by channel: each channel is its own rows of the columns
    backend.run_in_parallel(copy, backend.thread_slices(xp, c, cols.size))
    return cols.reshape(c * kh * kw, n * ho * wo)


def _col2im(cols, shape, kernel, stride, out_size):
    """The adjoint of :func:`_im2col`: add every column entry back onto the
    pixel it was copied from. A pixel lies in several patches when they
    overlap, so the loop runs over the kh·kw kernel offsets (never over
    pixels) and each offset adds one strided slice of the whole batch."""
    xp = backend.get_array_module(cols)
    n, c = shape[:2]
    (kh, kw), (sh, sw), (ho, wo) = kernel, stride, out_size
    cols = cols.reshape(c, kh, kw, n, ho, wo)
    out = xp.zeros(shape, dtype=cols.dtype)

    def add_back(channels):
        for i in range(kh):
            for j in range(kw):
                out[:, channels, i:i + sh * ho:sh, j:j + sw * wo:sw] += \
                    cols[channels, i, j].transpose(1, 0, 2, 3)

    # by channel, as in _im2col: each channel adds onto its own pixels, never another's
    backend.run_in_parallel(add_back, backend.thread_slices(xp, c, cols.size))
    return out


def _pad(x, padding):
    ph, pw = padding
    if ph == 0 and pw == 0:
        return x
    xp = backend.get_array_module(x)
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))


def _unpad(x, padding):
    ph, pw = padding
    return x[:, :, ph:x.shape[2] - ph, pw:x.shape[3] - pw]


def _to_nchw(out_rows, n, ho, wo, bias):
    """(C_out, N·Ho·Wo) from a GEMM → a contiguous (N, C_out, Ho, Wo) array,
    adding the per-channel bias in the same pass."""
    xp = backend.get_array_module(out_rows)
    channels = out_rows.shape[0]
    view = out_rows.reshape(channels, n, ho, wo).transpose(1, 0, 2, 3)
    if bias is None:
        return xp.ascontiguousarray(view)
    out = xp.empty(view.shape, dtype=view.dtype)
    xp.add(view, bias.reshape(channels, 1, 1), out=out)
    return out


def _rows_of(grad):
    """(N, C, H, W) → (C, N·H·W), the layout the GEMMs work in."""
    n, c, h, w = grad.shape
    return grad.transpose(1, 0, 2, 3).reshape(c, n * h * w)


class Conv2dFunction(Function):
    """2-D cross-correlation (what deep-learning libraries call convolution):

        out[n, o, y, x] = b[o] + Σ_{c,i,j} W[o, c, i, j] · x_pad[n, c, y·sh + i, x·sw + j].

    With the patches unrolled into columns (im2col) this is ONE matrix product,
    out = W (O, C·kh·kw) @ cols (C·kh·kw, N·Ho·Wo). The backward is two more:
    dW = g @ colsᵀ and dcols = Wᵀ @ g, and col2im adds dcols back onto the
    input pixels. The columns are rebuilt in backward rather than saved: they
    are kh·kw times larger than the input.
    """

    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        n = x.shape[0]
        out_channels, _, kh, kw = weight.shape
        x_pad = _pad(x, padding)
        ho = (x_pad.shape[2] - kh) // stride[0] + 1
        wo = (x_pad.shape[3] - kw) // stride[1] + 1
        self.geometry = ((kh, kw), stride, (ho, wo))
        out = weight.reshape(out_channels, -1) @ _im2col(x_pad, *self.geometry)
        needs_x, needs_w = self.needs_input_grad[:2]
        self.x_pad = x_pad if needs_w else None          # for dW
        self.weight = weight if needs_x else None        # for dx
        self.weight_shape, self.padded_shape, self.padding = weight.shape, x_pad.shape, padding
        return _to_nchw(out, n, ho, wo, bias)

    def backward(self, grad):
        g = _rows_of(grad)                     # (O, N·Ho·Wo)
        dx = dw = db = None
        if self.needs_input_grad[1]:
            dw = (g @ _im2col(self.x_pad, *self.geometry).T).reshape(self.weight_shape)
        if self.needs_input_grad[2]:
            db = g.sum(axis=1)
        if self.needs_input_grad[0]:
            dcols = self.weight.reshape(self.weight_shape[0], -1).T @ g
            dx = _unpad(_col2im(dcols, self.padded_shape, *self.geometry), self.padding)
        return dx, dw, db


class ConvTranspose2d(Function):
    """The transpose (adjoint) of :class:`Conv2dFunction` with respect to its input:
    every input pixel scatters ``W[c_in, :, :, :] · x`` onto a kh×kw patch of
    the output, patches ``stride`` apart, and ``padding`` is cropped from the
    border. It upsamples: H_out = (H − 1)·stride − 2·padding + kh.

    Forward is conv2d's input-gradient (GEMM, then col2im); backward is conv2d's
    forward and weight-gradient (im2col, then GEMMs).
    """

    def forward(self, x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
        n, in_channels, h, w = x.shape
        _, out_channels, kh, kw = weight.shape
        full = (n, out_channels, (h - 1) * stride[0] + kh, (w - 1) * stride[1] + kw)
        self.geometry = ((kh, kw), stride, (h, w))
        x_rows = _rows_of(x)                                       # (C_in, N·H·W)
        cols = weight.reshape(in_channels, -1).T @ x_rows          # (C_out·kh·kw, N·H·W)
        out = _unpad(_col2im(cols, full, *self.geometry), padding)
        self.x_rows = x_rows if self.needs_input_grad[1] else None   # for dW
        self.weight, self.padding, self.x_shape = weight, padding, x.shape
        if bias is None:
            return backend.get_array_module(x).ascontiguousarray(out)
        return out + bias.reshape(-1, 1, 1)

    def backward(self, grad):
        grad_cols = _im2col(_pad(grad, self.padding), *self.geometry)   # (C_out·kh·kw, N·H·W)
        dx = dw = db = None
        in_channels = self.weight.shape[0]
        if self.needs_input_grad[0]:
            rows = self.weight.reshape(in_channels, -1) @ grad_cols
            n, _, h, w = self.x_shape
            dx = _to_nchw(rows, n, h, w, None)
        if self.needs_input_grad[1]:
            dw = (self.x_rows @ grad_cols.T).reshape(self.weight.shape)
        if self.needs_input_grad[2]:
            db = grad.sum(axis=(0, 2, 3))
        return dx, dw, db


def _check_conv_args(name, x, weight, bias, weight_in_axis):
    if x.ndim != 4 or weight.ndim != 4:
        raise ValueError(f"{name} expects x of shape (N, C, H, W) and a 4-D weight, "
                         f"got x {x.shape} and weight {weight.shape}")
    if x.shape[1] != weight.shape[weight_in_axis]:
        raise ValueError(f"{name}: x has {x.shape[1]} channels but the weight {weight.shape} "
                         f"expects {weight.shape[weight_in_axis]} input channels")
    out_channels = weight.shape[1 - weight_in_axis]
    if bias is not None and tuple(bias.shape) != (out_channels,):
        raise ValueError(f"{name}: bias must have shape ({out_channels},), got {bias.shape}")


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """2-D convolution of x (N, C_in, H, W) with weight (C_out, C_in, kh, kw),
    zero ``padding`` on each side, giving (N, C_out, Ho, Wo) with
    Ho = (H + 2·padding − kh) // stride + 1. ``stride`` and ``padding`` are an
    int or an (h, w) pair."""
    _check_conv_args("conv2d", x, weight, bias, weight_in_axis=1)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if min(stride) < 1:
        raise ValueError(f"conv2d stride must be at least 1, got {stride}")
    for size, pad, k in zip(x.shape[2:], padding, weight.shape[2:]):
        if size + 2 * pad < k:
            raise ValueError(f"conv2d: the {k}-wide kernel is larger than the padded input "
                             f"({size} + 2·{pad}); pad more or use a smaller kernel")
    return Conv2dFunction.apply(x, weight, bias, stride=stride, padding=padding)


def conv_transpose2d(x: Tensor, weight: Tensor, bias: Tensor | None = None,
                     stride=1, padding=0) -> Tensor:
    """Transposed convolution ("deconvolution") of x (N, C_in, H, W) with weight
    (C_in, C_out, kh, kw) (PyTorch's layout), giving (N, C_out, Ho, Wo) with
    Ho = (H − 1)·stride − 2·padding + kh. With kernel 4, stride 2, padding 1
    it exactly doubles H and W: the learned upsampling of a decoder."""
    _check_conv_args("conv_transpose2d", x, weight, bias, weight_in_axis=0)
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    if min(stride) < 1:
        raise ValueError(f"conv_transpose2d stride must be at least 1, got {stride}")
    for size, pad, k, s in zip(x.shape[2:], padding, weight.shape[2:], stride):
        if (size - 1) * s + k - 2 * pad < 1:
            raise ValueError(f"conv_transpose2d: padding {pad} leaves no output pixels")
    return ConvTranspose2d.apply(x, weight, bias, stride=stride, padding=padding)


# ------------------------------------------------------ pooling, upsampling
class AvgPool2d(Function):
    """out[n, c, y, x] = mean over the kh×kw window at (y·sh, x·sw). Each input
    pixel receives g/(kh·kw) from every window that contains it."""

    def forward(self, x, kernel, stride):
        ho = (x.shape[2] - kernel[0]) // stride[0] + 1
        wo = (x.shape[3] - kernel[1]) // stride[1] + 1
        self.x_shape, self.kernel, self.stride = x.shape, kernel, stride
        return _windows(x, kernel, stride, (ho, wo)).mean(axis=(2, 3))

    def backward(self, grad):
        xp = backend.get_array_module(grad)
        (kh, kw), (sh, sw) = self.kernel, self.stride
        ho, wo = grad.shape[2:]
        share = grad / (kh * kw)
        # Each kernel offset (i, j) adds the shares to one strided slice of the
        # input; where windows overlap, a pixel collects from several offsets.
        dx = xp.zeros(self.x_shape, dtype=grad.dtype)
        for i in range(kh):
            for j in range(kw):
                dx[:, :, i:i + sh * ho:sh, j:j + sw * wo:sw] += share
        return dx


def avg_pool2d(x: Tensor, kernel_size, stride=None) -> Tensor:
    """Average pooling of x (N, C, H, W) over kernel_size windows (an int or an
    (h, w) pair), ``stride`` apart (default: kernel_size, non-overlapping). No
    padding; a border narrower than a window is dropped."""
    if x.ndim != 4:
        raise ValueError(f"avg_pool2d expects x of shape (N, C, H, W), got {x.shape}")
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    if min(kernel) < 1 or min(stride) < 1:
        raise ValueError(f"avg_pool2d kernel_size and stride must be at least 1, "
                         f"got {kernel} and {stride}")
    if x.shape[2] < kernel[0] or x.shape[3] < kernel[1]:
        raise ValueError(f"avg_pool2d: kernel {kernel} is larger than the image {x.shape[2:]}")
    return AvgPool2d.apply(x, kernel=kernel, stride=stride)


class UpsampleNearest2d(Function):
    """Repeat every pixel into an s×s block; the backward sums each block."""

    def forward(self, x, scale):
        n, c, h, w = x.shape
        xp = backend.get_array_module(x)
        blocks = xp.broadcast_to(x[:, :, :, None, :, None], (n, c, h, scale, w, scale))
        self.scale = scale
        return blocks.reshape(n, c, h * scale, w * scale)

    def backward(self, grad):
        n, c, hs, ws = grad.shape
        s = self.scale
        return grad.reshape(n, c, hs // s, s, ws // s, s).sum(axis=(3, 5))


def upsample_nearest2d(x: Tensor, scale_factor: int = 2) -> Tensor:
    """Nearest-neighbour upsampling of x (N, C, H, W) by an integer factor."""
    if x.ndim != 4:
        raise ValueError(f"upsample_nearest2d expects x of shape (N, C, H, W), got {x.shape}")
    if int(scale_factor) != scale_factor or scale_factor < 1:
        raise ValueError(f"upsample_nearest2d needs a positive integer scale_factor, "
                         f"got {scale_factor}")
    return UpsampleNearest2d.apply(x, scale=int(scale_factor))
