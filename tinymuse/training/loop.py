"""The training loop: one for every stage of the cascade.

Every model tinymuse trains (the text encoder, the two VQ tokenizers, the base and the
super-resolution transformers) is trained by :func:`fit`. A stage brings three things:

- the ``model`` (an :class:`~tinymuse.nn.Module`);
- ``batch_at(step)``: the batch of optimizer step ``step``. It must depend on the step alone
  (draw it with :func:`batch_rows`), so that a resumed run reads exactly the batches an unbroken
  run would, with no data-loader state to save;
- ``loss_fn(batch, generator) -> (loss, metrics)``: the scalar loss Tensor and a dict of
  floats to log. ``generator`` is seeded with ``(seed, step)``; the loss draws its random
  masks and dropped captions from it.

and :func:`fit` does the rest, the same way for all of them. One step::

    loss, metrics = loss_fn(batch_at(step), step_generator(seed, step))
    optimizer.zero_grad();  loss.backward()
    clip_grad_norm(parameters, grad_clip)            # ‖g‖ ≤ grad_clip
    optimizer.step()                                  # AdamW (fused), decay on matrices only
    scheduler.step()                                  # linear warm-up, then cosine decay
    ema.update(model)                                 # if config.ema_decay

A run lives in one folder:

- ``checkpoint.safetensors``: everything needed to continue exactly (weights, EMA, AdamW's
  moments, the schedule, the random generators, the step and the training time so far),
  written atomically every ``checkpoint_every`` steps and at the end. Calling :func:`fit`
  again on the folder resumes from it; a config that differs from the checkpoint's is refused.
- ``log.jsonl``: every ``log_every`` steps the loss, the metrics, the learning rate and the
  gradient norm; and each evaluation (``"kind"``: its name). On resuming, lines from after the
  checkpoint are dropped, so the log reads as one unbroken run.
- whatever ``save_weights`` and the ``evaluations`` write (the weights for sampling, sample
  grids): both run under the weights that sampling uses (the EMA ones when EMA is on), in
  evaluation mode.

A loss or gradient that turns NaN or infinite stops the run with :class:`TrainingDiverged`
before the update, so the last checkpoint stays the last good state.
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from .. import backend, checkpoint, files, nn, optim

__all__ = ["TrainConfig", "TrainResult", "TrainingDiverged", "fit", "batch_rows",
           "step_generator", "CHECKPOINT", "LOG"]

CHECKPOINT = "checkpoint.safetensors"
LOG = "log.jsonl"
_INFINITE = 2 ** 31  # the row range of a dataset without a length (the shapes world)
_REPORTING = ("log_every", "checkpoint_every", "sample_every", "progress")


@dataclass(frozen=True)
class TrainConfig:
    """How one training run goes; the same fields for every stage. Each recipe in
    :mod:`tinymuse.training` holds its own defaults as a ``TrainConfig``."""

    steps: int = 1000
    batch_size: int = 32
    lr: float = 1e-3               # the peak learning rate, reached after the warm-up
    min_lr_ratio: float = 0.1      # the cosine decay ends at lr · min_lr_ratio
    warmup_steps: int = 100
    betas: tuple = (0.9, 0.999)    # AdamW's β₁ (gradient average) and β₂ (squared gradients)
    weight_decay: float = 0.01     # on the weight matrices only (optim.weight_decay_groups)
    grad_clip: float = 1.0         # the largest global gradient norm
    ema_decay: float | None = None  # e.g. 0.999: also keep an average of the weights
    seed: int = 0                  # batches, masks and caption dropout follow from it
    log_every: int = 10
    checkpoint_every: int = 250
    sample_every: int = 500        # evaluations (samples, validation) run this often
    progress: bool = True

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(self.betas))
        for name in ("steps", "batch_size", "log_every", "checkpoint_every", "sample_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int) \
                or not 0 <= self.warmup_steps:
            raise ValueError(f"warmup_steps must be a whole number >= 0, got "
                             f"{self.warmup_steps!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}")
        if self.ema_decay is not None and not 0 < self.ema_decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1) or be None, got {self.ema_decay!r}")

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        values = dataclasses.asdict(self)
        values["betas"] = list(self.betas)
        return values


class TrainingDiverged(FloatingPointError):
    """The loss or the gradient became NaN or infinite."""


@dataclass
class TrainResult:
    """What one call of :func:`fit` did."""

    start_step: int          # the step it resumed from (0 for a fresh run)
    step: int                # the step it stopped at
    history: list            # one dict per step run: step, loss, the metrics, lr, grad_norm
    seconds: float           # training time of this call
    total_seconds: float     # training time of the whole run, over every call
    out_dir: Path
    evaluations: dict = field(default_factory=dict)  # name -> one dict per evaluation


def batch_rows(seed: int, step: int, batch_size: int, size: int | None) -> np.ndarray:
    """The dataset rows of step ``step``: drawn uniformly from ``range(size)`` by a generator
    seeded with ``(seed, step)``, so they depend on the step alone."""
    rng = np.random.default_rng([seed, 0, step])
    return rng.integers(0, size or _INFINITE, batch_size)


def step_generator(seed: int, step: int) -> backend.Generator:
    """The generator for step ``step``'s random masks and caption dropout."""
    return backend.Generator([seed, 1, step])


