"""The super-resolution transformer: 16×16 high-resolution tokens from text and 8×8 tokens
(Muse §2.4).

The base stage draws a 32×32 image as 8×8 tokens. The super-resolution stage draws the same
picture at 64×64, as 16×16 tokens of a second VQ tokenizer, *conditioned on the 8×8 tokens*:
it adds detail, it does not invent a new picture. It is a masked token model like the base
stage (same masking, same loss, same parallel decoding); only its context is richer.

Muse builds that context in two parts and lets the high-resolution tokens cross-attend to
both:

    l        = SelfBlock_M(… SelfBlock_1(E_low[y] + P_low))   the 8×8 tokens y, read by their
                                                              own self-attention layers
    c        = [ LayerNorm(l) ; W·text ]                      the low-resolution
                                                              embeddings, then the text
    h        = Block_L(… Block_1(E[x̃] + P, c))                as in the base model
    logits   = W_out · LayerNorm(h)                           (B, 256, K_high)

So one cross-attention reads the caption and the coarse picture at once; the low-resolution
part of the context is never masked. Classifier-free guidance drops only the *text*: the
unconditional context is the empty prompt together with the same low-resolution tokens.

Everything else (the frozen text encoder, [MASK] = ``codebook_size``, the masked-only
label-smoothed loss, caption dropout) is the base transformer's, which is why
:class:`SuperResTransformer` is a subclass of :class:`~tinymuse.models.base.BaseTransformer`
that adds the low-resolution reader. Because the low-resolution part of the context does not
change while decoding, it is computed once per generation, not once per step.

Aligned low-resolution input (``low_skip``, off by default, an addition to Muse). Through
cross-attention alone, a high-resolution token must first *learn* which of the 64 context
entries lies under it before it can copy the coarse shape, and at toy scale on a CPU that takes
most of a training run. With ``low_skip`` the encoded low-resolution token under each
high-resolution position (each covers 2×2 of them) is also added, through a linear map, to that
position's input embedding:

    h_0[r, c] = E[x̃[r, c]] + P[r, c] + W_skip · l[r // 2, c // 2]

so the coarse picture sits where it belongs from the start; the cross-attention still sees
all of it.

Robustness. At sampling time the low-resolution tokens come from the base model, which makes
mistakes the training data never shows. ``low_token_noise`` (0 by default) replaces each
low-resolution token during training, with that probability, by a random code, so the
stage learns not to copy the coarse picture blindly.

It trains on pairs of token grids of the same images, one from each VQ tokenizer
(:func:`tinymuse.training.transformer.pair_caches`), with the same loop as the base stage.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..tensor import Tensor
from .base import BaseTransformer, BaseTransformerConfig, TextContext

__all__ = ["SuperResTransformerConfig", "SuperResTransformer"]


@dataclass
class SuperResTransformerConfig(BaseTransformerConfig):
    """A :class:`BaseTransformerConfig` for the high-resolution grid plus the low-resolution
    reader: ``codebook_size``/``grid_size`` describe the super-resolution VQ tokenizer (16×16
    tokens), ``low_codebook_size``/``low_grid_size`` the base one (8×8 tokens)."""

    codebook_size: int = 512
    grid_size: int = 16
    low_codebook_size: int = 512
    low_grid_size: int = 8
    low_num_layers: int = 2          # self-attention layers over the low-resolution tokens
    low_token_noise: float = 0.0     # training only: P(a low-resolution token → a random code)
    low_skip: bool = False           # also add the aligned low-res embedding to each input

    @property
    def num_low_tokens(self) -> int:
        return self.low_grid_size * self.low_grid_size

    @classmethod
    def from_base(cls, base_config: BaseTransformerConfig, base_vq_config, superres_vq_config,
                  **changes) -> "SuperResTransformerConfig":
        """A config sized like ``base_config`` (same text encoder, width, depth, training
        choices) for the two VQ tokenizers' codebooks and grids (``VQConfig``s of the base and
        the super-resolution tokenizer); ``changes`` on top."""
        values = {f.name: getattr(base_config, f.name)
                  for f in dataclasses.fields(BaseTransformerConfig)}
        values.update(codebook_size=superres_vq_config.codebook_size,
                      grid_size=superres_vq_config.token_size,
                      low_codebook_size=base_vq_config.codebook_size,
                      low_grid_size=base_vq_config.token_size)
        values.update(changes)
        return cls(**values)

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)
        if parent is not None:  # keep the base config's own checks, if it has any
            parent()
        if not 0.0 <= self.low_token_noise < 1.0:
            raise ValueError(f"low_token_noise must lie in [0, 1), got {self.low_token_noise}")
        if self.low_num_layers < 1:
            raise ValueError(f"low_num_layers must be at least 1, got {self.low_num_layers}")


class SuperResTransformer(BaseTransformer):
    """The base transformer whose cross-attention context also holds the low-resolution
    tokens, read by ``low_num_layers`` self-attention blocks (see the module docstring).

    Call it as ``logits(tokens, context)`` with ``context = make_context(text, low_tokens)``;
    sampling (:func:`tinymuse.decoding.sample_stage`) takes prompts *and* low-resolution
    token grids.
    """

    KIND = "superres_transformer"
    config_type = SuperResTransformerConfig

    def __init__(self, config: SuperResTransformerConfig | None = None, text_encoder=None,
                 tokenizer=None, generator=None):
        config = config or SuperResTransformerConfig()
        if not isinstance(config, SuperResTransformerConfig):
            raise TypeError(f"SuperResTransformer needs a SuperResTransformerConfig, got "
                            f"{type(config).__name__}")
        super().__init__(config, text_encoder=text_encoder, tokenizer=tokenizer,
                         generator=generator)
        d = config.d_model
        self.low_embedding = nn.Embedding(config.low_codebook_size, d, generator=generator)
        self.low_positions = nn.Parameter(np.zeros((config.num_low_tokens, d), np.float32))
        nn.init.normal_(self.low_embedding.weight, 0.0, 0.02, generator)
        nn.init.normal_(self.low_positions, 0.0, 0.02, generator)
        self.low_blocks = nn.ModuleList([
            nn.TransformerBlock(d, config.num_heads, config.mlp_ratio, dropout=config.dropout,
                                generator=generator)
            for _ in range(config.low_num_layers)])
        self.low_norm = nn.LayerNorm(d)
        if config.low_skip:
            if config.grid_size % config.low_grid_size:
                raise ValueError(f"low_skip needs grid_size ({config.grid_size}) to be a "
                                 f"multiple of low_grid_size ({config.low_grid_size})")
            self.low_skip = nn.Linear(d, d, generator=generator)

    # ------------------------------------------------------------ context
    def _low_tokens(self, low_tokens):
        low_tokens = low_tokens.data if isinstance(low_tokens, Tensor) else low_tokens
        low_tokens = backend.to_device(np.asarray(low_tokens) if isinstance(low_tokens, list)
                                       else low_tokens, self.device)
        c = self.config
        if low_tokens.ndim not in (2, 3) or low_tokens.dtype.kind not in "iu":
            raise ValueError(f"low-resolution tokens must be an integer array (B, "
                             f"{c.low_grid_size}, {c.low_grid_size}) from the base stage; got "
                             f"{low_tokens.dtype} {low_tokens.shape}")
        low_tokens = low_tokens.reshape(low_tokens.shape[0], -1)
        if low_tokens.shape[1] != c.num_low_tokens:
            raise ValueError(f"expected {c.num_low_tokens} low-resolution tokens per example "
                             f"({c.low_grid_size}×{c.low_grid_size}, the base stage's grid), "
                             f"got {low_tokens.shape[1]}")
        if low_tokens.size and (int(low_tokens.min()) < 0
                                or int(low_tokens.max()) >= c.low_codebook_size):
            raise ValueError(f"low-resolution tokens must lie in [0, {c.low_codebook_size}) "
                             f"(the base tokenizer's codebook); got {int(low_tokens.min())} to "
                             f"{int(low_tokens.max())}")
        return low_tokens

    def encode_low_tokens(self, low_tokens) -> Tensor:
        """Low-resolution token grids (B, h, w) or (B, h·w) → embeddings (B, h·w, d_model):
        embedding + positions, ``low_num_layers`` self-attention blocks, a LayerNorm."""
        # BEGIN EXERCISE ch08_ex1
        x = self.low_embedding(self._low_tokens(low_tokens)) + self.low_positions
        for block in self.low_blocks:
            x = block(x)
        return self.low_norm(x)
        # END EXERCISE

    def make_context(self, text: TextContext, low_tokens) -> TextContext:
        """The context the high-resolution tokens cross-attend to: the encoded
        low-resolution tokens (never masked), then the text embeddings. (Attention does not
        care about the order; low tokens first keeps them at a fixed place, since contexts
        of different text lengths are padded at the end.)"""
        # BEGIN EXERCISE ch08_ex2
        low = self.encode_low_tokens(low_tokens)
        if low.shape[0] != text.embeddings.shape[0]:
            raise ValueError(f"{low.shape[0]} low-resolution grids but "
                             f"{text.embeddings.shape[0]} text contexts")
        xp = backend.xp_for(self.device)
        mask = xp.concatenate([xp.ones(low.shape[:2], dtype=bool),
                               backend.to_device(text.mask, self.device)], axis=1)
        return TextContext(F.concatenate([low, text.embeddings], axis=1), mask)
        # END EXERCISE

    def prompt_context(self, prompts, low_tokens=None) -> TextContext:
        """What decoding conditions on: the base stage's ``low_tokens`` (B, h, w), read, and
        the text of ``prompts`` (:meth:`make_context`)."""
        if low_tokens is None:
            raise ValueError("the super-resolution transformer draws on the base stage's "
                             "tokens: pass low_tokens (B, h, w)")
        low = self._low_tokens(low_tokens)
        if low.shape[0] != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {low.shape[0]} low-resolution token "
                             f"grids")
        return self.make_context(self.encode_prompts(prompts), low)

    def embed_inputs(self, tokens, context: TextContext) -> Tensor:
        """Token embedding + position, plus (with ``low_skip``) the encoded low-resolution
        token under each position, upsampled by repetition and mapped by ``W_skip``."""
        x = super().embed_inputs(tokens, context)
        c = self.config
        if not c.low_skip:
            return x
        # BEGIN EXERCISE ch08_ex3
        batch, low_side, d = x.shape[0], c.low_grid_size, c.d_model
        low = context.embeddings[:, :c.num_low_tokens]           # the start of the context
        low = low.reshape(batch, low_side, low_side, d).permute(0, 3, 1, 2)
        low = F.upsample_nearest2d(low, c.grid_size // low_side)  # (B, d, H, W)
        return x + self.low_skip(low.permute(0, 2, 3, 1).reshape(batch, c.num_tokens, d))
        # END EXERCISE

    # ----------------------------------------------------------- training
    def corrupt_low_tokens(self, low_tokens, generator: backend.Generator):
        """Replace each low-resolution token by a uniformly random code with probability
        ``low_token_noise`` (a copy; unchanged if it is 0). Draws ``generator.random((B, n))``
        then ``generator.integers(0, K_low, (B, n))``, only when the rate is above 0."""
        rate = self.config.low_token_noise
        if rate == 0:
            return low_tokens
        xp = backend.get_array_module(low_tokens)
        device = backend.device_of(low_tokens)
        replace = generator.random(low_tokens.shape, device=device) < rate
        codes = generator.integers(0, self.config.low_codebook_size, low_tokens.shape,
                                   device=device)
        return xp.where(replace, codes, low_tokens).astype(low_tokens.dtype, copy=False)

    def training_context(self, batch: dict, ids, text_mask, generator: backend.Generator):
        """The base model's training step (:meth:`BaseTransformer.training_loss`) with the
        batch's ``low_tokens`` (B, h, w), the low-resolution grids of the same images, in the
        context. Draws from ``generator``, after caption dropout and the training mask, the
        low-resolution corruption (:meth:`corrupt_low_tokens`)."""
        low_tokens = self._low_tokens(batch["low_tokens"]).astype(np.int64, copy=False)
        low_tokens = self.corrupt_low_tokens(low_tokens, generator)
        return self.make_context(self.encode_text(ids, text_mask), low_tokens)
