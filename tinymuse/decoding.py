"""Parallel decoding: drawing a whole grid of image tokens in a few steps.

An autoregressive model draws ``N`` tokens one at a time, in ``N`` model calls.
MaskGIT (Chang et al., 2022) and Muse draw them all in ``T ≪ N`` steps:

1. start with every token masked;
2. at step ``t`` the model predicts every masked token at once; sample a token
   for each (temperature, optional top-k);
3. score each sampled token's *confidence*, its log-probability plus Gumbel
   noise whose scale (the "choice temperature") falls linearly to 0;
4. keep the most confident, and mask the rest again, so that exactly the
   scheduled number stays masked (:func:`tinymuse.masking.decoding_schedule`);
5. repeat until, after step ``T − 1``, nothing is masked.

The model is any callable ``logits_fn(tokens, condition) -> logits``:
``tokens`` is an int array ``(B, N)`` holding ``mask_id`` at masked positions,
``condition`` is passed through untouched (text embeddings and their padding
mask, low-resolution tokens for the super-resolution stage, ...), and
``logits`` is ``(B, N, K)``, a :class:`~tinymuse.tensor.Tensor` or an array.

**Classifier-free guidance** (Muse §2.7) sharpens the prompt's effect by
extrapolating away from an unconditional prediction:

    logits = (1 + s) · logits(c) − s · logits(u),

with ``u = uncond_condition``, usually the empty caption. A *negative prompt*
is the same formula with the negative prompt's condition as ``u``. The scale
``s`` may stay constant or rise linearly over the steps. Guidance costs model
calls: **two calls per step**, ``logits_fn(tokens, c)`` then
``logits_fn(tokens, u)``; or, if the caller passes
``concat_conditions(c, u)`` returning one condition for ``2B`` rows (the ``B``
conditional rows first), **one call per step** on the tokens stacked twice,
``(2B, N)``, which is faster on a GPU. With ``s = 0`` the unconditional pass is
skipped: one call per step.

Editing uses the same loop: :func:`decode` takes a starting grid and a mask of
the positions to regenerate (inpainting, outpainting), and
:func:`mask_free_edit` repeatedly re-masks and resamples a small random subset
(Muse §2.6).

The settings of a run (steps, temperatures, top-k, guidance) are one
:class:`tinymuse.sampling.Sampling`. Everything up to :func:`mask_free_edit` works on raw
NumPy or CuPy arrays (no autograd: nothing here learns) and is vectorised over the batch.
Randomness comes only from the seeded :class:`tinymuse.backend.Generator`; the same seed
gives the same tokens.

**A stage of the cascade.** :func:`sample_stage` and :func:`edit_stage` run the loop on a
token model (the base or the super-resolution transformer): they turn prompts into the
conditional and unconditional contexts, start from the right grid, decode, and hand back the
token grids. The pipeline, the editing functions and the training monitors all sample through
them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, NamedTuple

import numpy as np

from . import backend, nn
from .backend import get_array_module
from .masking import apply_mask, decoding_schedule, random_mask
from .ops.nn import LogSoftmax
from .sampling import GUIDANCE_SCHEDULES, Sampling
from .tensor import Tensor

__all__ = ["DecodeStep", "DecodeResult", "log_softmax", "sample_tokens", "guidance_scale_at",
           "decode", "generate", "mask_free_edit_step", "mask_free_edit", "sample_stage",
           "edit_stage", "stage_hook", "guidance_contexts"]


class DecodeStep(NamedTuple):
    """The grid after one decoding step (or one editing iteration)."""
    tokens: Any  # (B, N) ints, mask_id where still masked
    mask: Any    # (B, N) bools: still masked (decode) or just resampled (mask-free edit)


@dataclass
class DecodeResult:
    """What decoding returns: the final tokens and, on request, every step's grid."""
    tokens: Any                                   # (B, N) ints, no mask_id left
    intermediates: list[DecodeStep] | None = None  # one per step, if asked for