def fit(model: nn.Module, loss_fn: Callable, batch_at: Callable, config: TrainConfig,
        out_dir, *, run_config: dict | None = None, trainable: nn.Module | None = None,
        generators: dict | None = None, save_weights: Callable | None = None,
        evaluations: dict | None = None, resume: bool = True, stop_at: int | None = None,
        title: str = "training") -> TrainResult:
    """Train ``model`` for ``config.steps`` steps in ``out_dir`` (see the module docstring).

    ``run_config`` (JSON) describes what must match for a checkpoint to be resumed (the model's
    config; ``config`` is added, without its reporting fields). ``trainable`` is the part of
    the model that learns (default: all of it; e.g. only a decoder). ``generators`` (name →
    Generator) are saved and restored besides the default one, which dropout draws from.
    ``save_weights(step)`` runs at every checkpoint; ``evaluations`` (name →
    ``function(step) -> dict``) every ``sample_every`` steps and at the last step. ``stop_at``
    ends this call early at that step; the schedule still runs to ``config.steps``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    trainable = model if trainable is None else trainable
    run = _Run(model, trainable, config, out_dir, run_config, generators or {})
    start = run.restore() if resume else 0
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    history, results = [], {name: [] for name in (evaluations or {})}
    bar = _progress_bar(config, start, end, title)
    started, step = time.perf_counter(), start
    run.set_training_mode()
    while step < end:
        loss, metrics = loss_fn(batch_at(step), step_generator(config.seed, step))
        entry = run.update(step, loss, metrics, bar)
        step += 1
        history.append(entry)
        if step % config.log_every == 0:
            _log(out_dir, entry)
        if bar is not None:
            bar.set_postfix(_recent(history), refresh=False)
            bar.update()
        if step % config.checkpoint_every == 0 or step == end:
            run.save(step, time.perf_counter() - started, save_weights)
        if step % config.sample_every == 0 or step == config.steps:
            for name, evaluate in (evaluations or {}).items():
                results[name].append(run.evaluate(name, evaluate, step, bar))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - started
    return TrainResult(start, step, history, seconds, run.earlier_seconds + seconds, out_dir,
                       results)


class _Run:
    """The parts of a run that :func:`fit` keeps between steps: the optimizer, the schedule,
    the EMA, and how they are saved and restored."""

    def __init__(self, model, trainable, config, out_dir, run_config, generators):
        self.model, self.trainable, self.config, self.out_dir = model, trainable, config, out_dir
        self.optimizer = optim.AdamW(optim.weight_decay_groups(trainable, config.weight_decay),
                                     lr=config.lr, betas=config.betas, fused=True)
        self.scheduler = optim.WarmupCosine(self.optimizer, min(config.warmup_steps,
                                                                config.steps),
                                            config.steps, config.min_lr_ratio)
        self.ema = optim.EMA(trainable, config.ema_decay) if config.ema_decay else None
        self.state = nn.ModuleDict({"model": model, "ema": self.ema}) if self.ema else model
        self.parameters = [p for p in trainable.parameters() if p.requires_grad]
        self.generators = {"default": backend.default_generator, **generators}
        reported = {k: v for k, v in config.to_dict().items() if k not in _REPORTING}
        self.record = {**(run_config or {}), "train": reported}
        self.earlier_seconds = 0.0

    def restore(self) -> int:
        """Continue from the folder's checkpoint, if there is one; the step to start at."""
        path = self.out_dir / CHECKPOINT
        if not path.exists():
            return 0
        wanted = json.loads(json.dumps(self.record))  # tuples as lists, as stored
        differences = checkpoint.config_differences(checkpoint.read_header(path)[0], wanted)
        if differences:
            raise checkpoint.CheckpointError(
                f"{self.out_dir} holds a run started with other settings ("
                + "; ".join(d.replace("expected", "asked for") for d in differences)
                + "): continue it with the settings it was started with, or train in a new "
                  "folder")
        state = checkpoint.load_training_state(path, self.state, self.optimizer,
                                               self.scheduler, self.generators)
        self.earlier_seconds = state.extra["seconds"]
        _truncate_log(self.out_dir / LOG, state.step)
        return state.step

    def update(self, step: int, loss, metrics: dict, bar) -> dict:
        """Backpropagate ``loss`` and take one optimizer step; the step's log entry."""
        value = loss.item()
        if not math.isfinite(value):
            self.diverged(step, f"the loss is {value}", bar)
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = optim.clip_grad_norm(self.parameters, self.config.grad_clip,
                                         error_if_nonfinite=False)
        if not math.isfinite(grad_norm):
            self.diverged(step, f"the gradient norm is {grad_norm}", bar)
        lr = self.optimizer.param_groups[0]["lr"]
        self.optimizer.step()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.trainable)
        return {"step": step + 1, "loss": value, **metrics, "lr": lr, "grad_norm": grad_norm}

    def diverged(self, step: int, what: str, bar) -> None:
        if bar is not None:
            bar.close()
        path = self.out_dir / CHECKPOINT
        kept = (f"the last good checkpoint, {path}, is kept" if path.exists()
                else "no checkpoint had been written yet")
        raise TrainingDiverged(f"training stopped at step {step}: {what}. Nothing was saved "
                               f"after the last good step; {kept}. Lower the learning rate, "
                               f"raise the warm-up, or clip gradients harder, then resume.")

    def set_training_mode(self) -> None:
        self.model.eval()         # what does not learn stays in evaluation mode
        self.trainable.train()

    @contextlib.contextmanager
    def sampling_weights(self):
        """The weights sampling uses (the EMA ones, if any), in evaluation mode."""
        try:
            with nn.evaluation_mode(self.model):
                if self.ema is None:
                    yield
                else:
                    with self.ema.swapped_into(self.trainable):
                        yield
        finally:
            self.set_training_mode()

    def save(self, step: int, seconds: float, save_weights) -> None:
        checkpoint.save_training_state(
            self.out_dir / CHECKPOINT, self.state, self.optimizer, self.scheduler,
            self.generators, step=step, config=self.record,
            extra={"seconds": self.earlier_seconds + seconds})
        if save_weights is not None:
            with self.sampling_weights():
                save_weights(step)

    def evaluate(self, name: str, evaluate: Callable, step: int, bar) -> dict:
        with self.sampling_weights():
            metrics = {"step": step, **evaluate(step)}
        _log(self.out_dir, {"kind": name, **metrics})
        if bar is not None:
            shown = ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                              if k != "step" and isinstance(v, float))
            bar.write(f"step {step}: {name}: {shown}")
        return metrics


def _recent(history: list, window: int = 20) -> dict:
    """The progress bar's numbers: the mean of each float over the last ``window`` steps."""
    recent = history[-window:]
    keys = [k for k, v in recent[-1].items() if isinstance(v, float) and k != "grad_norm"]
    return {k: (f"{recent[-1][k]:.1e}" if k == "lr" else f"{np.mean([e[k] for e in recent]):.3f}")
            for k in keys}


def _log(out_dir: Path, entry: dict) -> None:
    with open(out_dir / LOG, "a", encoding="utf-8") as file:
        file.write(json.dumps(entry) + "\n")


def _truncate_log(path: Path, step: int) -> None:
    """Drop the log lines of steps after ``step``: the resumed run redoes those steps."""
    if not path.exists():
        return
    kept = [line for line in path.read_text(encoding="utf-8").splitlines()
            if line and json.loads(line)["step"] <= step]
    files.write_text(path, "".join(line + "\n" for line in kept))


def _progress_bar(config: TrainConfig, start: int, end: int, title: str):
    if not config.progress:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=end, initial=start, desc=title, dynamic_ncols=True)
