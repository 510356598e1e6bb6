"""The cascade's recipe: what each stage trains, on what, into which file, in what order.

Muse is not one network but a chain of them, each trained on what the earlier ones made:

=================  =====================================================  ===================
stage              what it learns                                          written to
=================  =====================================================  ===================
``tokenizer``      SentencePiece pieces of the captions                    ``tokenizer/``
``text``           the text encoder, by masked-language modelling          ``text/``
``vq-base``        a VQ tokenizer, 32×32 images ⇄ 8×8 tokens               ``vq-base/``
``vq-superres``    a VQ tokenizer, 64×64 images ⇄ 16×16 tokens             ``vq-superres/``
``tokens``         every training image pre-encoded at both resolutions    ``tokens/``
``decoders``       both VQ decoders sharpened, tokens unchanged            ``decoders/``
``base``           the base transformer: caption → 8×8 tokens              ``base/``
``superres``       the super-resolution transformer: + 8×8 → 16×16         ``superres/``
``pipeline``       all of the above, assembled for sampling (float16)      ``pipeline/``
``ar-base``        (optional) the autoregressive baseline: caption → 8×8   ``ar-base/``
                   tokens one at a time, for chapter 7's comparison
=================  =====================================================  ===================

``--stage all`` runs every stage but the optional ``ar-base``, which needs the tokenizer, the
text encoder, the base VQ tokenizer and the token cache, and nothing after them.

Each stage's function here only decides sizes, data and paths from the preset and calls the
stage's recipe (:mod:`tinymuse.training`, :func:`tinymuse.vq.pre_encode`, ...). A stage that
trains returns its training time as its trainer's checkpoint recorded it over every resumed
call; the others return None. Every stage that trains writes its checkpoint every
``preset.checkpoint_every`` steps, so a stage killed at any moment (``kill -9`` included) loses
at most that many steps when it is resumed. Running the stages in order, resuming and recording
is :mod:`tinymuse.cascade.runs`.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from .. import backend, checkpoint
from ..data import ImageCaptionFolder, ShapesDataset, shapes_captions
from ..evaluate import SampleMonitor, base_sampler, monitor_prompts, superres_monitor
from ..models import (AutoregressiveConfig, AutoregressiveTransformer, BaseTransformer,
                      BaseTransformerConfig, SuperResTransformer, SuperResTransformerConfig)
from ..pipeline import Pipeline
from ..text import TextEncoder, TextEncoderConfig, Tokenizer
from ..training import text as text_training
from ..training.loop import CHECKPOINT
from ..training import transformer as transformer_training
from ..training import vq as vq_training
from ..vq import VQTokenizer, load_image_tokens, pre_encode, stage_config
from .presets import CascadePreset

__all__ = ["STAGES", "OPTIONAL_STAGES", "TRANSFORMER_STAGES", "CascadeError", "stage_paths",
           "outputs", "RUNNERS", "transformer_setup", "transformer_training_config",
           "encode_caches", "assemble", "VALIDATION_SCENES"]

STAGES = ("tokenizer", "text", "vq-base", "vq-superres", "tokens", "decoders", "base",
          "superres", "pipeline")
OPTIONAL_STAGES = ("ar-base",)  # trained only when asked for by name, never by "all"
TRANSFORMER_STAGES = ("base", "superres", "ar-base")  # their schedule can be changed and continued
# Each transformer stage: its model, its config, and its fields' prefix in the preset.
_TRANSFORMERS = {"base": (BaseTransformer, BaseTransformerConfig, "base"),
                 "superres": (SuperResTransformer, SuperResTransformerConfig, "superres"),
                 "ar-base": (AutoregressiveTransformer, AutoregressiveConfig, "ar_base")}
# Fresh shapes-world scenes on which each transformer stage's loss is measured at every
# sampling, beside as many scenes of its training cache (its validation).
VALIDATION_SCENES = 256


class CascadeError(ValueError):
    """A cascade stage cannot run: a missing earlier stage, a folder in the way, bad data."""


def stage_paths(out_dir) -> dict:
    """Where each stage keeps its files inside the run folder ``out_dir``."""
    out = Path(out_dir)
    return {
        "tokenizer": out / "tokenizer" / "tokenizer.model",
        "text": out / "text" / text_training.ENCODER,
        "vq-base": out / "vq-base" / vq_training.TOKENIZER,
        "vq-superres": out / "vq-superres" / vq_training.TOKENIZER,
        "tokens-base": out / "tokens" / "base.safetensors",
        "tokens-superres": out / "tokens" / "superres.safetensors",
        "validation-base": out / "tokens" / "validation-base.safetensors",
        "validation-superres": out / "tokens" / "validation-superres.safetensors",
        "decoder-base": out / "decoders" / "base" / vq_training.TOKENIZER,
        "decoder-superres": out / "decoders" / "superres" / vq_training.TOKENIZER,
        "base": out / "base" / transformer_training.MODEL,
        "superres": out / "superres" / transformer_training.MODEL,
        "pipeline": out / "pipeline",
        "ar-base": out / "ar-base" / transformer_training.MODEL,
    }


def outputs(out_dir, stage: str, preset: CascadePreset) -> list[Path]:
    """The files a finished ``stage`` of a run of ``preset`` leaves in the run folder
    ``out_dir`` (none for the decoders when the preset fine-tunes none)."""
    paths = stage_paths(out_dir)
    if stage == "pipeline":
        return [paths["pipeline"] / "pipeline.json"]
    if stage == "decoders" and preset.decoder_steps == 0:
        return []
    if stage in ("tokens", "decoders"):
        prefix = "tokens" if stage == "tokens" else "decoder"
        return [paths[f"{prefix}-base"], paths[f"{prefix}-superres"]]
    return [paths[stage]]


def _trained_seconds(*folders: Path) -> float:
    """The training time the loop's checkpoints in ``folders`` recorded, over every resumed
    call: what a stage that trains reports as its time."""
    return sum(checkpoint.read_header(folder / CHECKPOINT)[1]["extra"]["seconds"]
               for folder in folders)


def _need(paths: dict, *names: str) -> None:
    for name in names:
        if not paths[name].exists():
            stage = "tokens" if name.startswith("tokens-") else name
            raise CascadeError(f"this stage needs {paths[name]}, made by the {stage!r} stage; "
                               f"run `tinymuse train --stage {stage}` (or --stage all) first")


# --------------------------------------------------------------------------- #
# Data: the shapes world or a folder of image-caption pairs.
# --------------------------------------------------------------------------- #


def _dataset(data: str, resolution: int, length: int | None = None, seed: int = 0,
             world: str = "full"):
    """The training examples: the shapes world's ``world`` (train split, stream ``seed``),
    or the folder ``data`` (which has no worlds)."""
    if data == "shapes":
        return ShapesDataset(resolution=resolution, seed=seed, split="train", length=length,
                             world=world)
    return ImageCaptionFolder(data, resolution=resolution)


def _captions(data: str, preset: CascadePreset) -> list[str]:
    if data == "shapes":
        return shapes_captions(preset.captions, seed=0, world=preset.world)
    folder = _dataset(data, 8)
    return [folder.caption(i) for i in range(len(folder))]


# --------------------------------------------------------------------------- #
# The stages, in order.
# --------------------------------------------------------------------------- #


def _train_tokenizer(out, preset, data, device, progress):
    Tokenizer.train(_captions(data, preset), vocab_size=preset.vocab_size,
                    path=stage_paths(out)["tokenizer"])


def _train_text(out, preset, data, device, progress):
    paths = stage_paths(out)
    _need(paths, "tokenizer")
    tokenizer = Tokenizer.load(paths["tokenizer"])
    backend.manual_seed(0)
    config = TextEncoderConfig(vocab_size=tokenizer.vocab_size, **preset.text)
    encoder = TextEncoder(config, generator=backend.Generator(0)).to(device)
    train = text_training.TRAINING.replace(steps=preset.text_steps,
                                           batch_size=preset.text_batch,
                                           checkpoint_every=preset.checkpoint_every,
                                           progress=progress)
    result = text_training.pretrain_text_encoder(
        encoder, tokenizer, _captions(data, preset), train, paths["text"].parent,
        identity_weight=preset.text_identity_weight)
    return result.total_seconds


def _vq_training(preset, stage: str, base):
    steps = getattr(preset, f"vq_{stage}_steps")
    every = max(1, min(500, steps))
    return base.replace(steps=steps, batch_size=getattr(preset, f"vq_{stage}_batch"),
                        sample_every=every, checkpoint_every=preset.checkpoint_every)


def _train_vq(stage: str):
    def run(out, preset, data, device, progress):
        config = dataclasses.replace(stage_config(stage), **getattr(preset, f"vq_{stage}"))
        train = _vq_training(preset, stage, vq_training.TRAINING).replace(progress=progress)
        dataset = _dataset(data, config.image_size, world=preset.world)
        folder = Path(out) / f"vq-{stage}"
        vq_training.train_tokenizer(config, train, dataset=dataset, out_dir=folder,
                                    device=device)
        return _trained_seconds(folder)
    return run


def _pre_encode(out, preset, data, device, progress):
    paths = stage_paths(out)
    _need(paths, "vq-base", "vq-superres")
    for stage in ("base", "superres"):
        paths[f"validation-{stage}"].unlink(missing_ok=True)  # encoded by an earlier tokenizer
    count = preset.images if data == "shapes" else len(_dataset(data, 8))
    encode_caches(paths, data, count, device, progress, world=preset.world)


def encode_caches(paths: dict, data: str, count: int, device, progress,
                  world: str = "full") -> None:
    """Write both token caches: the first ``count`` examples of ``data`` (of the shapes
    ``world``), each encoded by its stage's VQ tokenizer."""
    for stage in ("base", "superres"):
        vq = VQTokenizer.load(paths[f"vq-{stage}"], device=device)
        length = count if data == "shapes" else None
        pre_encode(vq, _dataset(data, vq.config.image_size, length, world=world),
                   paths[f"tokens-{stage}"], count=count, progress=progress)


