"""How each stage of the cascade draws its tokens: one settings object, written once.

Parallel decoding (:mod:`tinymuse.decoding`, chapter 7) has a handful of knobs. A
:class:`Sampling` holds them for one stage:

===================  ==========================================================================
``steps``            decoding steps T: model calls that turn an all-[MASK] grid into tokens
``temperature``      τ in softmax(logits / τ) when a token is sampled; 0 takes the likeliest
``top_k``            sample among the k likeliest codes only (None: all of them)
``choice_temperature``  scale of the Gumbel noise on the confidences that decide which sampled
                     tokens a step keeps; it falls linearly to 0 over the steps (MaskGIT §3.2)
``guidance_scale``   s in classifier-free guidance, (1 + s)·logits(prompt) − s·logits(empty)
                     (Muse §2.7); 0 is no guidance, and one model call per step instead of two
``guidance_schedule``  "constant", or "linear": s·(t + 1)/T, full strength at the last step
``mask_schedule``    γ, the share of tokens still masked after each step (tinymuse.masking)
``iterations``       mask-free editing only: how many times a random subset is resampled
``fraction``         mask-free editing only: the share of tokens resampled each time (Muse §2.6)
===================  ==========================================================================

The cascade's defaults are four instances, each written once below: :data:`BASE` and
:data:`SUPERRES` for generation (and inpainting, outpainting), :data:`EDIT` and
:data:`EDIT_SUPERRES` for mask-free editing. ``tinymuse generate``, :class:`tinymuse.Pipeline`,
the editing functions and the training monitors all read them, so they draw alike. A fifth,
:data:`AUTOREGRESSIVE`, is how chapter 7's autoregressive baseline draws. How the values were
chosen, with the measurements, is in ``docs/RESULTS.md``.

A setting that cannot work raises :class:`SamplingError`, which names the setting; the
``tinymuse`` command turns the name into its flag. Settings are checked here and nowhere else.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

__all__ = ["Sampling", "SamplingError", "BASE", "SUPERRES", "EDIT", "EDIT_SUPERRES",
           "AUTOREGRESSIVE", "GUIDANCE_SCHEDULES", "LIMITS", "resolve", "prompt_list", "one_each",
           "negative_prompt_list"]

GUIDANCE_SCHEDULES = ("constant", "linear")

# The largest values a setting may take, so that a typing slip cannot start a run without
# end or a silent overflow: a temperature of 100 already samples almost uniformly, guidance
# of 100 outweighs the model's own prediction a hundredfold (far larger values overflow
# float32 logits), and a thousand editing iterations, each a model call, resample every
# token dozens of times over.
LIMITS = {"temperature": 100.0, "choice_temperature": 100.0, "guidance_scale": 100.0,
          "iterations": 1000}


class SamplingError(ValueError):
    """A sampling setting that cannot work. ``setting`` names it (e.g. ``"temperature"``);
    :meth:`renamed` gives the same message under another name, such as a command-line flag."""

    def __init__(self, setting: str, requirement: str, value):
        self.setting, self.requirement, self.value = setting, requirement, value
        super().__init__(f"{setting} {requirement}, got {value!r}")

    def renamed(self, name: str) -> str:
        return f"{name} {self.requirement}, got {self.value!r}"


def _whole(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) \
        and math.isfinite(value)


@dataclass(frozen=True)
class Sampling:
    """The decoding settings of one stage (see the module docstring for each field)."""

    steps: int
    temperature: float
    choice_temperature: float
    guidance_scale: float
    guidance_schedule: str = "constant"
    top_k: int | None = None
    mask_schedule: str = "cosine"
    # Mask-free editing only. Muse resampled 8% of its 16×16 base tokens per iteration, 100
    # times; the 8×8 base grid has a quarter of the tokens, so 30 times.
    iterations: int = 30
    fraction: float = 0.08

    def __post_init__(self):
        for name in ("steps", "iterations"):
            value = getattr(self, name)
            if not _whole(value) or not 1 <= value <= LIMITS.get(name, math.inf):
                bound = f" from 1 to {LIMITS[name]}" if name in LIMITS else " >= 1"
                raise SamplingError(name, f"must be a whole number{bound}", value)
        zero_means = {"temperature": "always the likeliest token",
                      "choice_temperature": "keep the most confident tokens, no noise",
                      "guidance_scale": "no guidance"}
        for name, meaning in zero_means.items():
            value = getattr(self, name)
            if not _real(value) or not 0 <= value <= LIMITS[name]:
                raise SamplingError(name, f"must be a number from 0 to {LIMITS[name]:g} "
                                    f"(0: {meaning})", value)
        if self.guidance_schedule not in GUIDANCE_SCHEDULES:
            raise SamplingError("guidance_schedule", f"must be one of {GUIDANCE_SCHEDULES}",
                                self.guidance_schedule)
        if self.top_k is not None and (not _whole(self.top_k) or self.top_k < 1):
            raise SamplingError("top_k", "must be a whole number >= 1 or None (all codes)",
                                self.top_k)
        if not _real(self.fraction) or not 0 < self.fraction <= 1:
            raise SamplingError("fraction", "(the share of tokens resampled per iteration) "
                                "must lie in (0, 1]", self.fraction)
        # Plain Python numbers: a NumPy scalar would change the dtype of array arithmetic.
        for name in ("temperature", "choice_temperature", "guidance_scale", "fraction"):
            object.__setattr__(self, name, float(getattr(self, name)))
        for name in ("steps", "iterations", "top_k"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, int(getattr(self, name)))

    def check_grid(self, num_tokens: int, codebook_size: int) -> None:
        """Refuse settings that a grid of ``num_tokens`` tokens of ``codebook_size`` codes
        cannot use: more decoding steps than tokens (a step would reveal nothing), a top-k
        over more codes than there are."""
        if self.steps > num_tokens:
            raise SamplingError("steps", f"must be at most the {num_tokens} tokens of the "
                                f"stage's grid (each step reveals at least one)", self.steps)
        if self.top_k is not None and self.top_k > codebook_size:
            raise SamplingError("top_k", f"must be at most the {codebook_size} codes of the "
                                f"stage's codebook", self.top_k)

    def replace(self, **changes) -> "Sampling":
        """A copy with ``changes``, checked like a new one."""
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(f"Sampling has no setting(s) {sorted(unknown)}; its settings are "
                            f"{[f.name for f in dataclasses.fields(self)]}")
        return dataclasses.replace(self, **changes)


# Muse's 24 base steps; a little below temperature 1, where the base stage drew fewer stray
# second objects; no confidence noise, so early steps keep the tokens the model is sure of;
# moderate guidance that rises over the steps, so the first tokens, on which the picture is
# built, follow the model's own idea of a picture and the prompt's pull grows as it fills in.
BASE = Sampling(steps=24, temperature=0.8, choice_temperature=0.0, guidance_scale=2.0,
                guidance_schedule="linear")

# Muse's 8 super-resolution steps; the likeliest token, since this stage only adds detail to a
# picture the base stage decided (sampling scattered specks); MaskGIT's confidence noise; no
# guidance, which drew no better here and costs a second model call per step.
SUPERRES = Sampling(steps=8, temperature=0.0, choice_temperature=4.5, guidance_scale=0.0)

# Mask-free editing as Muse ran it (§2.6): each iteration resamples its subset in one step,
# at temperature 1 among the 3 likeliest codes, with strong guidance (4) towards the new prompt.
EDIT = Sampling(steps=1, temperature=1.0, choice_temperature=0.0, guidance_scale=4.0, top_k=3)

# After an edit, the super-resolution stage redraws under the changed base tokens with the
# edit's pull towards the new prompt: its guidance, temperature and top-k.
EDIT_SUPERRES = SUPERRES.replace(guidance_scale=EDIT.guidance_scale,
                                 temperature=EDIT.temperature, top_k=EDIT.top_k)

# The autoregressive baseline (tinymuse.raster): the base stage's guidance and its ramp over
# the 64 positions, at a lower temperature, since a token drawn badly early is read by every
# token after it and cannot be taken back. Its steps are the parallel decoder's and unread.
AUTOREGRESSIVE = BASE.replace(temperature=0.6)


def resolve(default: Sampling, given=None) -> Sampling:
    """The settings a caller asked for: ``default`` itself (``given=None``), a
    :class:`Sampling`, or ``default`` with a dict of changes (``{"steps": 12}``)."""
    if given is None:
        return default
    if isinstance(given, Sampling):
        return given
    if isinstance(given, dict):
        return default.replace(**given)
    raise TypeError(f"sampling settings are a Sampling, a dict of changes such as "
                    f"{{'steps': 12}}, or None for the defaults; got {given!r}")


def prompt_list(prompts) -> list[str]:
    """``prompts`` (one string, or an iterable of strings) as a non-empty list of strings."""
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


def one_each(prompts, count: int, per: str = "prompt", what: str = "prompts") -> list[str]:
    """``prompts`` for ``count`` items (prompts, images): one string or a one-item list for
    all of them, or one per item."""
    prompts = prompt_list(prompts)
    if len(prompts) == 1:
        prompts = prompts * count
    if len(prompts) != count:
        raise ValueError(f"{len(prompts)} {what} for {count} {per}s: give one for all or one "
                         f"per {per}")
    return prompts


def negative_prompt_list(negative, count: int) -> list[str] | None:
    """The negative prompts for ``count`` prompts: None (guidance contrasts with the empty
    prompt), or one string for all, or one per prompt."""
    return None if negative is None else one_each(negative, count, "prompt", "negative prompts")
