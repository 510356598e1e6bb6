"""Training a masked-token stage (the base transformer now, super-resolution later).

One step of :func:`train_stage`:

    batch  = model.make_batch(token_cache, indices)     image tokens + tokenized captions
    step   = model.training_loss(batch, generator)      mask, fill with [MASK], predict, CE
    step.loss.backward();  clip_grad_norm;  AdamW;  warm-up + cosine schedule;  EMA update

The loop knows nothing about what a batch holds: a model brings its own ``make_batch`` and
``training_loss`` (returning :class:`tinymuse.models.base.MaskedStep`), so the
super-resolution stage, whose batches also carry low-resolution tokens, reuses this loop as
it is (or passes ``batch_fn=``).

A run lives in one folder ``out_dir``:

- ``checkpoint.safetensors``: the full training state (weights, EMA weights, AdamW moments,
  schedule, the dropout generator, the step), written atomically every
  ``checkpoint_every`` steps and at the end. Calling :func:`train_stage` again on the same
  folder resumes from it and continues exactly as if it had never stopped: step ``t``'s batch
  and masks are drawn from generators seeded with ``(seed, t)``, so there is no data-loader
  state to restore.
- ``model.safetensors``: the weights for sampling (the EMA weights when EMA is on).
- ``samples/step_<t>.png`` and ``log.jsonl``: every ``sample_every`` steps a ``monitor``
  (e.g. :class:`SampleMonitor`) draws images for fixed prompts, saves a grid and scores it
  with the shapes oracle. A loss that falls while the samples stay blank or one flat colour
  is the classic failure of these models; the monitor reports the share of flat images so it
  shows up in the log long before a run is over.
- with a ``validation`` cache (examples training never draws), at the same steps the loss on
  it and on as many rows of the training cache, same masks, under the sampling weights
  (``log.jsonl`` entries of kind ``"validation"``). The training loss alone cannot tell
  learning the data from memorising the cache; the gap between the two can.

A loss that turns NaN or infinite stops the run with :class:`TrainingDiverged`; nothing is
written after the last good step, so the last checkpoint stays as it was.

Command line, for the base stage (chapter 6 lists the commands that come before it)::

    python -m tinymuse.train --vq runs/vq-base/tokenizer.safetensors --text runs/text \\
        --tokens runs/base-tokens.safetensors --out runs/base --preset baby --steps 3000
    python -m tinymuse.train --vq runs/vq-base/tokenizer.safetensors --out runs/base --score
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from . import backend, checkpoint, nn, optim
from .tensor import Tensor, no_grad

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "EMA", "SampleMonitor",
           "train_stage", "held_out_loss", "step_generator", "step_indices",
           "evaluation_prompts", "base_sampler", "score_base_model", "main"]

CHECKPOINT = "checkpoint.safetensors"
MODEL = "model.safetensors"
LOG = "log.jsonl"


@dataclass
class TrainConfig:
    """How to train a masked-token stage. Defaults suit the base stage on a CPU."""

    steps: int = 4000
    batch_size: int = 64
    lr: float = 1e-3
    betas: tuple = (0.9, 0.96)     # Muse's β₂ = 0.96: quicker to forget stale squared gradients
    weight_decay: float = 0.045    # Muse's value; biases, norms and embeddings get none
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1      # the cosine ends at lr · min_lr_ratio
    grad_clip: float = 1.0
    ema_decay: float | None = None  # e.g. 0.999; None: no EMA
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 250
    sample_every: int = 500
    progress: bool = True

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["betas"] = list(values["betas"])
        return values


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class TrainResult:
    """What :func:`train_stage` did in this call."""

    start_step: int               # the step it resumed from (0 for a fresh run)
    step: int                     # the step it stopped at
    history: list                 # one dict per step run: step, loss, accuracy, lr, grad_norm
    samples: list                 # one dict of monitor metrics per sampling, with its step
    seconds: float
    out_dir: Path
    # seconds the earlier calls of this run spent training, as its checkpoint recorded them
    # (0.0 for a fresh run; None for a checkpoint written before tinymuse recorded them)
    earlier_seconds: float | None = 0.0
    # one dict per validation: step, loss (validation cache), training_rows_loss
    validations: list = dataclasses.field(default_factory=list)


def step_indices(seed: int, step: int, batch_size: int, size: int) -> np.ndarray:
    """The cache rows of step ``step``: a function of ``(seed, step)`` only."""
    return np.random.default_rng([seed, 0, step]).integers(0, size, batch_size)


def step_generator(seed: int, step: int) -> backend.Generator:
    """The generator for step ``step``'s caption dropout and masks: seeded with
    ``(seed, step)``, so a resumed run draws exactly what an unbroken run would."""
    return backend.Generator([seed, 1, step])


class EMA(nn.Module):
    """An exponential moving average of a model's trainable weights (Polyak averaging):

        θ_ema ← d · θ_ema + (1 − d) · θ     after every optimizer step.

    The average is smoother than the latest weights and often samples better. It is kept
    as buffers (one per trainable parameter) so it is saved with the training state;
    :meth:`swapped_into` lends it to the model for sampling.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.names = [name for name, p in model.named_parameters() if p.requires_grad]
        for name, param in model.named_parameters():
            if param.requires_grad:
                self.register_buffer(self._key(name), Tensor(param.data.copy()))

    @staticmethod
    def _key(name: str) -> str:
        return name.replace(".", "__")

    def _pairs(self, model):
        params = dict(model.named_parameters())
        return [(getattr(self, self._key(name)), params[name]) for name in self.names]

    def update(self, model: nn.Module) -> None:
        for average, param in self._pairs(model):
            # θ_ema += (1 − d)(θ − θ_ema): one temporary, in place otherwise
            difference = param.data - average.data
            difference *= 1.0 - self.decay
            average.data += difference

    def swapped_into(self, model: nn.Module):
        """``with ema.swapped_into(model): ...`` runs with the averaged weights in ``model``
        and puts the trained weights back afterwards (only array references move)."""
        ema = self

        class _Swap:
            def __enter__(self):
                self.saved = [(param, param.data) for _, param in ema._pairs(model)]
                for average, param in ema._pairs(model):
                    param.data = average.data
                return model

            def __exit__(self, *exc):
                for param, data in self.saved:
                    param.data = data
                return False

        return _Swap()