def _finetune_decoders(out, preset, data, device, progress):
    paths = stage_paths(out)
    _need(paths, "vq-base", "vq-superres", "tokens-base", "tokens-superres")
    if preset.decoder_steps == 0:
        return
    for stage in ("base", "superres"):
        vq = VQTokenizer.load(paths[f"vq-{stage}"], device=device)
        every = max(1, min(500, preset.decoder_steps))
        train = vq_training.FINETUNING.replace(
            steps=preset.decoder_steps, batch_size=getattr(preset, f"vq_{stage}_batch"),
            checkpoint_every=preset.checkpoint_every, sample_every=every, progress=progress)
        # seed 2: scenes the tokenizer's own training (seed 0) did not draw
        dataset = _dataset(data, vq.config.image_size, seed=2, world=preset.world)
        vq_training.finetune_decoder(vq, train, dataset, paths[f"decoder-{stage}"].parent)
    return _trained_seconds(paths["decoder-base"].parent, paths["decoder-superres"].parent)


def _final_vq(paths: dict, stage: str):
    """The tokenizer a pipeline decodes with: the fine-tuned decoder if there is one."""
    finetuned = paths[f"decoder-{stage}"]
    return VQTokenizer.load(finetuned if finetuned.exists() else paths[f"vq-{stage}"])