# --------------------------------------------------------------------------- #
# Small pieces: log-softmax, sampling, guidance scale.
# --------------------------------------------------------------------------- #


def log_softmax(x, axis: int = -1):
    """log softmax(x) = (x − m) − log Σ exp(x − m), with ``m = max x``, on a raw
    array: the forward pass of :class:`tinymuse.ops.nn.LogSoftmax`, with no graph.

    Subtracting the maximum first means no exp overflows, and the large ``m``
    never has to be added back (float32 would round it)."""
    return LogSoftmax().forward(x, axis=axis)


def _log_prob_of(logits, ids):
    """``log_softmax(logits)[p, ids[p]]`` for each row ``p`` of ``logits`` ``(P, K)``,
    without materialising the whole log-softmax."""
    xp = get_array_module(logits)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    chosen = xp.take_along_axis(shifted, ids[:, None], axis=-1)[:, 0]
    xp.exp(shifted, out=shifted)
    return chosen - xp.log(shifted.sum(axis=-1))


def sample_tokens(logits, generator: backend.Generator | None = None, *,
                  temperature: float = 1.0, top_k: int | None = None):
    """One token per row of ``logits`` (``(..., K)``), from softmax(logits / temperature).

    Gumbel-max trick: with ``g`` i.i.d. standard Gumbel noise,
    ``argmax(logits / τ + g)`` is a sample from softmax(logits / τ); we use the
    equivalent ``argmax(logits + τ·g)``. ``temperature = 0`` is greedy (argmax).
    ``top_k`` samples among the ``k`` largest logits of each row only (ties
    with the ``k``-th largest broken arbitrarily). Random draws: one
    ``generator.gumbel`` of shape ``(..., K)``, or ``(..., k)`` with top-k,
    none if greedy.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0; got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be a positive integer or None; got {top_k}")
    # BEGIN EXERCISE ch07_ex2
    if temperature == 0:
        return logits.argmax(axis=-1)
    xp = get_array_module(logits)
    generator = generator or backend.default_generator
    num_classes = logits.shape[-1]
    if top_k is not None and top_k < num_classes:
        # Sample among the k largest logits (k noise draws, not K), then map back to token ids.
        first = num_classes - top_k
        candidates = xp.argpartition(logits, first, axis=-1)[..., first:]
        choice = sample_tokens(xp.take_along_axis(logits, candidates, axis=-1), generator,
                               temperature=temperature)
        return xp.take_along_axis(candidates, choice[..., None], axis=-1)[..., 0]
    scores = generator.gumbel(logits.shape, dtype=logits.dtype,
                              device=backend.device_of(logits))
    scores *= temperature
    scores += logits
    return scores.argmax(axis=-1)
    # END EXERCISE


def guidance_scale_at(step: int, total_steps: int, scale: float,
                      schedule: str = "constant") -> float:
    """The guidance scale ``s_t`` used at decoding step ``t`` (0-based):
    ``s`` for "constant", ``s · (t+1) / T`` for "linear" (full strength at the last step)."""
    # BEGIN EXERCISE ch07_ex4
    if schedule == "constant":
        return float(scale)
    if schedule == "linear":
        return float(scale) * (step + 1) / total_steps
    raise ValueError(f"unknown guidance schedule {schedule!r}; choose one of {GUIDANCE_SCHEDULES}")
    # END EXERCISE


# --------------------------------------------------------------------------- #
# Calling the model.
# --------------------------------------------------------------------------- #


def _call(logits_fn, tokens, condition):
    """Run the model and return its logits as an array of shape (B, N, K)."""
    logits = logits_fn(tokens, condition)
    if isinstance(logits, Tensor):
        logits = logits.data
    if getattr(logits, "ndim", None) != 3 or logits.shape[:2] != tokens.shape:
        got = getattr(logits, "shape", type(logits))
        raise ValueError(f"logits_fn must return logits of shape (B, N, K) = {tokens.shape} + "
                         f"(K,) for tokens of shape {tokens.shape}; got {got}")
    if backend.device_of(logits) != backend.device_of(tokens):
        raise ValueError(f"logits_fn returned logits on {backend.device_of(logits)!r} for "
                         f"tokens on {backend.device_of(tokens)!r}; keep the model and the "
                         "tokens on one device")
    return logits


def _guided_logits(logits_fn, tokens, rows, cols, condition, uncond_condition, scale,
                   concat_conditions):
    """Logits ``(P, K)`` at the positions ``(rows[p], cols[p])`` to predict,
    with classifier-free guidance at ``scale`` (see the module docstring)."""
    if scale == 0:
        return _call(logits_fn, tokens, condition)[rows, cols]
    batch = tokens.shape[0]
    if concat_conditions is not None:  # one call on 2B rows: conditional first
        xp = get_array_module(tokens)
        both = _call(logits_fn, xp.concatenate([tokens, tokens]),
                     concat_conditions(condition, uncond_condition))
        cond, uncond = both[rows, cols], both[rows + batch, cols]
    else:  # two calls on B rows
        cond = _call(logits_fn, tokens, condition)[rows, cols]
        uncond = _call(logits_fn, tokens, uncond_condition)[rows, cols]
    # BEGIN EXERCISE ch07_ex4
    cond *= 1 + scale  # in place: fancy indexing gave us fresh copies
    uncond *= scale
    cond -= uncond
    return cond
    # END EXERCISE


def _check_guidance(guidance_scale, uncond_condition):
    if guidance_scale != 0 and uncond_condition is None:
        raise ValueError(f"guidance_scale={guidance_scale} needs uncond_condition (e.g. the empty "
                         "caption's condition, or a negative prompt's); pass guidance_scale=0 "
                         "to decode without guidance")


# --------------------------------------------------------------------------- #
# Decoding.
# --------------------------------------------------------------------------- #


def decode(logits_fn: Callable, tokens, condition=None, *, mask_id: int, settings: Sampling,
           mask=None, uncond_condition=None, concat_conditions: Callable | None = None,
           generator: backend.Generator | None = None, return_intermediates: bool = False,
           on_step: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Fill in the masked positions of ``tokens`` (``(B, N)`` ints) in ``settings.steps`` steps.

    The positions to generate are ``mask`` (``(B, N)`` bools) if given, else
    those where ``tokens == mask_id``; every other position is returned exactly
    as given (inpainting, outpainting). With ``M_b`` positions to generate in
    row ``b``, after step ``t`` exactly ``decoding_schedule(T, M_b, mask_schedule)[t]``
    of them are still masked, and none after the last step.

    At step ``t`` (0-based, of ``T = settings.steps``):

    - the model is called on the current grid (once, or twice with guidance; see
      the module docstring) and its logits combined as
      ``(1 + s_t)·cond − s_t·uncond`` with ``s_t = guidance_scale_at(t, T, s, schedule)``;
      the logit of ``mask_id``, if the model has one, is set to −∞ so it is never sampled;
    - every masked position gets a token from :func:`sample_tokens`
      (``temperature``, ``top_k``);
    - its confidence is ``log p(token) + τ_t·g`` with ``p`` the softmax of the
      guided logits, ``g`` standard Gumbel noise and
      ``τ_t = choice_temperature · (1 − (t+1)/T)``; positions known before
      the step have confidence +∞, so a token once unmasked never changes;
    - the least confident positions are masked again, exactly as many as the
      schedule says.

    Muse used 24 steps for the base model and 8 for super-resolution; MaskGIT
    8–12 with ``choice_temperature = 4.5``. Random draws per step, with ``P``
    the number of positions still masked: the sampling noise of
    :func:`sample_tokens` (shape ``(P, K)``, ``(P, k)`` with top-k, none if
    greedy), then, before the last step, one ``generator.gumbel((P,))`` for
    the choice noise (none once ``τ_t = 0``).

    ``on_step(done, total)``, if given, is called after each step (a progress bar's hook).
    """
    xp = get_array_module(tokens)
    generator = generator or backend.default_generator
    if getattr(tokens, "ndim", None) != 2 or tokens.dtype.kind not in "iu":
        raise ValueError(f"tokens must be an integer array of shape (B, N); got "
                         f"{getattr(tokens, 'dtype', type(tokens))} {getattr(tokens, 'shape', '')}")
    if mask is None:
        mask = tokens == mask_id
    elif mask.shape != tokens.shape:
        raise ValueError(f"mask shape {mask.shape} must equal tokens shape {tokens.shape}")
    _check_guidance(settings.guidance_scale, uncond_condition)

    steps = settings.steps
    masked = mask.astype(bool)  # a copy: we update it step by step
    tokens = apply_mask(tokens, masked, mask_id)  # a copy: the caller's grid stays as it was
    counts = backend.to_device(decoding_schedule(steps, backend.to_numpy(masked.sum(axis=1)),
                                                 settings.mask_schedule),
                               backend.device_of(tokens))  # (T, B)
    intermediates = [] if return_intermediates else None
    for t in range(steps):
        rows, cols = xp.nonzero(masked)  # the P positions to predict, row by row
        scale = guidance_scale_at(t, steps, settings.guidance_scale, settings.guidance_schedule)
        logits = _guided_logits(logits_fn, tokens, rows, cols, condition, uncond_condition,
                                scale, concat_conditions)  # (P, K)
        if 0 <= mask_id < logits.shape[-1]:
            logits[:, mask_id] = -xp.inf
        sampled = sample_tokens(logits, generator, temperature=settings.temperature,
                                top_k=settings.top_k)
        tokens[rows, cols] = sampled
        if t < steps - 1:
            choice_scale = _choice_scale(t, steps, settings.choice_temperature)
            masked = _least_confident(logits, sampled, rows, cols, tokens.shape, counts[t],
                                      choice_scale, generator)
            tokens[masked] = mask_id
        else:
            masked = xp.zeros_like(masked)
        if return_intermediates:
            intermediates.append(DecodeStep(tokens.copy(), masked.copy()))
        if on_step is not None:
            on_step(t + 1, steps)
    return DecodeResult(tokens, intermediates)