class SampleMonitor:
    """Draw images for fixed prompts, save them as a grid and score them with the oracle.

    ``generate_images(model, prompts) -> images`` (float (B, 3, H, W) in [-1, 1] or uint8)
    is the stage's sampler; for the base stage,
    ``lambda m, p: vq.decode(m.generate(p, steps=8).tokens)``. Called with a model and a
    step, it returns the oracle's accuracy per attribute (``"oracle/<attribute>"``) and
    ``"flat_images"``, the share of samples that are one flat colour (the blank-sample
    failure), and writes ``samples/step_<step>.png`` under ``out_dir``.
    """

    def __init__(self, prompts, generate_images: Callable, out_dir=None, score: bool = True,
                 seed: int = 1234):
        self.prompts = list(prompts)
        self.generate_images = generate_images
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.score = score
        self.seed = seed

    def __call__(self, model, step: int, out_dir=None) -> dict:
        from .data.grid import save_image_grid
        from .data.images import to_uint8_images

        backend_state = backend.default_generator.state_dict()
        backend.manual_seed(self.seed)  # the same noise at every sampling, for comparison
        try:
            images = self.generate_images(model, self.prompts)
        finally:
            backend.default_generator.load_state_dict(backend_state)
        images = to_uint8_images(images.numpy() if isinstance(images, Tensor) else images)
        folder = Path(out_dir) if out_dir is not None else self.out_dir
        if folder is not None:
            save_image_grid(images, folder / "samples" / f"step_{step:06d}.png", scale=2)
        spread = images.reshape(len(images), -1, 3).astype(np.float32).std(axis=1).max(axis=1)
        metrics = {"flat_images": float(np.mean(spread < 8.0))}
        if self.score:
            from .evaluate import score_prompts
            metrics.update({f"oracle/{k}": v
                            for k, v in score_prompts(self.prompts, images).items()})
        return metrics