def transformer_training_config(preset: CascadePreset, stage: str, progress: bool):
    """The preset's training settings of a transformer stage."""
    prefix = _TRANSFORMERS[stage][2]
    steps = getattr(preset, f"{prefix}_steps")
    return transformer_training.TRAINING.replace(
        steps=steps, batch_size=getattr(preset, f"{prefix}_batch"), lr=preset.lr,
        warmup_steps=min(200, steps // 10), ema_decay=preset.ema,
        sample_every=preset.sample_every, checkpoint_every=preset.checkpoint_every,
        progress=progress)


def _validation_tokens(out, data, device, which: str, world: str = "full"):
    """The run's validation cache for the ``which`` (``"base"`` or ``"superres"``) tokenizer:
    the first :data:`VALIDATION_SCENES` scenes of shapes-world seed 1 (the training cache is
    seed 0's) of the run's ``world``, encoded on first use and kept in
    ``tokens/validation-<which>.safetensors``.
    ``None`` for a folder of pictures, which has no fresh examples to draw."""
    if data != "shapes":
        return None
    paths = stage_paths(out)
    path = paths[f"validation-{which}"]
    if not path.exists():
        vq = VQTokenizer.load(paths[f"vq-{which}"], device=device)
        pre_encode(vq, _dataset(data, vq.config.image_size, VALIDATION_SCENES, seed=1,
                                world=world), path, progress=False)
    return load_image_tokens(path)


def _new_transformer(kind, config, encoder, tokenizer, device):
    backend.manual_seed(0)
    return kind(config, text_encoder=encoder, tokenizer=tokenizer,
                generator=backend.Generator(0)).to(device)


def transformer_setup(out, preset, data, device, stage: str, weights=None):
    """``(model, cache, monitor, validation)`` of a transformer stage of this run. The model is
    freshly initialised from the preset or, given ``weights``, loaded from that file with the
    architecture it was saved with. The monitor (shapes-world runs that sample at all: a
    folder of pictures has captions the oracle cannot read) and the validation cache may be
    None."""
    paths = stage_paths(out)
    needed = ["tokenizer", "text", "vq-base", "tokens-base"]
    _need(paths, *(needed + (["vq-superres", "tokens-superres"] if stage == "superres" else [])))
    tokenizer = Tokenizer.load(paths["tokenizer"])
    kind, config_type, prefix = _TRANSFORMERS[stage]
    vq = VQTokenizer.load(paths["vq-base" if stage == "ar-base" else f"vq-{stage}"],
                          device=device)
    cache = load_image_tokens(paths["tokens-base"])
    validation = _validation_tokens(out, data, device, "base", preset.world)
    if stage == "superres":
        cache = transformer_training.pair_caches(cache, load_image_tokens(
            paths["tokens-superres"]))
        if validation is not None:
            validation = transformer_training.pair_caches(
                validation, _validation_tokens(out, data, device, "superres", preset.world))
    if weights is not None:
        model = kind.load(weights, tokenizer=tokenizer, device=device)
    else:
        encoder = TextEncoder.load(paths["text"])
        low = VQTokenizer.load(paths["vq-base"]).config
        shape = dict(codebook_size=vq.config.codebook_size, grid_size=vq.config.token_size)
        if stage == "superres":
            shape.update(low_codebook_size=low.codebook_size, low_grid_size=low.token_size)
        config = config_type(text=encoder.config, **shape, **_model_changes(preset, stage))
        model = _new_transformer(kind, config, encoder, tokenizer, device)
    monitor = None
    if data == "shapes" and preset.sample_every <= getattr(preset, f"{prefix}_steps"):
        monitor = (superres_monitor(cache, vq) if stage == "superres" else
                   SampleMonitor(monitor_prompts(world=preset.world),
                                 base_sampler(vq, raster=stage == "ar-base")))
    return model, cache, monitor, validation


def _model_changes(preset, stage: str) -> dict:
    """The preset's changes to a transformer stage's config. The autoregressive baseline
    takes the base stage's (same width and depth, so the two decoders compare like for like)
    and then its own; the base stage's mask schedule is not one of its fields."""
    if stage != "ar-base":
        return dict(getattr(preset, _TRANSFORMERS[stage][2]))
    known = {f.name for f in dataclasses.fields(AutoregressiveConfig)}
    return {**{k: v for k, v in preset.base.items() if k in known}, **preset.ar_base}


def _train_transformer(stage: str):
    def run(out, preset, data, device, progress, schedule=None):
        model, cache, monitor, validation = transformer_setup(out, preset, data, device, stage)
        config = transformer_training_config(preset, stage, progress).replace(
            **(schedule or {}))
        result = transformer_training.train_transformer(
            model, cache, config, stage_paths(out)[stage].parent, monitor=monitor,
            validation=validation)
        if progress:
            print(f"{stage} transformer: steps {result.start_step}-{result.step} in "
                  f"{result.seconds / 60:.1f} min", flush=True)
        return result.total_seconds
    return run


def assemble(out, preset, data, device, progress) -> None:
    """The ``pipeline`` stage: the trained parts as one pipeline folder, stored in float16."""
    paths = stage_paths(out)
    _need(paths, "tokenizer", "vq-base", "vq-superres", "base", "superres")
    tokenizer = Tokenizer.load(paths["tokenizer"])
    base = BaseTransformer.load(paths["base"], tokenizer=tokenizer)
    superres = SuperResTransformer.load(paths["superres"], tokenizer=tokenizer)
    if _same_weights(base.text_encoder, superres.text_encoder):
        superres.text_encoder = base.text_encoder  # one frozen copy, stored once
    # else a stage trained its encoder jointly (train_text_encoder): each keeps its own
    pipeline = Pipeline.from_components(tokenizer=tokenizer, base_vq=_final_vq(paths, "base"),
                                        base=base, superres_vq=_final_vq(paths, "superres"),
                                        superres=superres)
    pipeline.save(paths["pipeline"], dtype="float16")


def _same_weights(first, second) -> bool:
    ours, theirs = first.state_dict(), second.state_dict()
    return ours.keys() == theirs.keys() and all(
        np.array_equal(ours[k], theirs[k]) for k in ours)


RUNNERS = {
    "tokenizer": _train_tokenizer,
    "text": _train_text,
    "vq-base": _train_vq("base"),
    "vq-superres": _train_vq("superres"),
    "tokens": _pre_encode,
    "decoders": _finetune_decoders,
    "base": _train_transformer("base"),
    "superres": _train_transformer("superres"),
    "pipeline": assemble,
    "ar-base": _train_transformer("ar-base"),
}
