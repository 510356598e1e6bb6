"""The cascade, end to end: a prompt in, a 64×64 picture out (Muse §2).

    prompt ─SentencePiece─► ids ─TextEncoder (frozen)─► text embeddings
          ─BaseTransformer─► 8×8 tokens ─SuperResTransformer─► 16×16 tokens
          ─VQ decoder (super-resolution tokenizer)─► image (B, 3, 64, 64)

:class:`Pipeline` holds the six parts (tokenizer, text encoder, base VQ + base transformer,
super-resolution VQ + super-resolution transformer) and runs them:

- :meth:`Pipeline.generate`: text → image, with the decoding steps, guidance scale and
  temperature of each stage and a seed (the same seed gives the same images);
- :meth:`Pipeline.inpaint`, :meth:`Pipeline.outpaint`, :meth:`Pipeline.edit`: editing an
  existing image without any fine-tuning (:mod:`tinymuse.editing` explains how);
- :meth:`Pipeline.save` / :meth:`Pipeline.load`: one directory holding everything.

Images. Outputs are float32 NCHW arrays in [-1, 1] (``output="float"``, the default), uint8
HWC arrays (``output="uint8"``, shape (B, H, W, 3), what Pillow and the oracle read) or a list
of ``PIL.Image`` (``output="pil"``). Inputs to the editing methods may be any of these, or a
path to an image file; see :func:`tinymuse.editing.load_images`.

The saved directory::

    pipeline.json                 what the directory holds: file names, every part's config,
                                  the storage dtype
    tokenizer.model               the SentencePiece model (+ tokenizer.words.json, its words)
    text_encoder.safetensors      the frozen text encoder, stored once for both stages
    base_vq.safetensors           base VQ tokenizer (32×32 ⇄ 8×8)
    base.safetensors              base transformer (without the text encoder)
    superres_vq.safetensors       super-resolution VQ tokenizer (64×64 ⇄ 16×16)
    superres.safetensors          super-resolution transformer (without the text encoder)

Each ``.safetensors`` file is a :mod:`tinymuse.checkpoint` (checksummed, never pickle) and
also carries its own config; :meth:`Pipeline.load` checks it against ``pipeline.json``, so a
directory whose files were mixed up is refused with a message that names the file.
``save(dtype="float16")`` halves the size (for bundling); loading always gives float32.
"""
from __future__ import annotations

import contextlib
import json
import numbers
from pathlib import Path
from typing import NamedTuple

import numpy as np

from . import backend, checkpoint, decoding, editing
from .models.base import BaseTransformer, BaseTransformerConfig, TextContext
from .models.superres import SuperResTransformer, SuperResTransformerConfig
from .tensor import Tensor, no_grad
from .text.encoder import TextEncoder, TextEncoderConfig
from .text.tokenizer import Tokenizer
from .vq import VQConfig, VQTokenizer

__all__ = ["Pipeline", "PipelineOutput", "OUTPUTS"]

FORMAT = "tinymuse-pipeline/1"
CONFIG_FILE = "pipeline.json"
TOKENIZER_FILE = "tokenizer.model"
FILES = {"text_encoder": "text_encoder.safetensors", "base_vq": "base_vq.safetensors",
         "base": "base.safetensors", "superres_vq": "superres_vq.safetensors",
         "superres": "superres.safetensors"}
OUTPUTS = ("float", "uint8", "pil")
DTYPES = ("float32", "float16")

# Default decoding steps of (base, super-resolution): Muse's own 24 and 8. Each base step
# fixes a few of the 64 tokens; with fewer steps more of them are chosen together, before
# they can see one another. On 700 prompts the bundled cascade scored "all" 0.88 / 0.86
# (seeds 0 / 1; guidance 3, temperature 1) at 24 base steps, 0.86 / 0.84 at 16 and 0.84 / 0.82
# at 12, glyphs 0.81 / 0.73 at 24 against 0.71 / 0.73 at 12 (README, "Measured"). They cost `tinymuse demo` 4.6 s
# single-threaded, against 2.5 s at its earlier 8 + 6 (measured the same day).
STEPS = (24, 8)

# Default sampling temperatures of (base, super-resolution). The base stage decides the picture
# and must sample (temperature 0 would draw the same picture for every seed), but a little below
# 1, where it drew fewer stray second objects. The super-resolution stage only adds detail to a
# decided picture: sampling its tokens at temperature 1 scattered stray specks and frayed the
# shapes, while the most likely token kept them (on true 8×8 tokens of unseen scenes, shape
# accuracy 0.49 → 0.72, glyphs 0.04 → 0.43). The base stage's 0.8 was chosen together with its
# guidance scale, below.
TEMPERATURES = (0.8, 0.0)