def _choice_scale(step: int, total_steps: int, choice_temperature: float) -> float:
    """The scale ``τ_t`` of the Gumbel noise on the confidences after step ``t`` (0-based) of
    ``T``: ``choice_temperature · (1 − (t+1)/T)``, falling linearly to 0 at the last step."""
    # BEGIN EXERCISE ch07_ex3
    return choice_temperature * (1 - (step + 1) / total_steps)
    # END EXERCISE


def _least_confident(logits, sampled, rows, cols, shape, counts, choice_scale, generator):
    """The positions to mask again after a step: in each row the ``counts[b]`` least confident
    of the tokens just sampled, confidence being ``log p(token)`` plus Gumbel noise scaled by
    ``choice_scale``. Tokens revealed earlier have confidence +∞ and are never chosen."""
    # BEGIN EXERCISE ch07_ex3
    xp = get_array_module(logits)
    confidence = xp.full(shape, xp.inf, dtype=logits.dtype)
    log_p = _log_prob_of(logits, sampled)
    if choice_scale > 0:
        noise = generator.gumbel(log_p.shape, dtype=log_p.dtype, device=backend.device_of(log_p))
        noise *= choice_scale
        log_p += noise
    confidence[rows, cols] = log_p
    rank = xp.argsort(xp.argsort(confidence, axis=1), axis=1)  # 0 = least confident
    return rank < counts[:, None]
    # END EXERCISE


