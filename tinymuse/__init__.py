"""tinymuse: Muse-style masked generative text-to-image models, from scratch.

Layers, each importing only the ones listed before it:
``backend`` (NumPy or CuPy) → ``tensor`` (autograd) → ``ops``/``functional``
(differentiable operations) → ``nn`` → ``optim`` → ``checkpoint`` → data, text,
VQ, models, training.
"""
__version__ = "0.1.0"

from .backend import cuda_available, get_default_device, manual_seed, set_default_device, Generator
from .tensor import (Function, Tensor, arange, as_tensor, enable_grad, full, no_grad, ones,
                     ones_like, rand, randn, zeros, zeros_like)
from . import ops  # noqa: F401  (gives Tensor its operators and methods)
from . import functional  # noqa: F401
from .pipeline import Pipeline  # noqa: F401,E402  (text → image, editing; imports the models)