def held_out_loss(model, token_cache, batch_fn: Callable, batch_size: int, rows: int,
                  seed: int = 0) -> float:
    """The mean masked-token loss of ``model`` on the first ``rows`` examples of
    ``token_cache``, in batches of ``batch_size``; batch ``i`` draws its caption dropout and
    mask from ``Generator([seed, 2, i])``, so two caches (or two calls) get the same draws.
    Nothing is learned and no other generator is touched."""
    losses, weights = [], []
    with no_grad():
        for number, start in enumerate(range(0, rows, batch_size)):
            indices = np.arange(start, min(start + batch_size, rows))
            step = model.training_loss(batch_fn(token_cache, indices),
                                       backend.Generator([seed, 2, number]))
            losses.append(step.loss.item())
            weights.append(len(indices))
    return float(np.average(losses, weights=weights))


def _config_record(model, config: TrainConfig) -> dict:
    model_config = getattr(model, "config", None)
    if dataclasses.is_dataclass(model_config):
        model_config = dataclasses.asdict(model_config)
    record = config.to_dict()
    for key in ("progress", "log_every", "checkpoint_every", "sample_every"):
        record.pop(key)  # how a run reports itself does not change what it computes
    return {"model": model_config, "train": record}


def train_stage(model, token_cache, config: TrainConfig | None = None, out_dir=None, *,
                batch_fn: Callable | None = None, monitor: Callable | None = None,
                validation=None, resume: bool = True,
                stop_at: int | None = None) -> TrainResult:
    """Train ``model`` on ``token_cache`` for ``config.steps`` steps, in ``out_dir``
    (``runs/stage`` if not given).

    ``model`` needs ``training_loss(batch, generator) -> MaskedStep`` and, unless
    ``batch_fn(token_cache, indices) -> batch`` is given, ``make_batch(token_cache,
    indices)``. ``token_cache`` is anything with ``len()`` that those understand (for the base
    stage an image-token cache from :func:`tinymuse.vq.tokens.load_image_tokens`).
    ``monitor(model, step, out_dir) -> dict`` runs every ``sample_every`` steps and at the
    end, under EMA weights when EMA is on. ``validation``, a cache like ``token_cache`` of
    examples it never trains on, is scored at the same steps (:func:`held_out_loss`, also
    on as many training rows; :attr:`TrainResult.validations`). With ``resume`` (the
    default) a checkpoint in ``out_dir`` is picked up and training continues from its step;
    ``stop_at`` ends this call early at that step (the schedule still runs to
    ``config.steps``). The checkpoint also keeps the training time so far
    (:attr:`TrainResult.earlier_seconds` on resuming).
    """
    config = config or TrainConfig()
    out_dir = Path(out_dir if out_dir is not None else "runs/stage")
    out_dir.mkdir(parents=True, exist_ok=True)
    batch_fn = batch_fn or model.make_batch
    size = len(token_cache)
    if size == 0:
        raise ValueError("the token cache is empty: pre-encode a dataset first "
                         "(tinymuse.vq.tokens.pre_encode)")
    if validation is not None and len(validation) == 0:
        raise ValueError("the validation cache is empty: pass None for no validation")
    validation_rows = None if validation is None else min(len(validation), size)
    end = config.steps if stop_at is None else min(stop_at, config.steps)

    model.train()
    optimizer = optim.AdamW(optim.weight_decay_groups(model, config.weight_decay), lr=config.lr,
                            betas=tuple(config.betas))
    scheduler = optim.WarmupCosine(optimizer, min(config.warmup_steps, config.steps),
                                   config.steps, config.min_lr_ratio)
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    state_module = nn.ModuleDict({"model": model, "ema": ema}) if ema else model
    trainable = [p for p in model.parameters() if p.requires_grad]
    record = _config_record(model, config)
    generators = {"default": backend.default_generator}  # dropout draws from it
    checkpoint_path = out_dir / CHECKPOINT

    step, earlier_seconds = 0, 0.0
    if resume and checkpoint_path.exists():
        state = checkpoint.load_training_state(checkpoint_path, state_module, optimizer,
                                               scheduler, generators, config=record)
        step, earlier_seconds = state.step, (state.extra or {}).get("seconds")

    def save(at_step: int) -> None:
        # The checkpoint carries the training time so far, so a run killed outright (no
        # chance to record anything) still reports its whole time once resumed and finished.
        seconds = (earlier_seconds or 0.0) + time.perf_counter() - started
        checkpoint.save_training_state(checkpoint_path, state_module, optimizer, scheduler,
                                       generators, step=at_step, config=record,
                                       extra={"seconds": seconds})
        _save_weights(model, ema, out_dir / MODEL, at_step)

    def with_sampling_weights(measure):
        model.eval()
        try:
            if ema is not None:
                with ema.swapped_into(model):
                    return measure()
            return measure()
        finally:
            model.train()

    def validate(at_step: int) -> dict:
        losses = with_sampling_weights(lambda: [
            held_out_loss(model, cache, batch_fn, config.batch_size, validation_rows,
                          config.seed)
            for cache in (validation, token_cache)])
        metrics = {"step": at_step, "loss": losses[0], "training_rows_loss": losses[1]}
        _log(out_dir, {"kind": "validation", **metrics})
        return metrics

    def sample(at_step: int) -> dict:
        metrics = with_sampling_weights(lambda: monitor(model, at_step, out_dir))
        metrics = {"step": at_step, **metrics}
        _log(out_dir, {"kind": "samples", **metrics})
        if metrics.get("flat_images", 0.0) >= 0.5:
            print(f"warning: at step {at_step}, {metrics['flat_images']:.0%} of the samples are "
                  f"one flat colour although the loss may be falling; see "
                  f"{out_dir / 'samples'} (if it persists: check the mask, the loss "
                  f"positions, the learning rate)")
        return metrics

    start, started = step, time.perf_counter()
    history, samples, validations = [], [], []
    bar = _progress_bar(config, start, end)
    recent_loss, recent_accuracy = [], []
    while step < end:
        indices = step_indices(config.seed, step, config.batch_size, size)
        result = model.training_loss(batch_fn(token_cache, indices),
                                     step_generator(config.seed, step))
        loss = result.loss.item()
        if not math.isfinite(loss):
            _diverged(bar, step, f"the loss is {loss}", checkpoint_path)
        optimizer.zero_grad()
        result.loss.backward()
        grad_norm = optim.clip_grad_norm(trainable, config.grad_clip, error_if_nonfinite=False)
        if not math.isfinite(grad_norm):
            _diverged(bar, step, f"the gradient norm is {grad_norm}", checkpoint_path)
        lr = optimizer.param_groups[0]["lr"]
        optimizer.step()
        scheduler.step()
        if ema is not None:
            ema.update(model)
        step += 1
        entry = {"step": step, "loss": loss, "accuracy": result.accuracy, "lr": lr,
                 "grad_norm": grad_norm}
        history.append(entry)
        recent_loss = (recent_loss + [loss])[-20:]
        recent_accuracy = (recent_accuracy + [result.accuracy])[-20:]
        if step % config.log_every == 0:
            _log(out_dir, entry)
        if bar is not None:
            bar.set_postfix(loss=f"{np.mean(recent_loss):.3f}",
                            acc=f"{np.mean(recent_accuracy):.3f}", lr=f"{lr:.1e}", refresh=False)
            bar.update()
        if step % config.checkpoint_every == 0 or step == end:
            save(step)
        due = step % config.sample_every == 0 or step == config.steps
        if validation is not None and due:
            validations.append(validate(step))
            if bar is not None:
                held = validations[-1]
                bar.write(f"step {step}: loss on {validation_rows} validation "
                          f"examples {held['loss']:.3f}, on as many training ones "
                          f"{held['training_rows_loss']:.3f}")
        if monitor is not None and due:
            samples.append(sample(step))
            if bar is not None:
                oracle = {k.split("/")[1]: f"{v:.2f}" for k, v in samples[-1].items()
                          if k.startswith("oracle/")}
                bar.write(f"step {step}: loss {np.mean(recent_loss):.3f}, masked-token "
                          f"accuracy {np.mean(recent_accuracy):.3f}, flat samples "
                          f"{samples[-1].get('flat_images', 0):.0%}, oracle {oracle}")
    if bar is not None:
        bar.close()
    return TrainResult(start, step, history, samples, time.perf_counter() - started, out_dir,
                       earlier_seconds, validations)