def generate(logits_fn: Callable, condition=None, *, batch_size: int, num_tokens: int,
             mask_id: int, settings: Sampling, device: str | None = None,
             **options) -> DecodeResult:
    """Decode ``batch_size`` grids of ``num_tokens`` tokens from all-masked; ``options`` are
    those of :func:`decode` (``uncond_condition``, ``generator``, ...)."""
    xp = backend.xp_for(device or backend.get_default_device())
    tokens = xp.full((batch_size, num_tokens), mask_id, dtype=np.int64)
    return decode(logits_fn, tokens, condition, mask_id=mask_id, settings=settings, **options)


# --------------------------------------------------------------------------- #
# Mask-free editing (Muse §2.6).
# --------------------------------------------------------------------------- #


def mask_free_edit_step(logits_fn: Callable, tokens, condition=None, *, mask_id: int,
                        settings: Sampling, region=None, uncond_condition=None,
                        concat_conditions: Callable | None = None,
                        generator: backend.Generator | None = None) -> DecodeStep:
    """One iteration of mask-free editing: resample a small random subset of tokens.

    In each row, ``⌈fraction · n⌉`` positions are chosen uniformly at random
    among the ``n`` positions of ``region`` (``(B, N)`` bools; all positions if
    None), masked, and resampled under ``condition`` in ``settings.steps`` decoding steps
    (one, as Muse does). Returns the new grid and the mask of the positions that were
    resampled; all other positions keep their tokens.
    """
    xp = get_array_module(tokens)
    generator = generator or backend.default_generator
    batch, num_tokens = tokens.shape
    # BEGIN EXERCISE ch09_ex4
    available = region.sum(axis=1) if region is not None else xp.full((batch,), num_tokens)
    counts = xp.ceil(settings.fraction * available).astype(np.int64)
    resample = random_mask(counts, num_tokens, generator, allowed=region,
                           device=backend.device_of(tokens))
    result = decode(logits_fn, tokens, condition, mask_id=mask_id, settings=settings,
                    mask=resample, generator=generator, uncond_condition=uncond_condition,
                    concat_conditions=concat_conditions)
    return DecodeStep(result.tokens, resample)
    # END EXERCISE