# Default choice temperatures of (base, super-resolution): the scale of the Gumbel noise added to
# the confidences that pick which sampled tokens to keep at each decoding step
# (tinymuse.decoding.decode). MaskGIT's 4.5 was chosen for 16×16 grids of 1,024 codes; on the 8×8
# base grid it made the base stage keep unlikely tokens early and build on them. Without the noise
# (each token is still sampled, so seeds still differ) the then-bundled base stage's own pictures
# scored "all" 0.58 instead of 0.46 on 700 prompts, and the cascade's 0.01–0.03 better (0.05–0.10
# with weaker weights, whose base-stage mistakes the super-resolution stage could not hide). The
# super-resolution stage, which takes the likeliest token anyway, scored the same either way and
# keeps MaskGIT's value. README, "Measured", has the numbers.
CHOICE_TEMPERATURES = (0.0, 4.5)

# Default classifier-free guidance scales of (base, super-resolution). Guidance makes the base
# stage draw what the prompt says (its pictures scored "all" 0.42 unguided on 700 prompts at 8
# steps, 0.65 guided), but too strong a pull draws extra objects. With scale 2 and temperature 0.8
# instead of the earlier 3 and 1, the bundled base stage's own 32×32 pictures scored "all" 0.87 /
# 0.87 / 0.86 / 0.86 instead of 0.80 / 0.80 / 0.80 / 0.82 (700 prompts, seeds 0–3; either change
# alone: 0.82–0.86); asked for one object (400 seen prompts, seeds 0 / 1) it drew exactly one
# 0.973 / 0.983 of the time instead of 0.917 / 0.970, of the right shape 0.963 / 0.965 instead of
# 0.948 / 0.943. The whole cascade scored the same (0.86 on average, glyphs 0.80 instead of 0.75).
# The super-resolution stage, guided, drew no better on generated 8×8 tokens (700 prompts: oracle
# "all" 0.31 guided at 3, 0.32 unguided) and worse on the true tokens of real scenes (0.70 against
# 0.83, glyphs 0.41 against 0.68), and unguided it runs once per step instead of twice. README,
# "Measured", has the numbers.
GUIDANCE = (2.0, 0.0)

# Default guidance schedules of (base, super-resolution) (tinymuse.decoding.guidance_scale_at):
# "linear" raises the base stage's scale from s/T at the first step to s at the last, so the first
# tokens, which the rest of the picture is built on, are drawn close to the model's own idea of a
# picture, and the prompt's pull grows as the grid fills in. On 700 prompts the bundled cascade
# scored "all" 0.88 / 0.86 (seeds 0 / 1, scale 3) with it against 0.84 / 0.85 with the constant
# scale, the previous weights 0.82 / 0.82 against 0.79 / 0.81 (README, "Measured"). The unguided
# super-resolution stage has nothing to ramp.
GUIDANCE_SCHEDULE = ("linear", "constant")


class PipelineOutput(NamedTuple):
    """What the pipeline returns with ``return_tokens=True``: the images and the token grids
    of both stages, ``base_tokens`` (B, 8, 8) and ``superres_tokens`` (B, 16, 16), NumPy int64."""

    images: object
    base_tokens: np.ndarray
    superres_tokens: np.ndarray