def _save_weights(model, ema, path: Path, step: int) -> None:
    save = getattr(model, "save", None)
    if save is None:
        return
    if ema is not None:
        with ema.swapped_into(model):
            save(path, metadata={"step": step, "ema": True})
    else:
        save(path, metadata={"step": step, "ema": False})


def _diverged(bar, step: int, what: str, checkpoint_path: Path):
    if bar is not None:
        bar.close()
    kept = (f"the last good checkpoint, {checkpoint_path}, is kept" if checkpoint_path.exists()
            else "no checkpoint had been written yet")
    raise TrainingDiverged(f"training stopped at step {step}: {what}. Nothing was saved after "
                           f"the last good step; {kept}. Lower the learning rate, raise the "
                           f"warm-up, or clip gradients harder, then resume.")


def _log(out_dir: Path, entry: dict) -> None:
    with open(out_dir / LOG, "a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")


def _progress_bar(config: TrainConfig, start: int, end: int):
    if not config.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=end, initial=start, desc="training", dynamic_ncols=True)


# --------------------------------------------------------------------------- #
# The base stage, end to end: ``python -m tinymuse.train``.
# --------------------------------------------------------------------------- #

PROMPT_KINDS = ("single", "count", "relation", "glyph")


def evaluation_prompts(per_kind: int, split: str = "train", seed: int = 7) -> dict:
    """Prompts for scoring, ``per_kind`` of each kind in :data:`PROMPT_KINDS`: one object
    ("single"), two to four alike objects ("count"), two related objects ("relation"), a
    glyph ("glyph").

    They are the captions of a shapes-world stream (``seed``) that training never reads, taken
    in order, never chosen by looking at samples. ``split="heldout"`` gives only captions with
    a held-out colour-shape pair or relation phrasing (the compositional test); glyphs have
    neither, so that split has no "glyph" prompts.
    """
    from .data.shapes import ShapesDataset, sample_text

    dataset = ShapesDataset(resolution=32, seed=seed, split=split)
    kinds = [k for k in PROMPT_KINDS if not (k == "glyph" and dataset.split == "heldout")]
    prompts = {kind: [] for kind in kinds}
    index = 0
    while any(len(p) < per_kind for p in prompts.values()):
        spec, caption = sample_text(dataset.rng(index), dataset.split)  # = example(index), undrawn
        index += 1
        kind = {"glyph": "glyph", "relation": "relation"}.get(
            spec.kind, "single" if spec.count == 1 else "count")
        if len(prompts[kind]) < per_kind:
            prompts[kind].append(caption)
    return prompts