def mask_free_edit(logits_fn: Callable, tokens, condition=None, *, mask_id: int,
                   settings: Sampling, region=None, uncond_condition=None,
                   concat_conditions: Callable | None = None,
                   generator: backend.Generator | None = None,
                   return_intermediates: bool = False,
                   on_step: Callable[[int, int], None] | None = None) -> DecodeResult:
    """Edit an image's tokens towards ``condition`` without a user-drawn mask (Muse §2.6).

    Repeats :func:`mask_free_edit_step` ``settings.iterations`` times: each time about
    ``settings.fraction`` of the tokens (of ``region``, if given) are re-masked and
    resampled, so the image drifts towards the new prompt while keeping most
    of its structure (:data:`tinymuse.sampling.EDIT` holds Muse's settings). The model is
    called once per iteration, twice with guidance unless ``concat_conditions`` is given.
    Intermediates hold, per iteration, the grid and the positions just resampled;
    ``on_step(done, total)`` is called after each iteration.
    """
    _check_guidance(settings.guidance_scale, uncond_condition)
    intermediates = [] if return_intermediates else None
    for done in range(1, settings.iterations + 1):
        step = mask_free_edit_step(logits_fn, tokens, condition, mask_id=mask_id,
                                   settings=settings, region=region,
                                   uncond_condition=uncond_condition,
                                   concat_conditions=concat_conditions, generator=generator)
        tokens = step.tokens
        if return_intermediates:
            intermediates.append(step)
        if on_step is not None:
            on_step(done, settings.iterations)
    return DecodeResult(tokens, intermediates)


# --------------------------------------------------------------------------- #
# A stage of the cascade: a token model, prompts in, token grids out.
# --------------------------------------------------------------------------- #


def guidance_contexts(model, prompts, negative_prompts, guidance_scale, low_tokens):
    """The conditional context of ``prompts`` and, with guidance, the unconditional one: the
    negative prompts', or the empty prompt's. A super-resolution model puts the same
    ``low_tokens`` in both."""
    condition = model.prompt_context(prompts, low_tokens)
    if not guidance_scale:
        return condition, None
    negatives = [""] * len(prompts) if negative_prompts is None else list(negative_prompts)
    if len(negatives) != len(prompts):
        raise ValueError(f"{len(negatives)} negative prompts for {len(prompts)} prompts")
    return condition, model.prompt_context(negatives, low_tokens)


