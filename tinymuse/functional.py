"""The functional interface: ``import tinymuse.functional as F``.

Every differentiable operation of :mod:`tinymuse.ops` under one name, in the
style of ``torch.nn.functional``.
"""
from .ops import *  # noqa: F401,F403
