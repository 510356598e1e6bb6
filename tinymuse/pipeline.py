"""The cascade, end to end: a prompt in, a 64×64 picture out (Muse §2).

    prompt ─SentencePiece─► ids ─TextEncoder (frozen)─► text embeddings
          ─BaseTransformer─► 8×8 tokens ─SuperResTransformer─► 16×16 tokens
          ─VQ decoder (super-resolution tokenizer)─► image (B, 3, 64, 64)

:class:`Pipeline` holds the six parts (tokenizer, text encoder, base VQ + base transformer,
super-resolution VQ + super-resolution transformer) and runs them:

- :meth:`Pipeline.generate`: text → image. Each stage draws its tokens by parallel decoding
  (:func:`tinymuse.decoding.sample_stage`) with its own :class:`~tinymuse.sampling.Sampling`
  settings (steps, temperatures, guidance); the same seed gives the same images;
- :meth:`Pipeline.inpaint`, :meth:`Pipeline.outpaint`, :meth:`Pipeline.edit`: editing an
  existing image without any fine-tuning (:mod:`tinymuse.editing` explains how); they all
  come down to :meth:`Pipeline.redraw`, which draws only the masked tokens of given grids;
- :meth:`Pipeline.save` / :meth:`Pipeline.load`: one directory holding everything
  (:mod:`tinymuse.pipeline_files` describes it).

Images. Outputs are float32 NCHW arrays in [-1, 1] (``output="float"``, the default), uint8
HWC arrays (``output="uint8"``, shape (B, H, W, 3), what Pillow and the oracle read) or a list
of ``PIL.Image`` (``output="pil"``). Inputs to the editing methods may be any of these, or a
path to an image file; see :func:`tinymuse.editing.load_images`.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image

from . import backend, editing, nn, pipeline_files, sampling
from .data.images import to_uint8_images
from .data.shapes import shapes_captions
from .decoding import DecodeStep, sample_stage, stage_hook
from .models import (BaseTransformer, BaseTransformerConfig, SuperResTransformer,
                     SuperResTransformerConfig)
from .text import TextEncoder, TextEncoderConfig, Tokenizer
from .vq import VQConfig, VQTokenizer

__all__ = ["Pipeline", "PipelineOutput", "OUTPUTS"]

OUTPUTS = ("float", "uint8", "pil")


class PipelineOutput(NamedTuple):
    """What the pipeline returns with ``return_tokens=True``: the images and the token grids
    of both stages, ``base_tokens`` (B, 8, 8) and ``superres_tokens`` (B, 16, 16), NumPy int64.

    With ``return_steps=True`` it also holds every decoding step of each stage, the grids the
    decoding loop goes through anyway: ``base_steps`` and ``superres_steps``, one
    :class:`~tinymuse.decoding.DecodeStep` per step, whose ``tokens`` (``mask_id`` where still
    masked) and ``mask`` are NumPy grids of the stage's shape. The last step of each stage is
    its finished grid. :func:`tinymuse.step_pictures.decoding_frames` draws them."""

    images: object
    base_tokens: np.ndarray
    superres_tokens: np.ndarray
    base_steps: list | None = None
    superres_steps: list | None = None


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
        if image_size % 8 or image_size < 8:
            raise ValueError(f"image_size must be a positive multiple of 8, got {image_size}")
        if tokenizer is None:
            tokenizer = Tokenizer.train(shapes_captions(300, seed=seed), vocab_size=200)
        generator = backend.Generator(seed)
        with backend.default_generator_kept():
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
    def generate(self, prompts, *, base=None, superres=None, negative_prompt=None,
                 seed: int | None = None, output: str = "float", return_tokens: bool = False,
                 return_steps: bool = False, callback=None):
        """Draw one image per prompt.

        ``prompts``: a string or a list of strings. ``base`` and ``superres``: how each stage
        decodes, a :class:`~tinymuse.sampling.Sampling` or a dict of changes to the defaults
        :data:`tinymuse.sampling.BASE` and :data:`~tinymuse.sampling.SUPERRES` (e.g.
        ``base={"steps": 12, "guidance_scale": 3.0}``). Guidance contrasts each prompt with
        the empty prompt, or with ``negative_prompt`` (a string for all, or one per prompt).
        ``seed``: the same seed gives the same images (``None``: draw from
        ``tinymuse.manual_seed``'s generator; a :class:`tinymuse.backend.Generator`: go on
        drawing from it). ``callback(stage, done, total)``, if given, is
        called after each decoding step, with ``stage`` ``"base"`` or ``"superres"`` (for a
        progress bar). An empty prompt draws the unconditional sample: the picture the model
        draws with no text at all. Returns the images (see ``output`` in the module
        docstring) or, with ``return_tokens``, a :class:`PipelineOutput`; with
        ``return_steps`` a :class:`PipelineOutput` that also holds every decoding step of both
        stages (the same images: keeping the steps draws nothing more at random).
        """
        return self.redraw(prompts, base=base, superres=superres,
                           negative_prompt=negative_prompt, seed=seed, output=output,
                           return_tokens=return_tokens, return_steps=return_steps,
                           callback=callback)

    def redraw(self, prompts, tokens=None, masks=None, *, base=None, superres=None,
               negative_prompt=None, seed: int | None = None, output: str = "float",
               return_tokens: bool = False, return_steps: bool = False, callback=None):
        """The one generation path. Without ``tokens`` it draws everything (:meth:`generate`);
        given ``tokens = (base_tokens, superres_tokens)`` (B, 8, 8) and (B, 16, 16) and bool
        ``masks`` of the same shapes, it draws only the masked tokens and keeps every other one
        (inpainting). The base stage draws first; the super-resolution stage then draws on its
        tokens. Options as :meth:`generate`."""
        prompts = sampling.prompt_list(prompts)
        base = sampling.resolve(sampling.BASE, base)
        superres = sampling.resolve(sampling.SUPERRES, superres)
        negatives = sampling.negative_prompt_list(negative_prompt, len(prompts))
        self.check_output(output)
        (low, high), (low_mask, high_mask) = tokens or (None, None), masks or (None, None)
        # BEGIN EXERCISE ch08_ex4
        generator = self.generator(seed)
        low_run = sample_stage(self.base, prompts, base, tokens=low, mask=low_mask,
                               negative_prompts=negatives, generator=generator,
                               return_intermediates=return_steps,
                               on_step=stage_hook(callback, "base"))
        high_run = sample_stage(self.superres, prompts, superres, low_tokens=low_run.tokens,
                                tokens=high, mask=high_mask, negative_prompts=negatives,
                                generator=generator, return_intermediates=return_steps,
                                on_step=stage_hook(callback, "superres"))
        # END EXERCISE
        steps = (low_run.intermediates, high_run.intermediates) if return_steps else None
        return self.finish(low_run.tokens, high_run.tokens, output, return_tokens, steps)

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

    def generator(self, seed) -> backend.Generator:
        """The generator all draws of one call come from: ``Generator(seed)``, the library's
        default generator for ``seed=None``, or ``seed`` itself if it is a
        :class:`tinymuse.backend.Generator` (its draws go on from call to call, so several
        calls make one stream, as one call on all their prompts would not)."""
        if seed is None:
            return backend.default_generator
        if isinstance(seed, backend.Generator):
            return seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise TypeError(f"seed must be an int or None, got {seed!r}")
        if seed < 0:
            raise ValueError(f"seed must be a whole number >= 0, got {seed}")
        return backend.Generator(int(seed))

    @staticmethod
    def check_output(output: str) -> None:
        if output not in OUTPUTS:
            raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")

    # ------------------------------------------------------- images ⇄ tokens
    def encode_images(self, images) -> tuple[np.ndarray, np.ndarray]:
        """``(base_tokens, superres_tokens)`` of images (anything
        :func:`tinymuse.editing.load_images` reads, at ``image_size``): the super-resolution
        tokenizer reads the image, the base tokenizer a copy shrunk to ``base_image_size`` by
        averaging pixel blocks."""
        images = editing.load_images(images, self.image_size)
        small = editing.downsample(images, self.image_size // self.base_image_size)
        with nn.evaluation_mode(self.base_vq, self.superres_vq):
            low = self.base_vq.encode(small.astype(np.float32)).numpy()
            high = self.superres_vq.encode(images).numpy()
        return low.astype(np.int64), high.astype(np.int64)

    def decode_tokens(self, superres_tokens, output: str = "float"):
        """Images for super-resolution token grids (B, H, W), in the ``output`` layout."""
        with nn.evaluation_mode(self.superres_vq):
            images = self.superres_vq.decode(np.asarray(superres_tokens)).numpy()
        return convert_images(images, output)

    def finish(self, low_tokens, high_tokens, output: str, return_tokens: bool, steps=None):
        """Decode ``high_tokens`` to images; with ``return_tokens`` also give both grids, and
        with ``steps`` (each stage's list of :class:`~tinymuse.decoding.DecodeStep`) a
        :class:`PipelineOutput` that holds them too, as NumPy grids of each stage's shape."""
        images = self.decode_tokens(high_tokens, output)
        low, high = np.asarray(low_tokens), np.asarray(high_tokens)
        if steps is not None:
            low_steps, high_steps = steps
            return PipelineOutput(images, low, high, grid_steps(low_steps, low.shape),
                                  grid_steps(high_steps, high.shape))
        if return_tokens:
            return PipelineOutput(images, low, high)
        return images

    # ------------------------------------------------------------- files
    def save(self, path, dtype: str = "float32") -> Path:
        """Write the pipeline into the directory ``path`` (:mod:`tinymuse.pipeline_files`).
        ``dtype="float16"`` stores the weights at half size; :meth:`load` turns them back into
        float32. Returns the path."""
        return pipeline_files.save_parts(path, self.tokenizer, self.base_vq, self.base,
                                         self.superres_vq, self.superres, dtype=dtype)

    @classmethod
    def from_pretrained(cls, path=None, device: str = "cpu") -> "Pipeline":
        """The bundled weights (``path=None``), from any working directory; or the pipeline
        in ``path``, a folder written by :meth:`save` or a ``tinymuse train`` run folder."""
        return cls.load(pipeline_files.find_pipeline(path), device)

    @classmethod
    def load(cls, path, device: str = "cpu") -> "Pipeline":
        """The pipeline saved by :meth:`save` in the directory ``path``, in float32 on
        ``device``. A missing, damaged or mixed-up directory is refused with an error that
        names the file and what to do."""
        return cls(**pipeline_files.load_parts(path)).to(device)

    def __repr__(self) -> str:
        b, s = self.base.config, self.superres.config
        return (f"Pipeline(image_size={self.image_size}, base {b.grid_size}×{b.grid_size} "
                f"tokens of {b.codebook_size} codes, super-resolution {s.grid_size}×"
                f"{s.grid_size} tokens of {s.codebook_size} codes, device={self.device!r})")


def grid_steps(steps, shape) -> list[DecodeStep]:
    """The decoding loop's steps ((B, N) arrays, on the model's device) as NumPy grids of
    ``shape`` (B, H, W)."""
    return [DecodeStep(backend.to_numpy(step.tokens).reshape(shape),
                       backend.to_numpy(step.mask).reshape(shape)) for step in steps]


def convert_images(images, output: str):
    """float NCHW images in [-1, 1] → the ``output`` layout ("float", "uint8" or "pil")."""
    if output == "float":
        return np.asarray(images, dtype=np.float32)
    pictures = to_uint8_images(np.asarray(images))
    if output == "uint8":
        return pictures
    if output == "pil":
        return [Image.fromarray(picture) for picture in pictures]
    raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
