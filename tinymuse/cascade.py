"""Training the whole Muse cascade, stage by stage, into one folder.

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
=================  =====================================================  ===================

:func:`train_cascade` runs them in this order (``tinymuse train --stage all``) or one at a
time. Each stage only calls the stage's own training function (``Tokenizer.train``,
:func:`tinymuse.text.pretrain.pretrain_text_encoder`, :func:`tinymuse.vq.train_tokenizer`,
:func:`tinymuse.vq.pre_encode`, :func:`tinymuse.vq.finetune_decoder`,
:func:`tinymuse.train.train_stage`); this module only decides
sizes, paths and order.

Resuming. ``cascade.json`` in the folder records the preset, the data and each finished stage
with its training time. Run the same command again with ``resume=True`` and finished stages are
skipped, while an interrupted VQ or transformer stage continues exactly from its last checkpoint
(their loops resume by themselves). Without ``resume`` a folder that already holds a run is
refused, so nothing is overwritten by accident.

Training further. A transformer stage's learning rate follows a schedule to its last step, so
"more of the same" is not a resume: :func:`train_more` (``tinymuse train --stage base
--more-steps N``) starts a new schedule from the stage's weights, in ``<stage>/more-1``,
``more-2``, …, then puts the new weights in place, records the round in ``cascade.json`` and
assembles the pipeline again. When the rounds have seen each cached scene too often, a
finished run's caches can be encoded again with more scenes first: :func:`more_images`
(``tinymuse train --stage tokens --images N``).

A transformer stage's schedule can differ from the preset's: ``schedule={"steps": …,
"batch_size": …, "lr": …, "warmup_steps": …, "ema_decay": …}`` (``tinymuse train --stage base
--steps N --batch-size B``), e.g. a larger batch on a GPU. The stage's entry in ``cascade.json``
records it.

Presets. ``tiny`` trains in seconds and exists for tests (its images are noise); ``small`` is a
shorter run of smaller models; ``default`` is the run meant for the weights bundled in
``tinymuse/assets`` (the README records what one run of it reached, and how long it took).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import backend

__all__ = ["STAGES", "PRESETS", "CascadePreset", "CascadeError", "train_cascade", "train_more",
           "more_images", "stage_paths", "load_record", "SCHEDULE_KEYS"]

STAGES = ("tokenizer", "text", "vq-base", "vq-superres", "tokens", "decoders", "base",
          "superres", "pipeline")
MORE_STAGES = ("base", "superres")  # the transformer stages: their schedule can be changed
RECORD = "cascade.json"
# Fresh shapes-world scenes on which each transformer stage's loss is measured at every
# sampling, beside as many scenes of its training cache (train_stage's validation).
VALIDATION_SCENES = 256


class CascadeError(ValueError):
    """A cascade stage cannot run: a missing earlier stage, a folder in the way, bad data."""


@dataclass(frozen=True)
class CascadePreset:
    """Sizes and lengths of every stage of one cascade run."""

    name: str
    # SentencePiece and the text encoder
    captions: int = 20000              # shapes-world captions for the tokenizer and MLM
    vocab_size: int = 256
    text: dict = field(default_factory=dict)        # TextEncoderConfig changes
    text_steps: int = 2000
    text_batch: int = 64
    # MLM's extra term that keeps token identity (mlm_loss): without it a frozen encoder gave
    # the 26 letters nearly one vector (cosine 0.995), and the image stages could not tell
    # "A" from "B" (README, "Measured")
    text_identity_weight: float = 1.0
    # the two VQ tokenizers (VQConfig changes; steps and batch of VQTrainConfig)
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
    # the transformers (config changes; TrainConfig steps, batch size, learning rate)
    base: dict = field(default_factory=dict)
    base_steps: int = 2000
    base_batch: int = 64
    superres: dict = field(default_factory=dict)
    superres_steps: int = 1500
    superres_batch: int = 32
    lr: float = 1e-3
    ema: float | None = None
    sample_every: int = 500           # monitor grids + oracle scores (shapes data only)
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
        superres_batch=4, sample_every=10 ** 9, checkpoint_every=2),
    # A quick look: smaller models, shorter runs.
    "small": CascadePreset(
        name="small", captions=5000, text=dict(d_model=64, num_layers=2, num_heads=4),
        text_steps=300, vq_base=dict(codebook_size=128), vq_base_steps=300,
        vq_superres=dict(codebook_size=128), vq_superres_steps=300, images=3000,
        base=dict(d_model=128, num_layers=3, num_heads=4), base_steps=800, base_batch=32,
        superres=dict(d_model=96, num_layers=2, num_heads=4, low_num_layers=1),
        superres_steps=600, superres_batch=16, sample_every=400),
    # For the bundled weights. Small codebooks on purpose: with 512 codes a flat background
    # patch was split over ~100 near-identical codes, and the transformers spent their steps
    # learning that noise instead of shapes (README, "Measured", has the numbers). The base
    # tokenizer trains 4,800 steps: after 1,200 its own round trip capped shape at 0.90.
    "default": CascadePreset(
        name="default", text_steps=800, vq_base=dict(codebook_size=64), vq_base_steps=4800,
        vq_superres=dict(codebook_size=64), vq_superres_steps=1200, images=20000,
        decoder_steps=1500,
        base=dict(d_model=128, num_layers=4, num_heads=4), base_steps=12000, base_batch=32,
        superres=dict(d_model=128, num_layers=2, num_heads=4, low_num_layers=1, low_skip=True,
                      low_token_noise=0.1),
        superres_steps=4000, superres_batch=16, sample_every=2000),
}


def stage_paths(out_dir) -> dict:
    """Where each stage keeps its files inside the run folder ``out_dir``."""
    out = Path(out_dir)
    return {
        "tokenizer": out / "tokenizer" / "tokenizer.model",
        "text": out / "text" / "text_encoder.safetensors",
        "vq-base": out / "vq-base" / "tokenizer.safetensors",
        "vq-superres": out / "vq-superres" / "tokenizer.safetensors",
        "tokens-base": out / "tokens" / "base.safetensors",
        "tokens-superres": out / "tokens" / "superres.safetensors",
        "validation-base": out / "tokens" / "validation-base.safetensors",
        "validation-superres": out / "tokens" / "validation-superres.safetensors",
        "decoder-base": out / "decoders" / "base" / "tokenizer.safetensors",
        "decoder-superres": out / "decoders" / "superres" / "tokenizer.safetensors",
        "base": out / "base" / "model.safetensors",
        "superres": out / "superres" / "model.safetensors",
        "pipeline": out / "pipeline",
    }


def _outputs(out_dir, stage: str) -> list[Path]:
    """The files a finished ``stage`` leaves in the run folder ``out_dir``."""
    paths = stage_paths(out_dir)
    if stage == "pipeline":
        return [paths["pipeline"] / "pipeline.json"]
    if stage in ("tokens", "decoders"):
        prefix = "tokens" if stage == "tokens" else "decoder"
        return [paths[f"{prefix}-base"], paths[f"{prefix}-superres"]]
    return [paths[stage]]


def load_record(out_dir) -> dict | None:
    """The ``cascade.json`` of a run folder, or None if there is none."""
    path = Path(out_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


# --------------------------------------------------------------------------- #
# Data: the shapes world or a folder of image-caption pairs.
# --------------------------------------------------------------------------- #


def _dataset(data: str, resolution: int, length: int | None = None, seed: int = 0):
    from .data import ImageCaptionFolder, ShapesDataset

    if data == "shapes":
        return ShapesDataset(resolution=resolution, seed=seed, split="train", length=length)
    return ImageCaptionFolder(data, resolution=resolution)


def _captions(data: str, preset: CascadePreset) -> list[str]:
    if data == "shapes":
        from .text.pretrain import shapes_captions

        return shapes_captions(preset.captions, seed=0)
    folder = _dataset(data, 8)
    return [folder.caption(i) for i in range(len(folder))]


def _cache_size(data: str, preset: CascadePreset) -> int:
    return preset.images if data == "shapes" else len(_dataset(data, 8))


# --------------------------------------------------------------------------- #
# The stages. Each returns nothing; its files are in stage_paths(out).
# --------------------------------------------------------------------------- #


def _need(paths: dict, *names: str) -> None:
    for name in names:
        if not paths[name].exists():
            stage = name.removeprefix("tokens-") if name.startswith("tokens-") else name
            stage = "tokens" if name.startswith("tokens-") else stage
            raise CascadeError(f"this stage needs {paths[name]}, made by the {stage!r} stage; "
                               f"run `tinymuse train --stage {stage}` (or --stage all) first")


def _train_tokenizer(out, preset, data, device, progress):
    from .text.tokenizer import Tokenizer

    Tokenizer.train(_captions(data, preset), vocab_size=preset.vocab_size,
                    path=stage_paths(out)["tokenizer"])


def _train_text(out, preset, data, device, progress):
    from .text.encoder import TextEncoder, TextEncoderConfig
    from .text.pretrain import PretrainConfig, pretrain_text_encoder
    from .text.tokenizer import Tokenizer

    paths = stage_paths(out)
    _need(paths, "tokenizer")
    tokenizer = Tokenizer.load(paths["tokenizer"])
    backend.manual_seed(0)
    config = TextEncoderConfig(vocab_size=tokenizer.vocab_size, **preset.text)
    encoder = TextEncoder(config, generator=backend.Generator(0)).to(device)
    losses = pretrain_text_encoder(encoder, tokenizer, _captions(data, preset),
                                   PretrainConfig(steps=preset.text_steps,
                                                  batch_size=preset.text_batch, seed=0,
                                                  identity_weight=preset.text_identity_weight),
                                   progress=progress)
    encoder.save(paths["text"], metadata={"mlm_loss_last": losses[-1], "steps": len(losses)})


def _train_vq(stage: str):
    def run(out, preset, data, device, progress):
        from .vq import stage_config, train_tokenizer

        config, train = stage_config(stage)
        changes = preset.vq_base if stage == "base" else preset.vq_superres
        config = dataclasses.replace(config, **changes)
        train.steps = preset.vq_base_steps if stage == "base" else preset.vq_superres_steps
        train.batch_size = preset.vq_base_batch if stage == "base" else preset.vq_superres_batch
        train.sample_every = train.checkpoint_every = max(1, min(500, train.steps))
        dataset = None if data == "shapes" else _dataset(data, config.image_size)
        train_tokenizer(config, train, dataset=dataset, out_dir=Path(out) / f"vq-{stage}",
                        resume=True, device=device, progress=progress)
    return run


def _pre_encode(out, preset, data, device, progress):
    paths = stage_paths(out)
    _need(paths, "vq-base", "vq-superres")
    for stage in ("base", "superres"):
        paths[f"validation-{stage}"].unlink(missing_ok=True)  # encoded by an earlier tokenizer
    _encode_caches(paths, data, _cache_size(data, preset), device, progress)


def _encode_caches(paths: dict, data: str, count: int, device, progress) -> None:
    """Write both token caches: the first ``count`` examples of ``data``, each encoded by
    its stage's VQ tokenizer."""
    from .vq import VQTokenizer, pre_encode

    for stage in ("base", "superres"):
        vq = VQTokenizer.load(paths[f"vq-{stage}"], device=device)
        pre_encode(vq, _dataset(data, vq.config.image_size, count if data == "shapes" else None),
                   paths[f"tokens-{stage}"], count=count, progress=progress)