def base_sampler(vq, steps: int = 8, guidance_scale: float = 0.0, batch_size: int = 64,
                 choice_temperature: float | None = None, guidance_schedule: str | None = None,
                 temperature: float | None = None):
    """``generate_images(model, prompts)`` for the base stage: decode token grids drawn by
    ``model.generate`` with the VQ decoder, in batches; float images in [-1, 1]. The sampling
    and choice temperatures and the guidance schedule default to the pipeline's for this stage
    (``tinymuse.pipeline.TEMPERATURES``, ``CHOICE_TEMPERATURES``, ``GUIDANCE_SCHEDULE``), so
    training samples and scores show what ``tinymuse generate`` would draw."""
    from .pipeline import CHOICE_TEMPERATURES, GUIDANCE_SCHEDULE, TEMPERATURES

    if choice_temperature is None:
        choice_temperature = CHOICE_TEMPERATURES[0]
    if guidance_schedule is None:
        guidance_schedule = GUIDANCE_SCHEDULE[0]
    if temperature is None:
        temperature = TEMPERATURES[0]

    def generate_images(model, prompts):
        images = []
        for start in range(0, len(prompts), batch_size):
            tokens = model.generate(prompts[start:start + batch_size], steps=steps,
                                    guidance_scale=guidance_scale, temperature=temperature,
                                    choice_temperature=choice_temperature,
                                    guidance_schedule=guidance_schedule).tokens
            with no_grad():
                images.append(vq.decode(tokens).numpy())
        return np.concatenate(images)

    return generate_images


