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

Training data: :func:`superres_tokens` pairs two token caches (base and super-resolution
tokenizer, same images) into the batches :meth:`SuperResTransformer.make_batch` reads;
:func:`train_superres` runs :func:`tinymuse.train.train_stage` on them, and
:func:`superres_monitor` shows samples while it trains.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .. import backend, nn
from .. import functional as F
from ..masking import apply_mask, sample_training_mask
from ..tensor import Tensor, no_grad
from .base import BaseTransformer, BaseTransformerConfig, MaskedStep, TextContext, \
    masked_token_loss

__all__ = ["SuperResTransformerConfig", "SuperResTransformer", "SuperResTokens",
           "superres_tokens", "superres_sampler", "superres_monitor", "train_superres"]

KIND = "superres_transformer"


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
    :meth:`generate` takes prompts *and* low-resolution token grids.
    """

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
        x = self.low_embedding(self._low_tokens(low_tokens)) + self.low_positions
        for block in self.low_blocks:
            x = block(x)
        return self.low_norm(x)

    def make_context(self, text: TextContext, low_tokens) -> TextContext:
        """The context the high-resolution tokens cross-attend to: the encoded
        low-resolution tokens (never masked), then the text embeddings. (Attention does not
        care about the order; low tokens first keeps them at a fixed place, since contexts
        of different text lengths are padded at the end.)"""
        low = self.encode_low_tokens(low_tokens)
        if low.shape[0] != text.embeddings.shape[0]:
            raise ValueError(f"{low.shape[0]} low-resolution grids but "
                             f"{text.embeddings.shape[0]} text contexts")
        xp = backend.xp_for(self.device)
        mask = xp.concatenate([xp.ones(low.shape[:2], dtype=bool),
                               backend.to_device(text.mask, self.device)], axis=1)
        return TextContext(F.concatenate([low, text.embeddings], axis=1), mask)

    def embed_inputs(self, tokens, context: TextContext) -> Tensor:
        """Token embedding + position, plus (with ``low_skip``) the encoded low-resolution
        token under each position, upsampled by repetition and mapped by ``W_skip``."""
        x = super().embed_inputs(tokens, context)
        c = self.config
        if not c.low_skip:
            return x
        batch, low_side, d = x.shape[0], c.low_grid_size, c.d_model
        low = context.embeddings[:, :c.num_low_tokens]           # the start of the context
        low = low.reshape(batch, low_side, low_side, d).permute(0, 3, 1, 2)
        low = F.upsample_nearest2d(low, c.grid_size // low_side)  # (B, d, H, W)
        return x + self.low_skip(low.permute(0, 2, 3, 1).reshape(batch, c.num_tokens, d))

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

    def training_loss(self, batch: dict, generator: backend.Generator) -> MaskedStep:
        """The masked-token loss on one batch from :meth:`make_batch` (which adds
        ``low_tokens`` to the base stage's batch).

        Draws from ``generator``, in order: caption dropout, the training mask (as the base
        model), then the low-resolution corruption (:meth:`corrupt_low_tokens`).
        """
        xp = backend.xp_for(self.device)
        tokens = backend.to_device(batch["tokens"], self.device)
        tokens = tokens.reshape(tokens.shape[0], -1).astype(np.int64, copy=False)
        low_tokens = self._low_tokens(batch["low_tokens"]).astype(np.int64, copy=False)
        ids = backend.to_device(batch["text_ids"], self.device)
        text_mask = backend.to_device(batch["text_mask"], self.device)
        ids, text_mask, _ = self.drop_captions(ids, text_mask, generator)
        mask = sample_training_mask(tokens.shape[0], tokens.shape[1], generator,
                                    self.config.mask_schedule, device=self.device)
        low_tokens = self.corrupt_low_tokens(low_tokens, generator)
        inputs = apply_mask(tokens, mask, self.mask_id)
        context = self.make_context(self.encode_text(ids, text_mask), low_tokens)
        logits = self.logits(inputs, context)
        loss, accuracy = masked_token_loss(logits, tokens, mask, self.config.label_smoothing)
        return MaskedStep(loss, accuracy, int(xp.count_nonzero(mask)))

    def make_batch(self, token_cache, indices) -> dict:
        """The training batch for rows ``indices`` of a :class:`SuperResTokens` cache."""
        batch = super().make_batch(token_cache, indices)
        batch["low_tokens"] = np.asarray(token_cache.low_tokens[np.asarray(indices)])
        return batch

    # ----------------------------------------------------------- sampling
    def generate(self, prompts, low_tokens, steps: int = 8, guidance_scale: float = 0.0,
                 negative_prompts=None, generator: backend.Generator | None = None,
                 **options):
        """Draw high-resolution token grids (B, H, W) for ``prompts`` and the base stage's
        ``low_tokens`` (B, h, w), by parallel decoding; returns a
        :class:`~tinymuse.decoding.DecodeResult`.

        Guidance contrasts the prompt with the empty (or negative) prompt, both with the same
        low-resolution tokens. ``options`` go to :func:`tinymuse.decoding.decode`
        (``temperature``, ``top_k``, ``choice_temperature``, ``schedule``, ``mask`` with
        ``tokens`` to re-decode only some positions of a given grid, ...). Muse used 8 steps
        for this stage.
        """
        from .. import decoding

        prompts = list(prompts)
        start = options.pop("tokens", None)
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                low = self._low_tokens(low_tokens)
                if low.shape[0] != len(prompts):
                    raise ValueError(f"{len(prompts)} prompts but {low.shape[0]} "
                                     f"low-resolution token grids")
                condition = self.make_context(self.encode_prompts(prompts), low)
                uncond = None
                if guidance_scale:
                    negatives = ([""] * len(prompts) if negative_prompts is None
                                 else list(negative_prompts))
                    if len(negatives) != len(prompts):
                        raise ValueError(f"{len(negatives)} negative prompts for "
                                         f"{len(prompts)} prompts")
                    uncond = self.make_context(self.encode_prompts(negatives), low)
                xp = backend.xp_for(self.device)
                if start is None:
                    start = xp.full((len(prompts), self.config.num_tokens), self.mask_id,
                                    dtype=np.int64)
                else:
                    start = backend.to_device(start.data if isinstance(start, Tensor)
                                              else start, self.device)
                    start = start.reshape(len(prompts), -1).astype(np.int64, copy=False)
                result = decoding.decode(
                    self.logits, start, condition, mask_id=self.mask_id, steps=steps,
                    guidance_scale=guidance_scale, uncond_condition=uncond,
                    concat_conditions=TextContext.concat, generator=generator, **options)
        finally:
            self.train(was_training)
        result.tokens = result.tokens.reshape(len(prompts), self.config.grid_size,
                                              self.config.grid_size)
        return result

    # -------------------------------------------------------------- files
    def save(self, path, metadata: dict | None = None):
        """Weights and config to a ``.safetensors`` checkpoint; returns the path."""
        from .. import checkpoint

        return checkpoint.save(path, self.state_dict(), self.config.to_dict(),
                               {"kind": KIND, **(metadata or {})})

    @classmethod
    def load(cls, path, tokenizer=None, device: str = "cpu") -> "SuperResTransformer":
        """A model built from the config stored in ``path``, with its weights; ``tokenizer``
        as for :meth:`BaseTransformer.load` (``tokenizer.model`` beside it by default)."""
        from pathlib import Path

        from .. import checkpoint
        from ..text.tokenizer import Tokenizer

        stored = checkpoint.load(path)
        if stored.metadata.get("kind") != KIND:
            raise checkpoint.CheckpointError(f"{path} does not hold a super-resolution "
                                             f"transformer (kind {stored.metadata.get('kind')!r})")
        if tokenizer is None and (Path(path).parent / "tokenizer.model").is_file():
            tokenizer = Path(path).parent / "tokenizer.model"
        if isinstance(tokenizer, (str, Path)):
            tokenizer = Tokenizer.load(tokenizer)
        state = backend.default_generator.state_dict()
        model = cls(SuperResTransformerConfig.from_dict(stored.config), tokenizer=tokenizer)
        backend.default_generator.load_state_dict(state)  # loading draws nothing
        model.load_state_dict(stored.tensors)
        return model.to(device)


# --------------------------------------------------------------------------- #
# Training data and the training entry.
# --------------------------------------------------------------------------- #


@dataclass
class SuperResTokens:
    """Paired token grids of the same images: ``tokens`` (N, 16, 16) from the
    super-resolution tokenizer, ``low_tokens`` (N, 8, 8) from the base one, and captions."""

    tokens: np.ndarray
    low_tokens: np.ndarray
    captions: list

    def __len__(self) -> int:
        return len(self.tokens)


def superres_tokens(low_cache, high_cache) -> SuperResTokens:
    """Pair a base-tokenizer cache and a super-resolution-tokenizer cache of the same images.

    Both are :class:`tinymuse.vq.ImageTokens` from :func:`tinymuse.vq.pre_encode` over the
    same dataset (e.g. ``ShapesDataset(32, seed=s)`` and ``ShapesDataset(64, seed=s)``: the
    same scenes at two resolutions). Their dataset indices and captions must agree row by row.
    """
    if len(low_cache) != len(high_cache):
        raise ValueError(f"the caches hold {len(low_cache)} and {len(high_cache)} grids; "
                         f"pre-encode the same examples with both tokenizers")
    low_indices = getattr(low_cache, "indices", None)
    high_indices = getattr(high_cache, "indices", None)
    if low_indices is not None and high_indices is not None and \
            not np.array_equal(np.asarray(low_indices), np.asarray(high_indices)):
        raise ValueError("the caches come from different dataset examples (their indices "
                         "differ); pre-encode the same examples with both tokenizers")
    if list(low_cache.captions) != list(high_cache.captions):
        row = next(i for i, (a, b) in enumerate(zip(low_cache.captions, high_cache.captions))
                   if a != b)
        raise ValueError(f"the caches disagree on the caption of row {row} "
                         f"({low_cache.captions[row]!r} vs {high_cache.captions[row]!r}): they "
                         f"are not the same images (same dataset seed and split for both?)")
    return SuperResTokens(np.asarray(high_cache.tokens), np.asarray(low_cache.tokens),
                          list(high_cache.captions))


def superres_sampler(vq, low_tokens, steps: int = 8, guidance_scale: float = 0.0,
                     batch_size: int = 64):
    """``generate_images(model, prompts)`` for a :class:`tinymuse.train.SampleMonitor` of the
    super-resolution stage: the i-th prompt is drawn on ``low_tokens[i]`` (e.g. the true
    low-resolution grids of the prompts' images) and decoded by the super-resolution ``vq``."""
    low_tokens = np.asarray(low_tokens)

    def generate_images(model, prompts):
        if len(prompts) > len(low_tokens):
            raise ValueError(f"{len(prompts)} prompts but only {len(low_tokens)} "
                             f"low-resolution grids to draw them on")
        images = []
        for start in range(0, len(prompts), batch_size):
            end = min(start + batch_size, len(prompts))
            tokens = model.generate(prompts[start:end], low_tokens[start:end], steps=steps,
                                    guidance_scale=guidance_scale).tokens
            with no_grad():
                images.append(vq.decode(tokens).numpy())
        return np.concatenate(images)

    return generate_images


def superres_monitor(cache: SuperResTokens, vq, count: int = 16, steps: int = 8,
                     guidance_scale: float = 0.0, out_dir=None):
    """A :class:`tinymuse.train.SampleMonitor` for the super-resolution stage: it draws the
    first ``count`` captions of ``cache`` on their true low-resolution tokens, so the samples
    show what this stage adds (detail), apart from the base stage's mistakes."""
    from ..train import SampleMonitor

    count = min(count, len(cache))
    return SampleMonitor(list(cache.captions[:count]),
                         superres_sampler(vq, cache.low_tokens[:count], steps, guidance_scale),
                         out_dir=out_dir)


def train_superres(model: SuperResTransformer, cache: SuperResTokens, config=None,
                   out_dir=None, **options):
    """Train the super-resolution stage with :func:`tinymuse.train.train_stage` on a paired
    cache (:func:`superres_tokens`); ``options`` go to ``train_stage`` (``monitor``, e.g.
    :func:`superres_monitor`, ``resume``, ``stop_at``). Returns its
    :class:`~tinymuse.train.TrainResult`; the weights are in ``out_dir/model.safetensors``
    (:meth:`SuperResTransformer.load`)."""
    from ..train import train_stage

    if not hasattr(cache, "low_tokens"):
        raise TypeError(f"train_superres needs paired base and super-resolution tokens; got a "
                        f"{type(cache).__name__}. Pair two caches with "
                        f"superres_tokens(base_cache, superres_cache)")
    return train_stage(model, cache, config, out_dir, **options)