def _finetune_decoders(out, preset, data, device, progress):
    from .vq import VQTokenizer, finetune_decoder
    from .vq.finetune import finetune_config

    paths = stage_paths(out)
    _need(paths, "vq-base", "vq-superres", "tokens-base", "tokens-superres")
    if preset.decoder_steps == 0:
        return
    for stage in ("base", "superres"):
        vq = VQTokenizer.load(paths[f"vq-{stage}"], device=device)
        train = finetune_config(preset.decoder_steps, getattr(preset, f"vq_{stage}_batch"),
                                checkpoint_every=max(1, min(500, preset.decoder_steps)))
        dataset = None if data == "shapes" else _dataset(data, vq.config.image_size)
        finetune_decoder(vq, train, dataset, paths[f"decoder-{stage}"].parent, progress=progress)


def _final_vq(paths: dict, stage: str):
    """The tokenizer a pipeline decodes with: the fine-tuned decoder if there is one."""
    from .vq import VQTokenizer

    finetuned = paths[f"decoder-{stage}"]
    return VQTokenizer.load(finetuned if finetuned.exists() else paths[f"vq-{stage}"])


def _train_config(preset, stage: str, progress: bool):
    from .train import TrainConfig

    return TrainConfig(steps=getattr(preset, f"{stage}_steps"),
                       batch_size=getattr(preset, f"{stage}_batch"), lr=preset.lr,
                       warmup_steps=min(200, getattr(preset, f"{stage}_steps") // 10),
                       ema_decay=preset.ema, sample_every=preset.sample_every,
                       checkpoint_every=preset.checkpoint_every, progress=progress)


def _wants_monitor(data, preset, stage: str) -> bool:
    """Sample grids with oracle scores: for shapes-world runs that sample at all (a folder of
    pictures has captions the oracle cannot read)."""
    return data == "shapes" and preset.sample_every <= getattr(preset, f"{stage}_steps")


def _monitor(sampler):
    from .train import PROMPT_KINDS, SampleMonitor, evaluation_prompts

    fixed = evaluation_prompts(2, "train", seed=3)
    return SampleMonitor([p for kind in PROMPT_KINDS for p in fixed[kind]], sampler)


def _validation_tokens(out, data, device, which: str):
    """The run's validation cache for the ``which`` (``"base"`` or ``"superres"``) tokenizer:
    the first :data:`VALIDATION_SCENES` scenes of shapes-world seed 1 (the training cache is
    seed 0's), encoded on first use and kept in ``tokens/validation-<which>.safetensors``.
    ``None`` for a folder of pictures, which has no fresh examples to draw."""
    from .vq import VQTokenizer, load_image_tokens, pre_encode

    if data != "shapes":
        return None
    paths = stage_paths(out)
    path = paths[f"validation-{which}"]
    if not path.exists():
        vq = VQTokenizer.load(paths[f"vq-{which}"], device=device)
        pre_encode(vq, _dataset(data, vq.config.image_size, VALIDATION_SCENES, seed=1), path,
                   progress=False)
    return load_image_tokens(path)


def _base_setup(out, preset, data, device, weights=None):
    """The base transformer of this run, its token cache, its sample monitor (or None) and
    its validation cache (or None).
    The model is freshly initialised from the preset, or, given ``weights``, loaded from
    that file with the architecture it was saved with."""
    from .models.base import BaseTransformer, BaseTransformerConfig
    from .text.encoder import TextEncoder
    from .text.tokenizer import Tokenizer
    from .train import base_sampler
    from .vq import VQTokenizer, load_image_tokens

    paths = stage_paths(out)
    _need(paths, "tokenizer", "text", "vq-base", "tokens-base")
    tokenizer = Tokenizer.load(paths["tokenizer"])
    vq = VQTokenizer.load(paths["vq-base"], device=device)
    if weights is not None:
        model = BaseTransformer.load(weights, tokenizer=tokenizer, device=device)
    else:
        encoder = TextEncoder.load(paths["text"])
        config = BaseTransformerConfig(codebook_size=vq.config.codebook_size,
                                       grid_size=vq.config.token_size, text=encoder.config,
                                       **preset.base)
        backend.manual_seed(0)
        model = BaseTransformer(config, text_encoder=encoder, tokenizer=tokenizer,
                                generator=backend.Generator(0)).to(device)
    monitor = _monitor(base_sampler(vq)) if _wants_monitor(data, preset, "base") else None
    return (model, load_image_tokens(paths["tokens-base"]), monitor,
            _validation_tokens(out, data, device, "base"))


def _superres_setup(out, preset, data, device, weights=None):
    """The super-resolution transformer of this run, its paired token cache, its sample
    monitor (or None) and its paired validation cache (or None); the model as in
    :func:`_base_setup`."""
    from .models.superres import (SuperResTransformer, SuperResTransformerConfig,
                                  superres_monitor, superres_tokens)
    from .text.encoder import TextEncoder
    from .text.tokenizer import Tokenizer
    from .vq import VQTokenizer, load_image_tokens

    paths = stage_paths(out)
    _need(paths, "tokenizer", "text", "vq-base", "vq-superres", "tokens-base",
          "tokens-superres")
    tokenizer = Tokenizer.load(paths["tokenizer"])
    vq = VQTokenizer.load(paths["vq-superres"], device=device)
    cache = superres_tokens(load_image_tokens(paths["tokens-base"]),
                            load_image_tokens(paths["tokens-superres"]))
    if weights is not None:
        model = SuperResTransformer.load(weights, tokenizer=tokenizer, device=device)
    else:
        encoder = TextEncoder.load(paths["text"])
        low_vq = VQTokenizer.load(paths["vq-base"])
        config = SuperResTransformerConfig(
            codebook_size=vq.config.codebook_size, grid_size=vq.config.token_size,
            low_codebook_size=low_vq.config.codebook_size,
            low_grid_size=low_vq.config.token_size, text=encoder.config, **preset.superres)
        backend.manual_seed(0)
        model = SuperResTransformer(config, text_encoder=encoder, tokenizer=tokenizer,
                                    generator=backend.Generator(0)).to(device)
    monitor = superres_monitor(cache, vq) if _wants_monitor(data, preset, "superres") else None
    validation = None
    if data == "shapes":
        validation = superres_tokens(_validation_tokens(out, data, device, "base"),
                                     _validation_tokens(out, data, device, "superres"))
    return model, cache, monitor, validation


_SETUPS = {"base": _base_setup, "superres": _superres_setup}
_TITLES = {"base": "base transformer", "superres": "super-resolution transformer"}


def _train_transformer(stage: str):
    def run(out, preset, data, device, progress, schedule=None):
        from .train import train_stage

        model, cache, monitor, validation = _SETUPS[stage](out, preset, data, device)
        config = dataclasses.replace(_train_config(preset, stage, progress), **(schedule or {}))
        result = train_stage(model, cache, config, stage_paths(out)[stage].parent,
                             monitor=monitor, validation=validation, resume=True)
        if progress:
            print(f"{_TITLES[stage]}: steps {result.start_step}-{result.step} in "
                  f"{result.seconds / 60:.1f} min", flush=True)
        return result.earlier_seconds
    return run


def _assemble(out, preset, data, device, progress):
    from .models.base import BaseTransformer
    from .models.superres import SuperResTransformer
    from .pipeline import Pipeline
    from .text.tokenizer import Tokenizer

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


_RUNNERS = {
    "tokenizer": _train_tokenizer,
    "text": _train_text,
    "vq-base": _train_vq("base"),
    "vq-superres": _train_vq("superres"),
    "tokens": _pre_encode,
    "decoders": _finetune_decoders,
    "base": _train_transformer("base"),
    "superres": _train_transformer("superres"),
    "pipeline": _assemble,
}  # a runner returns None, or (a transformer stage) the seconds its checkpoint had recorded


# --------------------------------------------------------------------------- #
# The orchestration.
# --------------------------------------------------------------------------- #


def _check_data(data: str) -> str:
    if data == "shapes":
        return data
    folder = Path(data)
    if not folder.is_dir():
        raise CascadeError(f"--data must be 'shapes' or a folder of image-caption pairs; "
                           f"{folder} is not a folder")
    return str(folder.resolve())


def _save_record(out: Path, record: dict) -> None:
    temporary = out / f".{RECORD}.tmp"
    temporary.write_text(json.dumps(record, indent=1))
    temporary.replace(out / RECORD)


@contextmanager
def _record_lock(out: Path, timeout: float = 60.0):
    """Hold ``out``'s record while it is read, changed and written back.

    Two commands may train two stages of one run side by side; when both finish at once,
    each must add its entry to the other's, not overwrite it. The lock is a file that only
    one process can create (``O_EXCL``, on every operating system); it is held for the
    milliseconds of one update.
    """
    lock = out / f".{RECORD}.lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if time.monotonic() > deadline:
                raise CascadeError(f"{lock} has been held for {timeout:.0f} s; if no other "
                                   f"`tinymuse train` is running on {out}, delete it and run "
                                   f"the command again (training resumes)") from None
            time.sleep(0.05)
    try:
        yield
    finally:
        os.close(handle)
        lock.unlink()


SCHEDULE_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "ema_decay")


