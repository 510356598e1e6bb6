"""The functional interface: ``import tinymuse.functional as F``.

Every differentiable operation under one name, in the style of
``torch.nn.functional``: ``F.matmul(a, b)``, ``F.softmax(x, axis=-1)``,
``F.cross_entropy(logits, targets)``. Each takes tensors (or numbers and
arrays where that makes sense) and returns a tensor that records the graph.
The operations are written in :mod:`tinymuse.ops`, one module per kind, in
the groups below; the fused ones (softmax, cross-entropy, layer norm,
attention, packed self-attention, GELU, linear + ReLU) are checked against
their compositions in :mod:`tinymuse.ops.reference`.
"""
# element-wise arithmetic, powers and activations (broadcasting)
from .ops.elementwise import add, sub, mul, div, neg, pow, exp, log, sqrt, abs  # noqa: A004
from .ops.elementwise import tanh, sigmoid, relu, silu, gelu
# selection
from .ops.elementwise import maximum, minimum, where, masked_fill, clip
# comparisons and logic (bool tensors, no gradient)
from .ops.elementwise import eq, ne, lt, le, gt, ge
from .ops.elementwise import bitwise_not, bitwise_and, bitwise_or, bitwise_xor
# reductions over axes
from .ops.reduction import sum, mean, max, min, var, argmax  # noqa: A004
# moving values around
from .ops.shape import reshape, permute, transpose, flatten, squeeze, unsqueeze, expand
from .ops.shape import getitem, concatenate, cat, stack, split, chunk, pad
# matrix products
from .ops.linalg import matmul, linear
# neural-network operations
from .ops.nn import softmax, log_softmax, embedding, dropout
from .ops.nn import conv2d, conv_transpose2d, avg_pool2d, upsample_nearest2d
from .ops.norm import layer_norm, group_norm
from .ops.attention import scaled_dot_product_attention, packed_self_attention
# losses
from .ops.losses import cross_entropy, mse_loss, l1_loss

__all__ = [
    "add", "sub", "mul", "div", "neg", "pow", "exp", "log", "sqrt", "abs",
    "tanh", "sigmoid", "relu", "silu", "gelu",
    "maximum", "minimum", "where", "masked_fill", "clip",
    "eq", "ne", "lt", "le", "gt", "ge",
    "bitwise_not", "bitwise_and", "bitwise_or", "bitwise_xor",
    "sum", "mean", "max", "min", "var", "argmax",
    "reshape", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand",
    "getitem", "concatenate", "cat", "stack", "split", "chunk", "pad",
    "matmul", "linear",
    "softmax", "log_softmax", "embedding", "dropout",
    "conv2d", "conv_transpose2d", "avg_pool2d", "upsample_nearest2d",
    "layer_norm", "group_norm", "scaled_dot_product_attention", "packed_self_attention",
    "cross_entropy", "mse_loss", "l1_loss",
]