def score_base_model(model, vq, prompts, steps: int, guidance_scale: float,
                     seed: int = 0) -> dict:
    """The oracle's accuracy per attribute for ``prompts``, sampling with ``steps`` decoding
    steps and ``guidance_scale`` (seeded by ``seed``)."""
    monitor = SampleMonitor(prompts, base_sampler(vq, steps, guidance_scale), seed=seed)
    return monitor(model, 0)


def _build_base_model(args, tokenizer, encoder, vq):
    """The model ``main`` trains: the ``--preset`` size, or with ``--init`` and no
    ``--preset`` the size the ``--init`` model was saved with."""
    from .models.base import BaseTransformer, BaseTransformerConfig

    if args.init and args.preset is None:
        saved = BaseTransformerConfig.from_dict(checkpoint.load(args.init).config)
        config = dataclasses.replace(saved, train_text_encoder=args.train_text_encoder)
    else:
        config = BaseTransformerConfig.preset(
            args.preset or "default", codebook_size=vq.config.codebook_size,
            grid_size=vq.config.token_size, text=encoder.config,
            train_text_encoder=args.train_text_encoder)
    backend.manual_seed(args.seed)
    return BaseTransformer(config, text_encoder=encoder, tokenizer=tokenizer,
                           generator=backend.Generator(args.seed))


