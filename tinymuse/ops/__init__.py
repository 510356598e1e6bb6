"""Differentiable operations, each a :class:`~tinymuse.tensor.Function` with a
hand-written backward.

- ``elementwise``: arithmetic with broadcasting, pow, exp, log, activations, where
- ``reduction``: sum, mean, max, var over axes
- ``shape``: reshape, transpose, indexing, concatenate, stack, split, pad
- ``linalg``: batched matmul
- ``nn``: softmax, embedding, dropout, conv2d, pooling, upsampling
- ``norm``: layer norm (fused), group norm
- ``losses``: cross-entropy (fused with log-softmax), MSE, L1
- ``attention``: scaled dot-product attention (fused)
- ``reference``: the fused operations composed from primitives (for tests and teaching)

``methods`` attaches the operators (``+``, ``@``, ``x.sum()``, ...) to ``Tensor``.
"""
from .elementwise import *  # noqa: F401,F403
from .reduction import *  # noqa: F401,F403
from .shape import *  # noqa: F401,F403
from .linalg import *  # noqa: F401,F403
from .nn import *  # noqa: F401,F403
from .norm import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403
from .attention import *  # noqa: F401,F403
from .methods import install_tensor_methods

install_tensor_methods()
