"""The cascade's presets: the sizes and lengths of every stage of one run, as data.

A preset is one frozen dataclass; :data:`PRESETS` is the only table of them. ``tinymuse train
--preset NAME`` picks one, and ``--set FIELD=VALUE`` changes a field of it for one run
(:func:`changed`); the run folder records the values it was trained with. Why the
``default`` preset's values are what they are is in ``docs/RESULTS.md``; what its bundled run
reached, and in what time, in ``docs/MODEL_CARD.md``.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field

__all__ = ["CascadePreset", "PRESETS", "changed", "describe_fields"]


@dataclass(frozen=True)
class CascadePreset:
    """Sizes and lengths of every stage of one cascade run."""

    name: str
    # which scenes of the shapes world every stage sees (tinymuse.data.shapes.WORLDS); a
    # folder of pictures (--data DIR) has no worlds and ignores it
    world: str = "full"
    # SentencePiece and the text encoder
    captions: int = 20000              # shapes-world captions for the tokenizer and MLM
    vocab_size: int = 256
    text: dict = field(default_factory=dict)        # TextEncoderConfig changes
    text_steps: int = 2000
    text_batch: int = 64
    # The weight of MLM's term that keeps each visible token's identity (text.mlm_loss):
    # without it a frozen encoder gives interchangeable words, such as the 26 letters, nearly
    # one vector, and the image stages cannot tell "A" from "B".
    text_identity_weight: float = 1.0
    # the two VQ tokenizers (VQConfig changes; training steps and batch size)
    vq_base: dict = field(default_factory=dict)
    vq_base_steps: int = 2000
    vq_base_batch: int = 32
    vq_superres: dict = field(default_factory=dict)
    vq_superres_steps: int = 2000
    vq_superres_batch: int = 8
    # token caches: how many shapes-world scenes are pre-encoded
    images: int = 10000
    # steps of decoder-only fine-tuning per VQ tokenizer once the tokens are fixed (0: none)
    decoder_steps: int = 0
    # the transformers (config changes; training steps, batch size, learning rate, EMA)
    base: dict = field(default_factory=dict)
    base_steps: int = 2000
    base_batch: int = 64
    superres: dict = field(default_factory=dict)
    superres_steps: int = 1500
    superres_batch: int = 32
    # the autoregressive baseline (optional stage "ar-base"): the base stage's config with
    # these changes, its own steps and batch size
    ar_base: dict = field(default_factory=dict)
    ar_base_steps: int = 2000
    ar_base_batch: int = 64
    lr: float = 1e-3
    ema: float | None = None
    sample_every: int = 500           # monitor grids + oracle scores (shapes data only)
    # every stage that trains: a stage killed at any moment loses at most this many steps
    checkpoint_every: int = 100


PRESETS = {
    # Seconds: enough to check that every stage runs and fits the next one.
    "tiny": CascadePreset(
        name="tiny", captions=400, text=dict(d_model=16, num_layers=1, num_heads=2),
        text_steps=3, text_batch=8,
        vq_base=dict(channels=8, channel_mult=(1, 2, 2), codebook_size=16, code_dim=8,
                     norm_groups=4),
        vq_base_steps=2, vq_base_batch=4,
        vq_superres=dict(channels=8, channel_mult=(1, 2, 2), codebook_size=16, code_dim=8,
                         norm_groups=4),
        vq_superres_steps=2, vq_superres_batch=2,
        images=16, decoder_steps=2,
        base=dict(d_model=16, num_layers=1, num_heads=2), base_steps=3, base_batch=4,
        superres=dict(d_model=16, num_layers=1, num_heads=2), superres_steps=3,
        superres_batch=4, ar_base_steps=3, ar_base_batch=4, sample_every=10 ** 9,
        checkpoint_every=2),
    # The whole cascade in half an hour on two CPU cores (chapter 11): the one-object world
    # with its object near the middle (no counts, relations or letters to learn, and each
    # shape learnt at one place, not at every place: the transformer's positions share no
    # weights), short captions and few pieces, and pictures
    # half the default size on both sides (16² base pictures as 8×8 tokens of 2×2 pixels,
    # 32² out), so that both tokenizers see a quarter of the pixels. The base tokenizer
    # trains longest for its size: its tokens are where the shapes survive or not, and the
    # super-resolution stage copies them. Measurements: docs/RESULTS.md, "The lab preset".
    "lab": CascadePreset(
        name="lab", world="centred", captions=5000, vocab_size=128,
        text=dict(d_model=64, num_layers=2, num_heads=4, max_length=16), text_steps=500,
        vq_base=dict(image_size=16, channel_mult=(1, 2), codebook_size=64), vq_base_steps=2000,
        vq_superres=dict(image_size=32, codebook_size=64), vq_superres_steps=700,
        vq_superres_batch=32, images=12000,
        base=dict(d_model=128, num_layers=3, num_heads=4), base_steps=3500, base_batch=32,
        superres=dict(d_model=128, num_layers=2, num_heads=4, low_num_layers=1, low_skip=True,
                      low_token_noise=0.1),
        superres_steps=800, superres_batch=32, ar_base_steps=2000, ar_base_batch=32,
        sample_every=500),
    # The run of the bundled weights. Small codebooks on purpose: with many codes a flat
    # background patch is split over near-identical codes, and the transformers spend their
    # steps learning that noise instead of shapes. The base tokenizer trains longest: a short
    # run caps the shapes its own round trip can keep.
    "default": CascadePreset(
        name="default", text_steps=800, vq_base=dict(codebook_size=64), vq_base_steps=4800,
        vq_superres=dict(codebook_size=64), vq_superres_steps=1200, images=20000,
        decoder_steps=1500,
        base=dict(d_model=128, num_layers=4, num_heads=4), base_steps=12000, base_batch=32,
        superres=dict(d_model=128, num_layers=2, num_heads=4, low_num_layers=1, low_skip=True,
                      low_token_noise=0.1),
        superres_steps=4000, superres_batch=16, ar_base_steps=6000, ar_base_batch=32,
        sample_every=2000),
}

# the dicts of changes
_SECTIONS = ("text", "vq_base", "vq_superres", "base", "superres", "ar_base")


def _parse(text: str):
    """A ``--set`` value: JSON (numbers, true/false/null, lists, quoted strings), or else the
    text itself as a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _same_kind(default, value) -> bool:
    """Whether ``value`` can stand where the preset has ``default``: a whole number for a
    whole number, any number for a float, a dict for a dict; anything where it has None."""
    if default is None:
        return True
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return isinstance(value, type(default))