def _check_schedule(stage: str, schedule: dict | None) -> dict:
    """The schedule changes for a transformer stage, checked; warm-up follows the steps."""
    if not schedule:
        return {}
    if stage not in MORE_STAGES:
        raise CascadeError(f"a training schedule (--steps, --batch-size, --lr, "
                           f"--warmup-steps, --ema) is for one transformer stage: use it "
                           f"with --stage base or --stage superres, not {stage!r} (other "
                           f"stages take theirs from the preset)")
    unknown = set(schedule) - set(SCHEDULE_KEYS)
    if unknown:
        raise CascadeError(f"unknown schedule keys {sorted(unknown)}; use {SCHEDULE_KEYS}")
    for key in ("steps", "batch_size", "warmup_steps"):
        value = schedule.get(key)
        least = 0 if key == "warmup_steps" else 1
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < least):
            raise CascadeError(f"{key} must be a whole number >= {least}, got {value!r}")
    schedule = dict(schedule)
    if "steps" in schedule and "warmup_steps" not in schedule:
        schedule["warmup_steps"] = min(200, schedule["steps"] // 10)
    return schedule


def train_cascade(out_dir, stage: str = "all", preset: str | CascadePreset = "default",
                  data: str = "shapes", resume: bool = False, device: str = "cpu",
                  progress: bool = True, log=print, schedule: dict | None = None) -> dict:
    """Train ``stage`` (one of :data:`STAGES`, or ``"all"`` for every stage in order) of a
    cascade in ``out_dir``; return the run record (also written to ``out_dir/cascade.json``).

    ``data`` is ``"shapes"`` (the shapes world) or the path of an image-caption folder.
    With ``resume``, finished stages are skipped and unfinished ones continue from their
    checkpoints (a missing pipeline folder is assembled again; a finished stage whose file is
    missing is an error, not a silent skip); without it, a folder that already holds a run is
    refused. ``schedule`` (with ``stage`` "base" or "superres") replaces the preset's values
    of :data:`SCHEDULE_KEYS` for that stage; resume it with the same schedule.
    """
    if stage != "all" and stage not in STAGES:
        raise CascadeError(f"unknown stage {stage!r}; choose 'all' or one of {', '.join(STAGES)}")
    schedule = _check_schedule(stage, schedule)
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise CascadeError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    data = _check_data(data)
    out = Path(out_dir)
    record = load_record(out)
    if record is None:
        if out.exists() and any(out.iterdir()) and not resume:
            raise CascadeError(f"{out} is not empty and holds no cascade run; choose a new --out")
        record = {"preset": dataclasses.asdict(preset), "data": data, "stages": {}}
    else:
        if record["preset"]["name"] != preset.name or record["data"] != data:
            raise CascadeError(f"{out} holds a run with preset {record['preset']['name']!r} on "
                               f"{record['data']!r}, not {preset.name!r} on {data!r}; choose "
                               f"another --out")
        if not resume and (stage == "all" or stage in record["stages"]):
            raise CascadeError(f"{out} already holds this run; pass --resume to continue it "
                               f"(finished stages are skipped) or choose another --out")
        preset = _recorded_preset(record, preset, out, log)
    out.mkdir(parents=True, exist_ok=True)
    if not (out / RECORD).exists():
        _save_record(out, record)
    todo = STAGES if stage == "all" else (stage,)
    for name in todo:
        if name in record["stages"] and resume:
            missing = [path for path in _outputs(out, name) if not path.exists()]
            if not missing:
                log(f"[{name}] already trained ({record['stages'][name]['seconds']:.0f} s); "
                    f"skipped")
                continue
            if name != "pipeline":
                raise CascadeError(
                    f"{out} records stage {name!r} as finished but {missing[0]} is missing; "
                    f"put it back, or delete {name!r} from {out / RECORD} to train the stage "
                    f"again (stages after it were trained on its output)")
            log(f"[pipeline] {missing[0]} is missing; assembling it again")
        log(f"[{name}] training ({preset.name} preset)")
        started = time.perf_counter()
        finished, earlier = False, None
        try:
            earlier = _RUNNERS[name](out, preset, data, device, progress,
                                     **({"schedule": schedule} if schedule else {}))
            finished = True
        finally:
            # An interrupted stage keeps its time, so a resumed run still reports the total.
            seconds = time.perf_counter() - started
            record = _update_record(out, name, seconds, finished, schedule, earlier)
        if finished:
            log(f"[{name}] done in {seconds:.0f} s")
    return record


def _recorded_preset(record: dict, preset: CascadePreset, out: Path, log) -> CascadePreset:
    """The preset a run was started with, as ``cascade.json`` recorded it. A run continues
    with its own values even if this version's preset of that name has changed since (its
    stages must fit together); the changed values are named."""
    recorded = CascadePreset(**record["preset"])
    now = json.loads(json.dumps(dataclasses.asdict(preset)))  # tuples as lists, as recorded
    then = json.loads(json.dumps(dataclasses.asdict(recorded)))
    changed = [key for key in now if now[key] != then[key]]
    if changed:
        log(f"note: {out} keeps the {preset.name!r} preset it was started with; this version's "
            f"differs in " + ", ".join(f"{key} ({then[key]!r} here, {now[key]!r} now)"
                                       for key in changed))
    return recorded


def train_more(out_dir, stage: str, steps: int, lr: float | None = None,
               warmup_steps: int | None = None, ema: float | None = None,
               device: str = "cpu", progress: bool = True, log=print,
               batch_size: int | None = None) -> dict:
    """Train the finished ``stage`` (``"base"`` or ``"superres"``) of the run in ``out_dir``
    for ``steps`` more steps, from its current weights, with a fresh warm-up + cosine
    schedule peaking at ``lr`` (default: the preset's). Returns the run record.

    A transformer stage is trained for a fixed number of steps because its learning rate
    follows a schedule to that step. When the samples show it stopped too early, this
    continues it: the weights are kept, the optimizer starts afresh. Each continuation
    trains in its own folder, ``<stage>/more-1``, ``more-2``, … (resumable like any stage:
    run the same command again), then replaces ``<stage>/model.safetensors`` and adds an
    entry to the stage's ``"more"`` list in ``cascade.json``. If the run had assembled its
    pipeline, it is assembled again with the new weights.
    """
    from .train import train_stage

    if stage not in MORE_STAGES:
        raise CascadeError(f"only a transformer stage can be trained for more steps "
                           f"(--stage base or --stage superres), not {stage!r}")
    _check_count(steps, "extra steps")
    out = Path(out_dir)
    record = load_record(out)
    if record is None or stage not in record["stages"]:
        raise CascadeError(f"{out} has no finished {stage!r} stage to continue; train it first "
                           f"(`tinymuse train --stage {stage} --out {out}`)")
    preset = CascadePreset(**record["preset"])  # for the schedule; the model has its own size
    data = record["data"]
    weights = stage_paths(out)[stage]
    rounds = record["stages"][stage].get("more", [])
    folder = weights.parent / f"more-{len(rounds) + 1}"
    config = dataclasses.replace(
        _train_config(preset, stage, progress), steps=steps,
        lr=preset.lr if lr is None else lr,
        warmup_steps=min(200, steps // 10) if warmup_steps is None else warmup_steps,
        ema_decay=preset.ema if ema is None else ema)
    if batch_size is not None:
        config = dataclasses.replace(config, batch_size=_check_schedule(
            stage, {"batch_size": batch_size})["batch_size"])
    log(f"[{stage}] {steps} more steps from its weights (lr {config.lr:g}) in {folder}")
    started = time.perf_counter()
    # the architecture is the saved model's: the preset may have changed since it was trained
    model, cache, monitor, validation = _SETUPS[stage](out, preset, data, device,
                                                       weights=weights)
    partial_key = f"{stage}/{folder.name}"
    try:
        result = train_stage(model, cache, config, folder, monitor=monitor,
                             validation=validation, resume=True)
    except BaseException:  # an interrupted round keeps its time for the command resuming it
        _update_record(out, partial_key, time.perf_counter() - started, finished=False)
        raise
    temporary = weights.with_name(f".{weights.name}.tmp")
    shutil.copyfile(folder / weights.name, temporary)
    temporary.replace(weights)  # atomic: the stage's weights are old or new, never half
    with _record_lock(out):
        record = load_record(out)
        seconds = _earlier(record, partial_key, result.earlier_seconds) + (
            time.perf_counter() - started)
        _add_round(record, stage, seconds, steps=steps, lr=config.lr,
                   warmup_steps=config.warmup_steps, ema=config.ema_decay,
                   batch_size=config.batch_size)
        _save_record(out, record)
    log(f"[{stage}] steps {result.start_step}-{result.step} of {steps} more in "
        f"{seconds / 60:.1f} min; weights in {weights}")
    if "pipeline" in record["stages"]:
        log("[pipeline] assembling again with the new weights")
        _assemble(out, preset, data, device, progress)
    return record


def more_images(out_dir, images: int, device: str = "cpu", progress: bool = True,
                log=print) -> dict:
    """Encode the token caches of the run in ``out_dir`` again, with ``images`` shapes-world
    scenes instead of the preset's count; return the run record.

    A transformer stage that has seen each cached scene many times learns the cache instead
    of the world: its loss on fresh scenes stops falling while its loss on cached ones still
    falls (``train_stage``'s validation lines show the gap). More scenes, not more steps,
    are the cure. Scene ``i`` of the shapes world is the same whatever the count, so the
    new caches begin with the old ones, and the tokenizers are the run's own, so the
    transformers' later ``--more-steps`` rounds simply see more of the same world. Both
    caches are re-encoded (the super-resolution stage trains on pairs of them); each file is
    replaced atomically, so an interrupted command leaves old and new caches that the
    super-resolution stage refuses to pair until the command is run again.
    """
    _check_count(images, "scenes to cache")
    out = Path(out_dir)
    record = load_record(out)
    if record is None or "tokens" not in record["stages"]:
        raise CascadeError(f"{out} has no finished 'tokens' stage to encode again; a new run "
                           f"caches the preset's count (`tinymuse train --stage tokens --out "
                           f"{out}` first)")
    if record["data"] != "shapes":
        raise CascadeError(f"{out} trains on the folder {record['data']!r}, whose cache already "
                           f"holds every picture; --images is for the shapes world")
    log(f"[tokens] encoding {images:,} scenes with the base and super-resolution tokenizers")
    started = time.perf_counter()
    _encode_caches(stage_paths(out), "shapes", images, device, progress)
    seconds = time.perf_counter() - started
    with _record_lock(out):
        record = load_record(out)
        _add_round(record, "tokens", seconds, images=images)
        _save_record(out, record)
    log(f"[tokens] {images:,} scenes cached in {seconds / 60:.1f} min; train on them with "
        f"--more-steps")
    return record


def _check_count(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CascadeError(f"the number of {what} must be a whole number >= 1, got {value!r}")


def _add_round(record: dict, stage: str, seconds: float, **details) -> None:
    """Add a round of ``seconds`` that continued the finished ``stage`` (its ``details``:
    steps and schedule, or scenes cached) to the run ``record``: the stage's ``"more"`` list,
    its time and the run's."""
    entry = record["stages"][stage]
    entry.setdefault("more", []).append(
        {**details, "seconds": round(seconds, 1),
         "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
    entry["seconds"] = round(entry["seconds"] + seconds, 1)
    _add_up(record)


def _add_up(record: dict) -> None:
    record["seconds"] = round(sum(s["seconds"] for s in record["stages"].values()), 1)


def _earlier(record: dict, name: str, earlier: float | None) -> float:
    """The seconds stage ``name`` spent before this command: the time its trainer's
    checkpoint recorded (``earlier``; it survives a killed process), else what an earlier
    interrupted command recorded in ``partial_seconds`` (an exception, such as Ctrl-C, gets
    that chance; a kill does not). Removes the partial entry either way."""
    partial = record.setdefault("partial_seconds", {}).pop(name, 0.0)
    return partial if earlier is None else earlier


def _update_record(out: Path, name: str, seconds: float, finished: bool,
                   schedule: dict | None = None, earlier: float | None = None) -> dict:
    """Add ``seconds`` of training to stage ``name`` in ``cascade.json`` (read afresh, so two
    stages trained at once by two commands both get recorded), with its ``schedule`` if it
    was not the preset's; ``earlier`` as in :func:`_earlier`."""
    with _record_lock(out):
        record = load_record(out)
        total = _earlier(record, name, earlier) + seconds
        partial = record["partial_seconds"]
        if finished:
            record["stages"][name] = {"seconds": round(total, 1),
                                      "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
            if schedule:
                record["stages"][name]["schedule"] = schedule
        else:
            partial[name] = round(total, 1)
        _add_up(record)
        _save_record(out, record)
    return record
