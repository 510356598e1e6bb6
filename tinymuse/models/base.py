"""The base transformer: a masked image-token model conditioned on text (Muse §2.2).

An image is a grid of ``N = h·w`` tokens from the VQ tokenizer (8×8 for the 32×32 base
images), each an id in ``[0, K)`` for a codebook of ``K`` codes. Training hides a random
subset of them behind an extra id, ``[MASK] = K``, and asks the model for the originals:

    input    x̃_i = [MASK] if m_i else x_i          m: a random mask (tinymuse.masking)
    h₀       = E[x̃] + P                            token embeddings + learned positions
    h        = Block_L(… Block_1(h₀, c))            pre-norm blocks: self-attention over the
                                                     image tokens, cross-attention to c
    logits   = W · LayerNorm(h)                     (B, N, K): a distribution over the codes
    loss     = Σ_i m_i · CE_ε(logits_i, x_i) / Σ_i m_i

``c`` is the caption: the frozen text encoder's per-token vectors, projected to the model's
width, with the text padding mask so no image token attends to padding. ``CE_ε`` is
cross-entropy with label smoothing ε (0.1). Only masked positions count: the unmasked ones
can see their own answer in the input, and a loss there would only teach copying.

Classifier-free guidance (Ho & Salimans, 2022; Muse §2.7) needs the same model to also
predict *without* a caption. So during training each caption is replaced by the empty prompt
with probability ``caption_dropout`` (0.1). The empty prompt is the text encoder's [CLS]
token alone (every text position masked out), the same context the unconditional branch of
guidance in :func:`tinymuse.decoding.sample_stage` uses.

Three silent bugs have shipped in open reimplementations of this step: true ids fed in at
masked positions (the model learns to copy), the loss taken over all positions, and an
inverted mask. ``tests/test_base_model.py`` checks each of them.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .. import backend, checkpoint, nn
from .. import functional as F
from ..masking import apply_mask, sample_training_mask
from ..tensor import Tensor, no_grad
from ..text.encoder import TextEncoder, TextEncoderConfig
from ..text.tokenizer import Tokenizer

__all__ = ["BaseTransformerConfig", "BaseTransformer", "TextContext", "MaskedStep",
           "masked_token_loss", "load_tokenizer_beside", "TokenModelConfig"]


@dataclass
class TokenModelConfig:
    """Sizes and training choices every token transformer of this package shares: the base
    and super-resolution transformers and the autoregressive baseline.

    ``codebook_size`` and ``grid_size`` come from the VQ tokenizer (the extra embedding row
    is ``codebook_size``); ``text`` must describe the (pretrained) text encoder that will be
    plugged in.
    """

    codebook_size: int = 256
    grid_size: int = 8
    d_model: int = 256
    num_layers: int = 4
    num_heads: int = 8
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    text: TextEncoderConfig = field(default_factory=TextEncoderConfig)
    train_text_encoder: bool = False  # True: fine-tune the text encoder jointly (a comparison)
    label_smoothing: float = 0.1
    caption_dropout: float = 0.1

    @property
    def num_tokens(self) -> int:
        return self.grid_size * self.grid_size

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict):
        """The config from its ``to_dict()`` (a checkpoint's JSON), refusing unknown fields
        and rebuilding the nested text encoder config."""
        values = dict(values)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(values) - names
        if unknown:
            raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; "
                             f"known: {sorted(names)}")
        if isinstance(values.get("text"), dict):
            values["text"] = TextEncoderConfig.from_dict(values["text"])
        return cls(**values)


@dataclass
class BaseTransformerConfig(TokenModelConfig):
    """Sizes and training choices of a :class:`BaseTransformer`: the shared ones
    (:class:`TokenModelConfig`) and the schedule of its training masks; ``[MASK] =
    codebook_size``."""

    mask_schedule: str = "cosine"

    @property
    def mask_id(self) -> int:
        return self.codebook_size


class TextContext(NamedTuple):
    """What the image tokens cross-attend to: ``embeddings`` (B, T, d_model), already
    projected to the model's width, and ``mask`` (B, T), True where a text token is real."""

    embeddings: Tensor
    mask: object

    def concat(self, other: "TextContext") -> "TextContext":
        """This batch and ``other`` as one batch (rows of ``self`` first), padding the shorter
        text with masked-out zeros. :func:`tinymuse.decoding.decode` uses it to run the
        conditional and the unconditional rows of guidance in one model call."""
        xp = backend.get_array_module(self.mask)
        length = max(self.mask.shape[1], other.mask.shape[1])

        def padded(context):
            b, t, d = context.embeddings.shape
            extra = length - t
            embeddings = context.embeddings.data
            if extra:
                embeddings = xp.concatenate([embeddings, xp.zeros((b, extra, d), embeddings.dtype)], 1)
            mask = xp.concatenate([context.mask, xp.zeros((b, extra), bool)], 1)
            return embeddings, mask

        (e1, m1), (e2, m2) = padded(self), padded(other)
        return TextContext(Tensor(xp.concatenate([e1, e2])), xp.concatenate([m1, m2]))


class MaskedStep(NamedTuple):
    """One training step's result: the ``loss`` to backpropagate, the share of masked
    tokens predicted right (``accuracy``, argmax = target) and how many were masked."""

    loss: Tensor
    accuracy: float
    num_masked: int


def masked_token_loss(logits: Tensor, targets, mask, label_smoothing: float = 0.1):
    """Cross-entropy over the masked positions only: ``(loss, accuracy)``.

    ``logits`` (B, N, K), ``targets`` int (B, N), ``mask`` bool (B, N), True = masked. The mean
    is over the masked positions (``Σ m_i ℓ_i / Σ m_i``), so the targets at unmasked positions
    cannot change the loss or its gradient. ``accuracy`` is the share of masked positions whose
    argmax is the target.
    """
    # BEGIN EXERCISE ch06_ex2
    loss = F.cross_entropy(logits, targets, weight=mask, label_smoothing=label_smoothing)
    correct = (logits.data.argmax(axis=-1) == targets) & mask
    accuracy = float(correct.sum()) / max(1, int(mask.sum()))
    return loss, accuracy
    # END EXERCISE


class BaseTransformer(nn.Module):
    """Text-conditioned masked transformer over a grid of image tokens.

    ``text_encoder`` is usually a pretrained :class:`TextEncoder` (frozen unless
    ``config.train_text_encoder``); ``tokenizer`` (a :class:`tinymuse.text.Tokenizer`) is
    needed only to turn prompt strings into ids (:meth:`encode_prompts`).
    """

    KIND = "base_transformer"  # what its checkpoint's metadata says it holds
    config_type = BaseTransformerConfig

    def __init__(self, config: BaseTransformerConfig | None = None,
                 text_encoder: TextEncoder | None = None, tokenizer=None, generator=None):
        super().__init__()
        self.config = config = config or BaseTransformerConfig()
        if text_encoder is None:
            text_encoder = TextEncoder(config.text, generator=generator)
        elif text_encoder.config != config.text:
            raise ValueError(f"the text encoder's config {text_encoder.config} differs from "
                             f"config.text {config.text}; build the config with "
                             f"text=encoder.config")
        if tokenizer is not None and tokenizer.vocab_size != config.text.vocab_size:
            raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the text encoder "
                             f"expects vocab_size={config.text.vocab_size}")
        d = config.d_model
        self.text_encoder = text_encoder
        self.text_projection = nn.Linear(config.text.d_model, d, generator=generator)
        # codebook_size + 1 rows: the codes, then [MASK].
        self.token_embedding = nn.Embedding(config.codebook_size + 1, d, generator=generator)
        self.positions = nn.Parameter(np.zeros((config.num_tokens, d), np.float32))
        nn.init.normal_(self.token_embedding.weight, 0.0, 0.02, generator)
        nn.init.normal_(self.positions, 0.0, 0.02, generator)
        self.blocks = nn.ModuleList([
            nn.TransformerBlock(d, config.num_heads, config.mlp_ratio, context_dim=d,
                                dropout=config.dropout, generator=generator)
            for _ in range(config.num_layers)])
        self.norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, config.codebook_size, generator=generator)  # never predicts [MASK]
        self.tokenizer = tokenizer  # a plain attribute: not a Module, not saved in state_dict
        # Both ways: an encoder taken from a frozen model must thaw for joint training.
        for param in self.text_encoder.parameters():
            param.requires_grad_(config.train_text_encoder)
        if not config.train_text_encoder:
            self.text_encoder.eval()

    @property
    def mask_id(self) -> int:
        return self.config.mask_id

    def train(self, mode: bool = True) -> "BaseTransformer":
        super().train(mode)
        if not self.config.train_text_encoder:
            self.text_encoder.train(False)  # frozen means frozen: no dropout either
        return self

    # ---------------------------------------------------------------- text
    def encode_text(self, ids, mask) -> TextContext:
        """Caption ids and padding mask (from ``Tokenizer.encode_batch``) → :class:`TextContext`."""
        if self.config.train_text_encoder:
            encoding = self.text_encoder(ids, mask)
        else:
            with no_grad():
                encoding = self.text_encoder(ids, mask)
        return TextContext(self.text_projection(encoding.embeddings), encoding.mask)

    def tokenize(self, prompts, check_words: bool = True):
        """Prompt strings → ``(ids, mask)``. With ``check_words``, every word must be one the
        tokenizer was trained on (an unknown word raises an error that names it and lists the
        known words). A blank prompt is the empty prompt: no text tokens, only [CLS]."""
        if self.tokenizer is None:
            raise ValueError("this BaseTransformer has no tokenizer, so it cannot read prompt "
                             "strings; pass tokenizer=Tokenizer.load(...) when building or "
                             "loading it")
        if isinstance(prompts, str):
            raise TypeError("pass a list of prompts, e.g. ['a red circle']")
        prompts = list(prompts)
        longest = self.config.text.max_length
        for prompt in prompts:
            if not prompt.strip():
                continue
            if check_words and self.tokenizer.known_words is not None:
                self.tokenizer.check_words(prompt)
            if len(self.tokenizer.encode(prompt)) > longest:
                raise ValueError(f"the prompt {prompt!r} is {len(self.tokenizer.encode(prompt))} "
                                 f"tokens long, more than the text encoder's max_length="
                                 f"{longest}; shorten it")
        ids, mask = self.tokenizer.encode_batch(prompts, max_length=longest)
        blank = np.array([not p.strip() for p in prompts], dtype=bool)
        ids[blank] = self.config.text.pad_id
        mask[blank] = False
        width = int(mask.sum(axis=1).max(initial=0))  # drop the columns that are padding everywhere
        return ids[:, :width].astype(np.int64), mask[:, :width]

    def encode_prompts(self, prompts) -> TextContext:
        """Prompt strings → :class:`TextContext` (see :meth:`tokenize`)."""
        ids, mask = self.tokenize(prompts)
        return self.encode_text(ids, mask)

    def prompt_context(self, prompts, low_tokens=None) -> TextContext:
        """What decoding conditions on for ``prompts``: their :class:`TextContext`. (The
        super-resolution model adds the base stage's ``low_tokens``; this one reads none.)"""
        if low_tokens is not None:
            raise ValueError("the base transformer draws from text alone; low-resolution tokens "
                             "are for the super-resolution transformer")
        return self.encode_prompts(prompts)

    def drop_captions(self, ids, mask, generator: backend.Generator):
        """Replace each caption by the empty prompt with probability ``caption_dropout``.

        Returns ``(ids, mask, dropped)``; a dropped row has every text position masked out
        (only [CLS] remains) and ``pad_id`` ids. Draws ``generator.random((B,))``.
        """
        # BEGIN EXERCISE ch06_ex3
        xp = backend.get_array_module(ids)
        dropped = generator.random((ids.shape[0],), device=backend.device_of(ids))
        dropped = dropped < self.config.caption_dropout
        ids = xp.where(dropped[:, None], self.config.text.pad_id, ids).astype(ids.dtype, copy=False)
        mask = mask & ~dropped[:, None]
        return ids, mask, dropped
        # END EXERCISE

    # -------------------------------------------------------------- tokens
    def logits(self, tokens, context: TextContext) -> Tensor:
        """Logits (B, N, K) over the codebook for image tokens (B, N) (or (B, h, w)) holding
        ``mask_id`` at masked positions, given the text ``context``."""
        tokens = self.token_rows(tokens, context)
        x = self.embed_inputs(tokens, context)
        for block in self.blocks:
            x = block(x, context.embeddings, context_mask=context.mask)
        return self.head(self.norm(x))

    forward = logits

    def token_rows(self, tokens, context: TextContext):
        """Grids (B, N) or (B, h, w), an array or a Tensor, as (B, N) on the model's device,
        checked against the grid size and the number of text contexts."""
        tokens = tokens.data if isinstance(tokens, Tensor) else tokens
        tokens = backend.to_device(tokens, self.device)
        batch = tokens.shape[0]
        tokens = tokens.reshape(batch, -1)
        if tokens.shape[1] != self.config.num_tokens:
            raise ValueError(f"expected {self.config.num_tokens} image tokens per example "
                             f"({self.config.grid_size}×{self.config.grid_size}), got "
                             f"{tokens.shape[1]}")
        if context.embeddings.shape[0] != batch:
            raise ValueError(f"{batch} token grids but {context.embeddings.shape[0]} text contexts")
        return tokens

    def embed_inputs(self, tokens, context: TextContext) -> Tensor:
        """The first layer's input (B, N, d): token embedding + learned position."""
        return self.token_embedding(tokens) + self.positions

    def training_loss(self, batch: dict, generator: backend.Generator) -> MaskedStep:
        """The masked-token loss on one batch: ``tokens`` (B, h, w) image tokens, and their
        captions as ``text_ids`` and ``text_mask`` (B, T) (:meth:`tokenize`).

        Draws from ``generator``, in order: caption dropout (:meth:`drop_captions`), then the
        training mask (:func:`tinymuse.masking.sample_training_mask` with ``mask_schedule``).
        """
        xp = backend.xp_for(self.device)
        tokens = backend.to_device(batch["tokens"], self.device)
        tokens = tokens.reshape(tokens.shape[0], -1).astype(np.int64, copy=False)
        ids = backend.to_device(batch["text_ids"], self.device)
        text_mask = backend.to_device(batch["text_mask"], self.device)
        # BEGIN EXERCISE ch06_ex4
        ids, text_mask, _ = self.drop_captions(ids, text_mask, generator)
        mask = sample_training_mask(tokens.shape[0], tokens.shape[1], generator,
                                    self.config.mask_schedule, device=self.device)
        inputs = apply_mask(tokens, mask, self.mask_id)
        logits = self.logits(inputs, self.training_context(batch, ids, text_mask, generator))
        loss, accuracy = masked_token_loss(logits, tokens, mask, self.config.label_smoothing)
        return MaskedStep(loss, accuracy, int(xp.count_nonzero(mask)))
        # END EXERCISE

    def training_context(self, batch: dict, ids, text_mask, generator: backend.Generator):
        """What the transformer attends to in a training step: the (possibly dropped)
        caption's text context. A model that reads more (the super-resolution model's
        low-resolution tokens) adds it here, drawing from ``generator`` after the mask."""
        return self.encode_text(ids, text_mask)

    # -------------------------------------------------------------- files
    def save(self, path, metadata: dict | None = None):
        """Weights and config to a ``.safetensors`` checkpoint (the tokenizer is saved apart,
        by ``Tokenizer.save``); returns the path."""
        return checkpoint.save(path, self.state_dict(), self.config.to_dict(),
                               {"kind": self.KIND, **(metadata or {})})

    @classmethod
    def load(cls, path, tokenizer=None, device: str = "cpu"):
        """A model built from the config stored in ``path``, with its weights. ``tokenizer``
        is a Tokenizer or a path; by default ``tokenizer.model`` beside the checkpoint is
        loaded if it exists. Loading leaves the default random generator as it was."""
        stored = checkpoint.load(path)
        if stored.metadata.get("kind") != cls.KIND:
            raise checkpoint.CheckpointError(f"{path} does not hold a {cls.KIND.replace('_', ' ')}"
                                             f" (kind {stored.metadata.get('kind')!r})")
        config = cls.config_type.from_dict(stored.config)
        with backend.default_generator_kept():
            model = cls(config, tokenizer=load_tokenizer_beside(path, tokenizer))
        model.load_state_dict(stored.tensors)
        return model.to(device)


def load_tokenizer_beside(path, tokenizer=None):
    """``tokenizer`` itself, a Tokenizer loaded from it if it is a path, or by default the
    ``tokenizer.model`` beside the checkpoint ``path`` (None if there is none)."""
    if tokenizer is None and (Path(path).parent / "tokenizer.model").is_file():
        tokenizer = Path(path).parent / "tokenizer.model"
    if isinstance(tokenizer, (str, Path)):
        tokenizer = Tokenizer.load(tokenizer)
    return tokenizer