def changed(preset: CascadePreset, assignments) -> CascadePreset:
    """``preset`` with ``FIELD=VALUE`` assignments (strings, as ``--set`` takes them): a field
    of the preset (``base_steps=600``), or a field of one of its model configs
    (``base.d_model=64``, ``text.num_layers=1``). A value keeps its field's type and range
    (counts of steps, images and sizes at least 1, rates finite and above 0), so that a slip
    is refused here, before any stage runs."""
    values = dataclasses.asdict(preset)
    fields = {f.name: f for f in dataclasses.fields(CascadePreset)}
    for assignment in assignments:
        key, equals, text = assignment.partition("=")
        if not equals or not key:
            raise ValueError(f"--set takes FIELD=VALUE, got {assignment!r}")
        value = _parse(text)
        section, dot, name = key.partition(".")
        if dot:
            if section not in _SECTIONS:
                raise ValueError(f"--set {key}: {section!r} is not one of the preset's model "
                                 f"settings {_SECTIONS}")
            values[section] = {**values[section], name: _model_value(section, name, value, text)}
            continue
        if key not in fields or key == "name":
            raise ValueError(f"--set {key}: the preset has no field {key!r}; its fields are "
                             f"{', '.join(describe_fields())}")
        default = getattr(preset, key)
        if isinstance(default, dict):
            example = next(iter(default), "FIELD")
            raise ValueError(f"--set {key}: set the fields of {key} one at a time, "
                             f"like --set {key}.{example}=VALUE, not the whole {key} at once")
        if not _same_kind(default, value):
            raise ValueError(f"--set {key}: expected a value like {default!r}, got {text!r}")
        _check_range(key, value, lowest=0 if key in _MAY_BE_ZERO else 1)
        _check_world(key, value)
        values[key] = float(value) if isinstance(default, float) else value
    return CascadePreset(**values)


# Fields of the preset that may be 0: no decoder fine-tuning, no identity term, no EMA decay.
_MAY_BE_ZERO = ("decoder_steps", "text_identity_weight", "ema")


def _check_range(key: str, value, lowest: float) -> None:
    """Numbers must be finite and at least ``lowest`` (a learning rate above 0, an EMA decay
    below 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if not math.isfinite(value) or value < lowest or (key == "lr" and value <= 0) \
            or (key == "ema" and value >= 1):
        bound = {"lr": "above 0", "ema": "from 0 to below 1"}.get(key, f">= {lowest}")
        raise ValueError(f"--set {key}: must be a finite number {bound}, got {value!r}")


def _check_world(key: str, value) -> None:
    from ..data.shapes import WORLDS

    if key == "world" and value not in WORLDS:
        raise ValueError(f"--set world: must be one of {', '.join(WORLDS)}, got {value!r}")


def _model_value(section: str, name: str, value, text: str):
    """``value`` for field ``name`` of the ``section``'s model config, checked against it."""
    from ..models import AutoregressiveConfig, BaseTransformerConfig, SuperResTransformerConfig
    from ..text import TextEncoderConfig
    from ..vq import VQConfig

    config = {"text": TextEncoderConfig, "vq_base": VQConfig, "vq_superres": VQConfig,
              "base": BaseTransformerConfig, "superres": SuperResTransformerConfig,
              "ar_base": AutoregressiveConfig}[section]
    known = {f.name: f for f in dataclasses.fields(config) if f.name != "text"}
    if name not in known:
        raise ValueError(f"--set {section}.{name}: {config.__name__} has no field {name!r}; "
                         f"its fields are {', '.join(known)}")
    default = known[name].default
    if isinstance(default, tuple) and isinstance(value, list):
        value = tuple(value)
    if default is not dataclasses.MISSING and not _same_kind(default, value):
        raise ValueError(f"--set {section}.{name}: expected a value like {default!r}, got "
                         f"{text!r}")
    _check_range(f"{section}.{name}", value, lowest=0)
    return value


def describe_fields() -> list[str]:
    """The names ``--set`` accepts (the dicts as ``NAME.KEY``)."""
    return [f"{f.name}.KEY" if f.name in _SECTIONS else f.name
            for f in dataclasses.fields(CascadePreset) if f.name != "name"]