def per_stage(value, name: str) -> tuple:
    """``value`` for (base, super-resolution): one number for both, or a pair."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} is one value for both stages or a pair (base, "
                             f"super-resolution); got {value!r}")
        return tuple(value)
    return value, value


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _check_steps(steps, name: str) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"{name} must be a positive whole number of decoding steps; "
                         f"got {steps!r}")
    return int(steps)


def _check_scales(values, name: str, zero_means: str) -> None:
    for value in values:
        if not _is_number(value) or value < 0:
            raise ValueError(f"{name} must be a number >= 0 (0: {zero_means}), got {value!r}")


@contextlib.contextmanager
def _sampling(*models):
    """Evaluation mode and no graph for the duration, the previous modes restored after."""
    modes = [m.training for m in models]
    for m in models:
        m.eval()
    try:
        with no_grad():
            yield
    finally:
        for m, mode in zip(models, modes):
            m.train(mode)


@contextlib.contextmanager
def _default_generator_untouched():
    """Building a model draws initial weights from the default generator; when the weights
    are loaded right after, that draw should leave no trace."""
    state = backend.default_generator.state_dict()
    try:
        yield
    finally:
        backend.default_generator.load_state_dict(state)


class Pipeline:
    """Text → base tokens → super-resolution tokens → image (see the module docstring).

    Build one from trained parts with :meth:`from_components`, load a saved one with
    :meth:`load`, or make a small random one for experiments and tests with :meth:`tiny`.
    The two transformers should share one frozen text encoder.
    """

    def __init__(self, tokenizer: Tokenizer, base_vq: VQTokenizer, base: BaseTransformer,
                 superres_vq: VQTokenizer, superres: SuperResTransformer):
        self.tokenizer = tokenizer
        self.base_vq, self.base = base_vq, base
        self.superres_vq, self.superres = superres_vq, superres
        self._check_parts()
        base.tokenizer = superres.tokenizer = tokenizer
        for model in self.models:
            model.eval()

    @classmethod
    def from_components(cls, *, tokenizer, base_vq, base, superres_vq,
                        superres) -> "Pipeline":
        """A pipeline from trained parts (keywords only, so none is swapped by accident)."""
        return cls(tokenizer, base_vq, base, superres_vq, superres)

    @classmethod
    def tiny(cls, seed: int = 0, tokenizer: Tokenizer | None = None,
             image_size: int = 64) -> "Pipeline":
        """A small pipeline with random weights, for tests and experiments: it draws noise,
        but it has every shape, check and code path of a trained one. With the default
        ``image_size=64`` it has the real sizes (8×8 base tokens of 32×32 images, 16×16
        super-resolution tokens of 64×64 images); any multiple of 8 works (the grids are
        ``image_size/8`` and ``image_size/4``). Without a ``tokenizer`` one is trained on
        300 shapes-world captions."""
        from .text.pretrain import shapes_captions

        if image_size % 8 or image_size < 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {image_size}")
        if tokenizer is None:
            tokenizer = Tokenizer.train(shapes_captions(300, seed=seed), vocab_size=200)
        generator = backend.Generator(seed)
        with _default_generator_untouched():
            backend.manual_seed(seed)  # the VQ layers draw from the default generator
            text = TextEncoderConfig(vocab_size=tokenizer.vocab_size, max_length=24,
                                     d_model=16, num_layers=1, num_heads=2)
            encoder = TextEncoder(text, generator=generator)

            def vq(size):  # two stride-2 levels: a token per 4×4 pixels
                return VQTokenizer(VQConfig(image_size=size, channels=8, channel_mult=(1, 1, 1),
                                            norm_groups=4, codebook_size=32, code_dim=8), seed)

            base_vq, superres_vq = vq(image_size // 2), vq(image_size)
            low, high = base_vq.config.token_size, superres_vq.config.token_size
            base = BaseTransformer(
                BaseTransformerConfig(codebook_size=32, grid_size=low, d_model=32, num_layers=1,
                                      num_heads=2, text=text),
                text_encoder=encoder, tokenizer=tokenizer, generator=generator)
            superres = SuperResTransformer(
                SuperResTransformerConfig(codebook_size=32, grid_size=high, low_codebook_size=32,
                                          low_grid_size=low, low_num_layers=1, d_model=32,
                                          num_layers=1, num_heads=2, text=text),
                text_encoder=encoder, tokenizer=tokenizer, generator=generator)
        return cls(tokenizer, base_vq, base, superres_vq, superres)

    # ------------------------------------------------------------- parts
    @property
    def models(self) -> list:
        return [self.base_vq, self.base, self.superres_vq, self.superres]

    @property
    def text_encoder(self) -> TextEncoder:
        return self.base.text_encoder

    @property
    def image_size(self) -> int:
        """The side of the images the pipeline draws and edits (64 by default)."""
        return self.superres_vq.config.image_size

    @property
    def base_image_size(self) -> int:
        return self.base_vq.config.image_size

    @property
    def device(self) -> str:
        return self.base.device

    def to(self, device: str) -> "Pipeline":
        """Move every part to ``device`` ("cpu" or "cuda"), in place; returns the pipeline."""
        for model in self.models:
            model.to(device)
        return self

    def _check_parts(self) -> None:
        base, superres = self.base, self.superres
        bvq, svq = self.base_vq.config, self.superres_vq.config
        if not isinstance(superres, SuperResTransformer):
            raise TypeError(f"superres must be a SuperResTransformer, got "
                            f"{type(superres).__name__}")
        problems = []
        if (base.config.codebook_size, base.config.grid_size) != (bvq.codebook_size,
                                                                   bvq.token_size):
            problems.append(f"the base transformer expects a {base.config.codebook_size}-code "
                            f"codebook on a {base.config.grid_size}×{base.config.grid_size} "
                            f"grid, the base VQ gives {bvq.codebook_size} codes on "
                            f"{bvq.token_size}×{bvq.token_size}")
        if (superres.config.codebook_size, superres.config.grid_size) != (svq.codebook_size,
                                                                           svq.token_size):
            problems.append(f"the super-resolution transformer expects a "
                            f"{superres.config.codebook_size}-code codebook on a "
                            f"{superres.config.grid_size}×{superres.config.grid_size} grid, "
                            f"the super-resolution VQ gives {svq.codebook_size} codes on "
                            f"{svq.token_size}×{svq.token_size}")
        if (superres.config.low_codebook_size, superres.config.low_grid_size) != (
                bvq.codebook_size, bvq.token_size):
            problems.append(f"the super-resolution transformer reads low-resolution tokens "
                            f"of {superres.config.low_codebook_size} codes on "
                            f"{superres.config.low_grid_size}×{superres.config.low_grid_size}, "
                            f"the base VQ gives {bvq.codebook_size} codes on "
                            f"{bvq.token_size}×{bvq.token_size}")
        if svq.image_size % bvq.image_size or svq.token_size % bvq.token_size:
            problems.append(f"the super-resolution images ({svq.image_size}² px, "
                            f"{svq.token_size}² tokens) must be a whole multiple of the base "
                            f"images ({bvq.image_size}² px, {bvq.token_size}² tokens)")
        if base.config.text != superres.config.text:
            problems.append("the two transformers were built for different text encoders")
        if self.tokenizer.vocab_size != base.config.text.vocab_size:
            problems.append(f"the tokenizer has {self.tokenizer.vocab_size} ids, the text "
                            f"encoder expects {base.config.text.vocab_size}")
        if problems:
            raise ValueError("these parts do not form a cascade:\n  " + "\n  ".join(problems))

    # -------------------------------------------------------- generation
    def generate(self, prompts, *, base_steps: int | None = None, sr_steps: int | None = None,
                 guidance_scale=None, temperature=None, top_k=None, negative_prompt=None,
                 seed: int | None = None, output: str = "float",
                 return_tokens: bool = False, choice_temperature=None, guidance_schedule=None):
        """Draw one image per prompt.

        ``prompts``: a string or a list of strings. ``base_steps``/``sr_steps``: decoding steps
        of each stage (``None``: :data:`STEPS`, Muse's 24 and 8). ``guidance_scale``,
        ``temperature`` and ``top_k``: one value for both stages or a pair ``(base,
        super-resolution)`` (``guidance_scale=None``: :data:`GUIDANCE`, only the base stage is
        guided; ``temperature=None``: :data:`TEMPERATURES`, the base stage samples, the
        super-resolution stage takes the most likely token); ``choice_temperature``, one value
        or a pair, scales the noise on the confidences that choose which tokens each step keeps
        (``None``: :data:`CHOICE_TEMPERATURES`, none for the base stage); ``guidance_schedule``,
        one name or a pair, "constant" or "linear" (rising to ``guidance_scale`` at the last
        step; ``None``: :data:`GUIDANCE_SCHEDULE`); guidance contrasts each prompt with the
        empty prompt, or with ``negative_prompt`` (a string for all, or one per prompt).
        ``seed``: the same seed gives the same images (``None``: draw from
        ``tinymuse.manual_seed``'s generator). Returns the images (see ``output`` in the module
        docstring) or, with ``return_tokens``, a :class:`PipelineOutput`.
        """
        prompts = self._prompts(prompts)
        settings = self._settings(base_steps, sr_steps, guidance_scale, temperature, top_k,
                                  negative_prompt, len(prompts), output, choice_temperature,
                                  guidance_schedule)
        generator = self.generator(seed)
        low = self.decode_base(prompts, generator=generator, **settings["base"])
        high = self.decode_superres(prompts, low, generator=generator, **settings["superres"])
        return self.finish(low, high, output, return_tokens)

    def inpaint(self, image, pixel_mask, prompt, **options):
        """Regenerate the masked pixels of ``image`` under ``prompt``, keeping the rest
        (:func:`tinymuse.editing.inpaint`; same options as :meth:`generate`)."""
        return editing.inpaint(self, image, pixel_mask, prompt, **options)

    def outpaint(self, image, prompt, *, shift=None, extend=None, **options):
        """Shift the view (``shift=(dy, dx)`` pixels) or widen it (``extend``) and draw the
        newly uncovered region (:func:`tinymuse.editing.outpaint`)."""
        return editing.outpaint(self, image, prompt, shift=shift, extend=extend, **options)

    def edit(self, image, prompt, **options):
        """Mask-free editing: nudge ``image`` towards ``prompt`` by many small resamplings
        (:func:`tinymuse.editing.edit`)."""
        return editing.edit(self, image, prompt, **options)

    # ----------------------------------------------------- the two stages
    def generator(self, seed: int | None) -> backend.Generator:
        """The generator all draws of one call come from: ``Generator(seed)``, or the library's
        default generator for ``seed=None``."""
        if seed is None:
            return backend.default_generator
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        return backend.Generator(int(seed))

    def encode_prompts(self, model, prompts, negative_prompts, guidance_scale):
        """``(condition, uncond)`` text contexts for ``model``; ``uncond`` is None without
        guidance. Unknown words raise the tokenizer's error naming them."""
        condition = model.encode_prompts(prompts)
        uncond = None
        if guidance_scale:
            negatives = [""] * len(prompts) if negative_prompts is None else negative_prompts
            uncond = model.encode_prompts(negatives)
        return condition, uncond

    def decode_base(self, prompts, tokens=None, mask=None, *, steps: int = STEPS[0],
                    guidance_scale: float = 0.0, negative_prompts=None, generator=None,
                    **options) -> np.ndarray:
        """Base-stage token grids (B, h, w) for ``prompts``: all drawn, or, given ``tokens``
        (B, h, w) and a bool ``mask`` of the same shape, only the masked positions redrawn
        and every other one kept. ``options`` go to :func:`tinymuse.decoding.decode`."""
        model = self.base
        with _sampling(model):
            condition, uncond = self.encode_prompts(model, prompts, negative_prompts,
                                                    guidance_scale)
            return self._decode_grids(model, condition, uncond, len(prompts), tokens, mask,
                                      steps=steps, guidance_scale=guidance_scale,
                                      generator=generator, **options)

    def decode_superres(self, prompts, low_tokens, tokens=None, mask=None, *,
                        steps: int = STEPS[1], guidance_scale: float = 0.0,
                        negative_prompts=None, generator=None, **options) -> np.ndarray:
        """Super-resolution token grids (B, H, W) on the base stage's ``low_tokens``; with
        ``tokens`` and ``mask``, only the masked positions are redrawn (as
        :meth:`decode_base`)."""
        model = self.superres
        with _sampling(model):
            text, negative = self.encode_prompts(model, prompts, negative_prompts,
                                                 guidance_scale)
            condition = model.make_context(text, low_tokens)
            uncond = None if negative is None else model.make_context(negative, low_tokens)
            return self._decode_grids(model, condition, uncond, len(prompts), tokens, mask,
                                      steps=steps, guidance_scale=guidance_scale,
                                      generator=generator, **options)

    def _decode_grids(self, model, condition, uncond, count, tokens, mask, **options):
        """Parallel decoding of ``count`` token grids of ``model`` (all masked, or only
        ``mask`` of ``tokens``), returned as a NumPy array (count, grid, grid)."""
        start, mask = self._start(model, count, tokens, mask)
        result = decoding.decode(model.logits, start, condition, mask_id=model.mask_id,
                                 mask=mask, uncond_condition=uncond,
                                 concat_conditions=TextContext.concat, **options)
        grid = model.config.grid_size
        return backend.to_numpy(result.tokens).reshape(count, grid, grid)

    def edit_base(self, prompts, tokens, *, iterations: int, fraction: float, region=None,
                  guidance_scale: float = 4.0, temperature: float = 1.0, top_k=3,
                  negative_prompts=None, generator=None) -> np.ndarray:
        """Mask-free editing of base-stage grids ``tokens`` (B, h, w) towards ``prompts``
        (:func:`tinymuse.decoding.mask_free_edit`), resampling only inside ``region``
        (bool (B, h, w)) if given. Returns the edited grids."""
        model = self.base
        with _sampling(model):
            condition, uncond = self.encode_prompts(model, prompts, negative_prompts,
                                                    guidance_scale)
            start, allowed = self._start(model, len(prompts), tokens, region)
            result = decoding.mask_free_edit(
                model.logits, start, condition, mask_id=model.mask_id, iterations=iterations,
                fraction=fraction, region=allowed, temperature=temperature, top_k=top_k,
                guidance_scale=guidance_scale, uncond_condition=uncond,
                concat_conditions=TextContext.concat, generator=generator)
        return backend.to_numpy(result.tokens).reshape(np.shape(tokens))

    @staticmethod
    def _start(model, batch, tokens, mask):
        """The grid decoding starts from (device, (B, N) int64) and the mask to fill."""
        xp = backend.xp_for(model.device)
        if tokens is None:
            return xp.full((batch, model.config.num_tokens), model.mask_id, np.int64), None
        tokens = backend.to_device(np.asarray(backend.to_numpy(tokens)), model.device)
        tokens = tokens.reshape(batch, -1).astype(np.int64)
        if mask is not None:
            mask = backend.to_device(np.asarray(backend.to_numpy(mask), bool), model.device)
            mask = mask.reshape(batch, -1)
        return tokens, mask

    # ------------------------------------------------------- images ⇄ tokens
    def encode_images(self, images) -> tuple[np.ndarray, np.ndarray]:
        """``(base_tokens, superres_tokens)`` of images (anything
        :func:`tinymuse.editing.load_images` reads, at ``image_size``): the super-resolution
        tokenizer reads the image, the base tokenizer a copy shrunk to ``base_image_size`` by
        averaging pixel blocks."""
        images = editing.load_images(images, self.image_size)
        small = editing.downsample(images, self.image_size // self.base_image_size)
        with _sampling(self.base_vq, self.superres_vq):
            low = self.base_vq.encode(small.astype(np.float32)).numpy()
            high = self.superres_vq.encode(images).numpy()
        return low.astype(np.int64), high.astype(np.int64)

    def decode_tokens(self, superres_tokens, output: str = "float"):
        """Images for super-resolution token grids (B, H, W), in the ``output`` layout."""
        with _sampling(self.superres_vq):
            images = self.superres_vq.decode(np.asarray(superres_tokens)).numpy()
        return convert_images(images, output)

    def finish(self, low_tokens, high_tokens, output: str, return_tokens: bool):
        """Decode ``high_tokens`` to images; with ``return_tokens`` also give both grids."""
        images = self.decode_tokens(high_tokens, output)
        if return_tokens:
            return PipelineOutput(images, np.asarray(low_tokens), np.asarray(high_tokens))
        return images

    # ---------------------------------------------------------- checking
    @staticmethod
    def _prompts(prompts) -> list:
        if isinstance(prompts, str):
            return [prompts]
        if prompts is None or not hasattr(prompts, "__iter__"):
            raise TypeError(f"prompts must be a string or a list of strings, got {prompts!r}")
        prompts = list(prompts)
        if not prompts:
            raise ValueError("no prompts given: pass a string or a non-empty list of strings")
        for prompt in prompts:
            if not isinstance(prompt, str):
                raise TypeError(f"every prompt must be a string, got {prompt!r}")
        return prompts

    def _settings(self, base_steps, sr_steps, guidance_scale, temperature, top_k,
                  negative_prompt, batch, output, choice_temperature=None,
                  guidance_schedule=None) -> dict:
        """Check the options shared by generation and editing; split them by stage
        (``None``: :data:`STEPS`, :data:`GUIDANCE`, :data:`TEMPERATURES`,
        :data:`CHOICE_TEMPERATURES`, :data:`GUIDANCE_SCHEDULE`)."""
        base_steps = STEPS[0] if base_steps is None else base_steps
        sr_steps = STEPS[1] if sr_steps is None else sr_steps
        if guidance_scale is None:
            guidance_scale = GUIDANCE
        if temperature is None:
            temperature = TEMPERATURES
        if choice_temperature is None:
            choice_temperature = CHOICE_TEMPERATURES
        if guidance_schedule is None:
            guidance_schedule = GUIDANCE_SCHEDULE
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
        guidance, temperatures, choices, top_ks = (
            per_stage(guidance_scale, "guidance_scale"), per_stage(temperature, "temperature"),
            per_stage(choice_temperature, "choice_temperature"), per_stage(top_k, "top_k"))
        schedules = per_stage(guidance_schedule, "guidance_schedule")
        for value in schedules:
            if value not in decoding.GUIDANCE_SCHEDULES:
                raise ValueError(f"guidance_schedule must be one of {decoding.GUIDANCE_SCHEDULES}"
                                 f", got {value!r}")
        _check_scales(guidance, "guidance_scale", "no guidance")
        _check_scales(temperatures, "temperature", "always the most likely token")
        _check_scales(choices, "choice_temperature", "keep the most confident tokens, no noise")
        negatives = None
        if negative_prompt is not None:
            negatives = self._prompts(negative_prompt)
            if len(negatives) == 1:
                negatives = negatives * batch
            if len(negatives) != batch:
                raise ValueError(f"{len(negatives)} negative prompts for {batch} prompts: give "
                                 f"one for all or one per prompt")
        steps = (_check_steps(base_steps, "base_steps"), _check_steps(sr_steps, "sr_steps"))
        return {stage: dict(steps=steps[i], guidance_scale=float(guidance[i]),
                            temperature=float(temperatures[i]), top_k=top_ks[i],
                            choice_temperature=float(choices[i]),
                            guidance_schedule=schedules[i], negative_prompts=negatives)
                for i, stage in enumerate(("base", "superres"))}

    # ------------------------------------------------------------- files
    def save(self, path, dtype: str = "float32") -> Path:
        """Write the pipeline into the directory ``path`` (created if needed; files of an
        earlier save there are replaced). ``dtype="float16"`` stores the weights at half
        size; :meth:`load` turns them back into float32. Returns the path."""
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        path = Path(path)
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(f"{path} is a file; a pipeline is saved as a directory")
        path.mkdir(parents=True, exist_ok=True)
        self.tokenizer.save(path / TOKENIZER_FILE)
        encoder = self.text_encoder
        shared = self.superres.text_encoder is encoder
        parts = {"text_encoder": (encoder, encoder.config),
                 "base_vq": (self.base_vq, self.base_vq.config),
                 "base": (self.base, self.base.config),
                 "superres_vq": (self.superres_vq, self.superres_vq.config),
                 "superres": (self.superres, self.superres.config)}
        components = {}
        for name, (module, config) in parts.items():
            state = _stored_state(module, dtype, drop_text_encoder=(
                name == "base" or (name == "superres" and shared)))
            config = config.to_dict() if hasattr(config, "to_dict") else _asdict(config)
            checkpoint.save(path / FILES[name], state, config,
                            {"kind": f"pipeline/{name}", "dtype": dtype})
            components[name] = {"file": FILES[name], "config": json.loads(json.dumps(config))}
        manifest = {"format": FORMAT, "dtype": dtype, "tokenizer": TOKENIZER_FILE,
                    "shared_text_encoder": shared, "components": components}
        temporary = path / f".{CONFIG_FILE}.tmp"
        temporary.write_text(json.dumps(manifest, indent=1, sort_keys=True))
        temporary.replace(path / CONFIG_FILE)
        return path

    @classmethod
    def load(cls, path, device: str = "cpu") -> "Pipeline":
        """The pipeline saved by :meth:`save` in the directory ``path``, in float32 on
        ``device``. A missing, damaged or mixed-up directory is refused with an error that
        names the file and what to do."""
        path = Path(path)
        if not path.is_dir():
            raise FileNotFoundError(f"no pipeline directory at {path}: give the directory "
                                    f"written by Pipeline.save (it holds {CONFIG_FILE})")
        manifest = _read_manifest(path)
        components = manifest["components"]
        tokenizer_path = path / manifest.get("tokenizer", TOKENIZER_FILE)
        if not tokenizer_path.is_file():
            raise checkpoint.CheckpointError(_missing(path, tokenizer_path.name))
        tokenizer = Tokenizer.load(tokenizer_path)

        def stored(name):
            file = path / components[name]["file"]
            if not file.is_file():
                raise checkpoint.CheckpointError(_missing(path, file.name))
            saved = checkpoint.load(file, config=components[name]["config"])
            if saved.metadata.get("kind") != f"pipeline/{name}":
                raise checkpoint.CheckpointError(
                    f"{file} holds {saved.metadata.get('kind')!r}, not the pipeline's {name}; "
                    f"the directory's files are mixed up: save the pipeline again")
            return saved

        with _default_generator_untouched():
            encoder = TextEncoder(TextEncoderConfig.from_dict(components["text_encoder"]["config"]))
            _load_into(encoder, stored("text_encoder"))
            base_vq = VQTokenizer(VQConfig.from_dict(components["base_vq"]["config"]))
            _load_into(base_vq, stored("base_vq"))
            superres_vq = VQTokenizer(VQConfig.from_dict(components["superres_vq"]["config"]))
            _load_into(superres_vq, stored("superres_vq"))
            base = BaseTransformer(BaseTransformerConfig.from_dict(components["base"]["config"]),
                                   text_encoder=encoder, tokenizer=tokenizer)
            _load_into(base, stored("base"), without_text_encoder=True)
            superres_config = SuperResTransformerConfig.from_dict(
                components["superres"]["config"])
            shared = manifest.get("shared_text_encoder", True)
            superres = SuperResTransformer(superres_config,
                                           text_encoder=encoder if shared else None,
                                           tokenizer=tokenizer)
            _load_into(superres, stored("superres"), without_text_encoder=shared)
        return cls(tokenizer, base_vq, base, superres_vq, superres).to(device)

    def __repr__(self) -> str:
        b, s = self.base.config, self.superres.config
        return (f"Pipeline(image_size={self.image_size}, base {b.grid_size}×{b.grid_size} "
                f"tokens of {b.codebook_size} codes, super-resolution {s.grid_size}×"
                f"{s.grid_size} tokens of {s.codebook_size} codes, device={self.device!r})")


# --------------------------------------------------------------------------- #
# Helpers.
# --------------------------------------------------------------------------- #


def convert_images(images, output: str):
    """float NCHW images in [-1, 1] → the ``output`` layout ("float", "uint8" or "pil")."""
    from .data.images import to_uint8_images

    if output == "float":
        return np.asarray(images, dtype=np.float32)
    pictures = to_uint8_images(np.asarray(images))
    if output == "uint8":
        return pictures
    if output == "pil":
        from PIL import Image
        return [Image.fromarray(picture) for picture in pictures]
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")


def _asdict(config) -> dict:
    import dataclasses
    return dataclasses.asdict(config)


def _stored_state(module, dtype: str, drop_text_encoder: bool) -> dict:
    """The arrays to save: parameters in ``dtype``, buffers (e.g. the VQ's running counts,
    which can exceed float16's range) as they are; the shared text encoder left out."""
    parameters = {name for name, _ in module.named_parameters()}
    state = {}
    for name, array in module.state_dict().items():
        if drop_text_encoder and name.startswith("text_encoder."):
            continue
        array = backend.to_numpy(array)
        if dtype == "float16" and name in parameters and array.dtype.kind == "f":
            array = array.astype(np.float16)
        state[name] = array
    return state


def _load_into(module, saved, without_text_encoder: bool = False) -> None:
    """Copy a stored state into ``module`` (float16 arrays become float32 on the way)."""
    state = dict(saved.tensors)
    if without_text_encoder:
        state.update({f"text_encoder.{k}": v for k, v in module.text_encoder.state_dict().items()})
    try:
        module.load_state_dict(state)
    except ValueError as error:
        raise checkpoint.CheckpointError(f"{saved.path} does not fit the model described in "
                                         f"{CONFIG_FILE}: {error}. Save the pipeline again."
                                         ) from None


def _missing(path: Path, name: str) -> str:
    return (f"the pipeline directory {path} has no {name}: it is incomplete (an interrupted "
            f"copy or download?). Copy the whole directory again, or save it again with "
            f"Pipeline.save")


def _read_manifest(path: Path) -> dict:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise checkpoint.CheckpointError(_missing(path, CONFIG_FILE) + " (a pipeline "
                                         "directory always holds pipeline.json)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise checkpoint.CheckpointError(f"{file} is not valid JSON ({error}); the directory "
                                         f"is damaged: copy it again or save the pipeline "
                                         f"again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise checkpoint.CheckpointError(f"{file} has format {found!r}, this tinymuse reads "
                                         f"{FORMAT!r}: it is not a pipeline saved by "
                                         f"Pipeline.save, or one from another version")
    components = manifest.get("components")
    missing = [name for name in FILES if not isinstance(components, dict)
               or name not in components]
    if missing:
        raise checkpoint.CheckpointError(f"{file} lists no {', '.join(missing)}; the "
                                         f"directory is damaged: save the pipeline again")
    return manifest