def _start_grid(model, batch: int, tokens, mask):
    """The (B, N) int64 grid decoding starts from, on the model's device (all [MASK] without
    ``tokens``), and the bool mask of the positions to draw (None: the [MASK] positions)."""
    xp = backend.xp_for(model.device)
    if tokens is None:
        return xp.full((batch, model.config.num_tokens), model.mask_id, np.int64), None
    tokens = backend.to_device(np.asarray(backend.to_numpy(tokens)), model.device)
    tokens = tokens.reshape(batch, -1).astype(np.int64)
    if mask is not None:
        mask = backend.to_device(np.asarray(backend.to_numpy(mask), bool), model.device)
        mask = mask.reshape(batch, -1)
    return tokens, mask


def sample_stage(model, prompts, settings: Sampling, *, low_tokens=None, tokens=None,
                 mask=None, negative_prompts=None, generator: backend.Generator | None = None,
                 return_intermediates: bool = False, on_step=None) -> DecodeResult:
    """Draw token grids for ``prompts`` with a token model (a
    :class:`~tinymuse.models.BaseTransformer` or a
    :class:`~tinymuse.models.SuperResTransformer`, which also reads the base stage's
    ``low_tokens`` (B, h, w)).

    The model runs in evaluation mode without recording a graph, and gets its previous mode
    back afterwards. Guidance contrasts each prompt with the empty prompt or with its
    ``negative_prompts``; the conditional and unconditional rows run as one batch per step.
    Given ``tokens`` (B, H, W) and a bool ``mask`` of the same shape, only the masked
    positions are drawn and every other one is kept (inpainting). ``on_step(done, total)``
    is called after each step. Returns the :class:`DecodeResult` with ``tokens`` as a NumPy
    int64 array (B, H, W).
    """
    prompts = list(prompts)
    settings.check_grid(model.config.num_tokens, model.config.codebook_size)
    with nn.evaluation_mode(model):
        condition, uncond = guidance_contexts(model, prompts, negative_prompts,
                                              settings.guidance_scale, low_tokens)
        start, mask = _start_grid(model, len(prompts), tokens, mask)
        result = decode(model.logits, start, condition, mask_id=model.mask_id,
                        settings=settings, mask=mask, uncond_condition=uncond,
                        concat_conditions=type(condition).concat, generator=generator,
                        return_intermediates=return_intermediates, on_step=on_step)
    grid = model.config.grid_size
    result.tokens = backend.to_numpy(result.tokens).reshape(len(prompts), grid, grid)
    return result


def edit_stage(model, prompts, tokens, settings: Sampling, *, region=None,
               negative_prompts=None, generator: backend.Generator | None = None,
               on_step=None):
    """Mask-free editing (:func:`mask_free_edit`) of a token model's grids ``tokens``
    (B, H, W) towards ``prompts``, resampling only inside ``region`` (bool (B, H, W)) if
    given; the model's mode and ``on_step`` (after each iteration) are as in
    :func:`sample_stage`. Returns the edited grids as a NumPy int64 array of the same shape."""
    prompts = list(prompts)
    settings.check_grid(model.config.num_tokens, model.config.codebook_size)
    with nn.evaluation_mode(model):
        condition, uncond = guidance_contexts(model, prompts, negative_prompts,
                                              settings.guidance_scale, None)
        start, allowed = _start_grid(model, len(prompts), tokens, region)
        result = mask_free_edit(model.logits, start, condition, mask_id=model.mask_id,
                                settings=settings, region=allowed, uncond_condition=uncond,
                                concat_conditions=type(condition).concat, generator=generator,
                                on_step=on_step)
    return backend.to_numpy(result.tokens).reshape(np.shape(tokens))


def stage_hook(callback, stage: str):
    """A decoding loop's ``on_step(done, total)`` that reports to ``callback(stage, done,
    total)``, the hook of the pipeline's methods; None without a callback."""
    if callback is None:
        return None
    return lambda done, total: callback(stage, done, total)
