"""Neural-network building blocks: ``Module`` and the layers made from it.

``import tinymuse.nn as nn`` then ``nn.Linear(4, 8)``, ``nn.TransformerBlock(64, 4)``;
initialisers live in ``nn.init``.
"""
from . import init  # noqa: F401
from .module import (LoadResult, Module, ModuleDict, ModuleList, Parameter, Sequential,
                     evaluation_mode)
from .layers import (GELU, Conv2d, Dropout, Embedding, GroupNorm, Identity, LayerNorm, Linear,
                     ReLU, SiLU)
from .attention import KeyValueCache, MultiHeadAttention
from .transformer import BlockCache, TransformerBlock

__all__ = ["Module", "Parameter", "Sequential", "ModuleList", "ModuleDict", "LoadResult",
           "Linear", "Embedding", "LayerNorm", "GroupNorm", "Conv2d", "Dropout",
           "GELU", "SiLU", "ReLU", "Identity", "MultiHeadAttention", "KeyValueCache",
           "TransformerBlock", "BlockCache",
           "evaluation_mode", "init"]
