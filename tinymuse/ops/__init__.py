"""The implementation of the differentiable operations.

Users import them as :mod:`tinymuse.functional` (``import tinymuse.functional
as F``), the one public name for them; this package is where they are written.
Each operation is a :class:`~tinymuse.autograd.Function` with a hand-written
backward, plus the public function that checks its arguments and applies it:

- ``elementwise``: arithmetic with broadcasting, pow, exp, log, activations,
  where, comparisons and logic
- ``reduction``: sum, mean, max, min, var, argmax over axes
- ``shape``: reshape, transpose, indexing, concatenate, stack, split, pad
- ``linalg``: batched matmul, the fused linear layer (and linear + ReLU)
- ``nn``: softmax, embedding, dropout, conv2d, pooling, upsampling
- ``norm``: layer norm (fused), group norm
- ``losses``: cross-entropy (fused with log-softmax), MSE, L1
- ``attention``: scaled dot-product attention (fused), and multi-head self-attention
  on a packed q/k/v projection
- ``reference``: the fused operations composed from primitives (for tests and
  teaching; not part of :mod:`tinymuse.functional`)

The modules here import only :mod:`tinymuse.backend`, :mod:`tinymuse.autograd`
and each other. Inside them an operation calls other operations as functions
(``reshape(x, ...)``, ``sub(a, b)``), never through a tensor's operators or
methods: those are attached by :mod:`tinymuse.tensor`, a layer above.
"""
