"""tinymuse: Muse-style masked generative text-to-image models, from scratch.

``import tinymuse`` loads the engine only: the array backend, tensors and autograd, and the
differentiable operations. Everything above it (layers, data, models, training, the cascade)
is imported where it is used; ``tinymuse.Pipeline`` is loaded on first use.
"""
__version__ = "0.1.0"

from .backend import cuda_available, get_default_device, manual_seed, set_default_device, Generator
from .tensor import (Function, Tensor, arange, as_tensor, enable_grad, full, no_grad, ones,
                     ones_like, rand, randn, zeros, zeros_like)
from . import functional

__all__ = ["Pipeline", "Tensor", "Function", "no_grad", "enable_grad", "functional",
           "cuda_available", "get_default_device", "set_default_device", "manual_seed",
           "Generator", "arange", "as_tensor", "full", "ones", "ones_like", "rand", "randn",
           "zeros", "zeros_like"]


def __getattr__(name: str):
    """``tinymuse.Pipeline`` without importing the models at ``import tinymuse``."""
    if name == "Pipeline":
        from .pipeline import Pipeline
        return Pipeline
    raise AttributeError(f"module 'tinymuse' has no attribute {name!r}")