def main(argv: list[str] | None = None) -> int:
    import argparse
    import shutil
    import sys

    from .models.base import BaseTransformer
    from .pipeline import GUIDANCE
    from .text.encoder import TextEncoder
    from .text.tokenizer import Tokenizer
    from .vq import VQTokenizer
    from .vq.tokens import load_image_tokens

    parser = argparse.ArgumentParser(
        prog="python -m tinymuse.train",
        description="Train the base transformer on a pre-encoded shapes-world token cache, or "
                    "score a trained one with the oracle (--score).")
    parser.add_argument("--out", required=True, help="the run folder")
    parser.add_argument("--vq", required=True, help="the base VQ tokenizer (.safetensors)")
    parser.add_argument("--text", help="folder with tokenizer.model and "
                        "text_encoder.safetensors (python -m tinymuse.text.pretrain); with "
                        "--score, where to find tokenizer.model if OUT has none")
    parser.add_argument("--tokens", help="image-token cache (python -m tinymuse.vq.tokens)")
    parser.add_argument("--validation", help="a cache of examples kept out of training (e.g. "
                        "python -m tinymuse.vq.tokens ... --seed 1 --count 256): its loss, "
                        "beside the loss on as many training examples, at every sampling")
    parser.add_argument("--preset", help="model size: baby, default, large (default: "
                        "'default', or with --init the size of the --init model)")
    parser.add_argument("--train-text-encoder", action="store_true",
                        help="fine-tune the text encoder jointly instead of freezing it")
    defaults = TrainConfig()
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--lr", type=float, default=defaults.lr)
    parser.add_argument("--warmup-steps", type=int, default=defaults.warmup_steps)
    parser.add_argument("--ema", type=float, default=None, help="EMA decay, e.g. 0.999")
    parser.add_argument("--sample-every", type=int, default=defaults.sample_every)
    parser.add_argument("--checkpoint-every", type=int, default=defaults.checkpoint_every)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--init", help="start from the weights of a saved base model (e.g. an "
                        "earlier run's model.safetensors) instead of a fresh initialisation")
    parser.add_argument("--score", action="store_true", help="score OUT/model.safetensors: "
                        "oracle accuracy per attribute and prompt kind, seen and held-out, at "
                        "8 and 16 steps, with and without guidance; writes OUT/scores.json")
    parser.add_argument("--prompts", type=int, default=50, help="prompts per kind for --score")
    parser.add_argument("--guidance", type=float, default=GUIDANCE[0],
                        help=f"guidance scale for --score (default {GUIDANCE[0]:g}, the "
                             f"pipeline's)")
    args = parser.parse_args(argv)

    out = Path(args.out)
    vq = VQTokenizer.load(args.vq).eval()
    if args.score:
        if not (out / MODEL).is_file():
            parser.error(f"--score scores {out / MODEL}, and there is none")
        # prompts are read with the SentencePiece model trained beside the text encoder
        folders = [out] + ([Path(args.text)] if args.text else [])
        found = [folder / "tokenizer.model" for folder in folders
                 if (folder / "tokenizer.model").is_file()]
        if not found:
            parser.error(f"--score reads prompts with a tokenizer.model, and {out} has none; "
                         f"name the folder that holds it with --text (in a `tinymuse train` "
                         f"run folder: RUN/tokenizer)")
        model = BaseTransformer.load(out / MODEL, tokenizer=Tokenizer.load(found[0]))
        scores = {}
        for split in ("train", "heldout"):
            prompts = evaluation_prompts(args.prompts, split)
            for steps in (8, 16):
                for guidance in (0.0, args.guidance):
                    for kind, kind_prompts in prompts.items():
                        key = f"{split}/{kind}/steps={steps}/guidance={guidance:g}"
                        started = time.perf_counter()
                        scores[key] = score_base_model(model, vq, kind_prompts, steps, guidance)
                        print(f"{key}: " + ", ".join(f"{k.split('/')[-1]} {v:.2f}"
                                                     for k, v in scores[key].items()),
                              f"({time.perf_counter() - started:.0f} s)", flush=True)
        (out / "scores.json").write_text(json.dumps(scores, indent=1))
        return 0

    if not args.text or not args.tokens:
        parser.error("training needs --text and --tokens")
    text = Path(args.text)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(text / "tokenizer.model", out / "tokenizer.model")  # MODEL loads with it
    tokenizer = Tokenizer.load(text / "tokenizer.model")
    encoder = TextEncoder.load(text / "text_encoder.safetensors")
    cache = load_image_tokens(args.tokens)
    validation = load_image_tokens(args.validation) if args.validation else None
    model = _build_base_model(args, tokenizer, encoder, vq)
    if args.init and not (out / CHECKPOINT).exists():  # a resumed run has its own weights
        checkpoint.load(args.init, model=model, config=model.config.to_dict())
    config = TrainConfig(steps=args.steps, batch_size=args.batch_size, lr=args.lr,
                         warmup_steps=args.warmup_steps, ema_decay=args.ema, seed=args.seed,
                         sample_every=args.sample_every, checkpoint_every=args.checkpoint_every)
    fixed = evaluation_prompts(4, "train", seed=3)
    monitor = SampleMonitor([p for kind in fixed for p in fixed[kind]], base_sampler(vq))
    print(f"base transformer: {model.num_parameters(trainable_only=True):,} trainable "
          f"parameters ({model.num_parameters():,} with the frozen text encoder); "
          f"{len(cache):,} token grids", flush=True)
    result = train_stage(model, cache, config, out, monitor=monitor, validation=validation)
    print(f"trained steps {result.start_step}-{result.step} in {result.seconds / 60:.1f} min; "
          f"weights in {out / MODEL}")
    return 0


if __name__ == "__main__":
    import sys
    sys.exit(main())
