"""Running the cascade's stages in one folder: in order, resumably, recorded.

:func:`train_cascade` runs the stages of :mod:`tinymuse.cascade.stages` in order (``tinymuse
train --stage all``) or one at a time.

Resuming. ``cascade.json`` in the folder records the preset, the data and each finished stage
with its training time. Run the same command again with ``resume=True`` and finished stages
are skipped, while an interrupted stage that trains continues exactly from its last checkpoint
(:func:`tinymuse.training.fit` resumes by itself, and keeps the training time in its
checkpoint). Without ``resume`` a folder that already holds a run is refused, so nothing is
overwritten by accident.

Training further. A transformer stage's learning rate follows a schedule to its last step, so
"more of the same" is not a resume: :func:`train_more` (``tinymuse train --stage base
--more-steps N``) starts a new schedule from the stage's weights, in ``<stage>/more-1``,
``more-2``, …, then puts the new weights in place, records the round in ``cascade.json`` and
assembles the pipeline again. When the rounds have seen each cached scene too often, a
finished run's caches can be encoded again with more scenes first: :func:`more_images`
(``tinymuse train --stage tokens --images N``).

A transformer stage's schedule can differ from the preset's: ``schedule={"steps": …,
"batch_size": …, "lr": …, "warmup_steps": …, "ema_decay": …}`` (``tinymuse train --stage base
--steps N --batch-size B``), e.g. a larger batch on a GPU. The stage's entry in
``cascade.json`` records it.
"""
from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from .. import files
from ..training import transformer as transformer_training
from .presets import PRESETS, CascadePreset
from .stages import (OPTIONAL_STAGES, RUNNERS, STAGES, TRANSFORMER_STAGES, CascadeError,
                     assemble, encode_caches, outputs, stage_paths, transformer_setup,
                     transformer_training_config)

__all__ = ["train_cascade", "train_more", "more_images", "load_record", "RECORD",
           "SCHEDULE_KEYS"]

RECORD = "cascade.json"
SCHEDULE_KEYS = ("steps", "batch_size", "lr", "warmup_steps", "ema_decay")


def load_record(out_dir) -> dict | None:
    """The ``cascade.json`` of a run folder, or None if there is none."""
    path = Path(out_dir) / RECORD
    return json.loads(path.read_text()) if path.is_file() else None


def _save_record(out: Path, record: dict) -> None:
    files.write_text(out / RECORD, json.dumps(record, indent=1))


@contextmanager
def _record_lock(out: Path, timeout: float = 60.0):
    """Hold ``out``'s record while it is read, changed and written back.

    Two commands may train two stages of one run side by side; when both finish at once,
    each must add its entry to the other's, not overwrite it. The lock is a file that only
    one process can create (``O_EXCL``, on every operating system); it is held for the
    milliseconds of one update. It names its holder (process id and machine), so that a
    command killed while it held the lock (``kill -9``, which runs no clean-up) does not keep
    every later command of the run waiting: the next one sees that the holder is gone and
    takes the lock over (:func:`_break_abandoned`).
    """
    lock = out / f".{RECORD}.lock"
    deadline = time.monotonic() + timeout
    while True:
        try:
            handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            if _abandoned(lock) and _break_abandoned(lock):
                continue
            if time.monotonic() > deadline:
                raise CascadeError(f"{lock} has been held for {timeout:.0f} s; if no other "
                                   f"`tinymuse train` is running on {out}, delete it and run "
                                   f"the command again (training resumes)") from None
            time.sleep(0.05)
    try:
        os.write(handle, _holder().encode())
        yield
    finally:
        os.close(handle)
        lock.unlink()


def _holder() -> str:
    return f"{os.getpid()}@{socket.gethostname()}"


def _abandoned(lock: Path) -> bool:
    """Whether ``lock`` was left by a process of this machine that no longer runs. A holder
    that cannot be checked counts as alive and is waited for: one on another machine sharing
    the folder, one that has not written its name yet, or any on Windows (whose ``os.kill``
    would end the process instead of asking about it)."""
    try:
        pid, _, machine = lock.read_text().partition("@")
        pid = int(pid)
    except (OSError, ValueError):
        return False
    if os.name != "posix" or machine != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)  # signal 0 is never delivered: it only asks whether ``pid`` exists
    except ProcessLookupError:
        return True
    except PermissionError:  # it exists, but belongs to another user
        pass
    return False


def _break_abandoned(lock: Path) -> bool:
    """Delete the abandoned ``lock``; whether this call did. Only one waiting command at a
    time may (it holds ``lock.break``, made with ``O_EXCL``), and it checks again while it
    does: another one may have broken the lock just before and a live command taken it since,
    and that lock must stay. A command killed while breaking leaves ``lock.break``; then the
    lock is waited for until the timeout, as before."""
    breaker = lock.with_name(lock.name + ".break")
    try:
        os.close(os.open(breaker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:  # another command is breaking it
        return False
    try:
        if not _abandoned(lock):
            return False
        lock.unlink(missing_ok=True)
        return True
    finally:
        breaker.unlink()


def _record_stage(out: Path, name: str, seconds: float, schedule: dict | None = None) -> dict:
    """Record the finished stage ``name`` and its training time in ``cascade.json`` (read
    afresh under the lock, so two stages finished at once by two commands both get in)."""
    with _record_lock(out):
        record = load_record(out)
        record["stages"][name] = {"seconds": round(seconds, 1),
                                  "finished": time.strftime("%Y-%m-%d %H:%M:%S")}
        if schedule:
            record["stages"][name]["schedule"] = schedule
        _add_up(record)
        _save_record(out, record)
    return record


def _add_round(out: Path, stage: str, seconds: float, **details) -> dict:
    """Record a round that continued the finished ``stage`` (its ``details``: steps and
    schedule, or scenes cached): the stage's ``"more"`` list, its time and the run's."""
    with _record_lock(out):
        record = load_record(out)
        entry = record["stages"][stage]
        entry.setdefault("more", []).append(
            {**details, "seconds": round(seconds, 1),
             "finished": time.strftime("%Y-%m-%d %H:%M:%S")})
        entry["seconds"] = round(entry["seconds"] + seconds, 1)
        _add_up(record)
        _save_record(out, record)
    return record


def _add_up(record: dict) -> None:
    record["seconds"] = round(sum(s["seconds"] for s in record["stages"].values()), 1)


def _check_count(value, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CascadeError(f"the number of {what} must be a whole number >= 1, got {value!r}")


def _check_schedule(stage: str, schedule: dict | None) -> dict:
    """The schedule changes for a transformer stage, checked; warm-up follows the steps."""
    if not schedule:
        return {}
    if stage not in TRANSFORMER_STAGES:
        raise CascadeError(f"a training schedule (--steps, --batch-size, --lr, "
                           f"--warmup-steps, --ema) is for one transformer stage: use it "
                           f"with --stage base, superres or ar-base, not {stage!r} (other "
                           f"stages take theirs from the preset)")
    unknown = set(schedule) - set(SCHEDULE_KEYS)
    if unknown:
        raise CascadeError(f"unknown schedule keys {sorted(unknown)}; use {SCHEDULE_KEYS}")
    schedule = dict(schedule)
    if "steps" in schedule and "warmup_steps" not in schedule:
        schedule["warmup_steps"] = min(200, schedule["steps"] // 10)
    try:  # the training config checks every value
        transformer_training.TRAINING.replace(**schedule)
    except ValueError as error:
        raise CascadeError(str(error)) from None
    return schedule


def _check_data(data: str) -> str:
    if data == "shapes":
        return data
    folder = Path(data)
    if not folder.is_dir():
        raise CascadeError(f"--data must be 'shapes' or a folder of image-caption pairs; "
                           f"{folder} is not a folder")
    return str(folder.resolve())


def _start_record(out: Path, preset: CascadePreset, data: str, stage: str, resume: bool,
                  log) -> tuple[dict, CascadePreset]:
    """The run's record (a new one for an empty folder) and the preset to train with."""
    record = load_record(out)
    if record is None:
        if out.exists() and any(out.iterdir()) and not resume:
            raise CascadeError(f"{out} is not empty and holds no cascade run; choose a new --out")
        record = {"preset": dataclasses.asdict(preset), "data": data, "stages": {}}
        out.mkdir(parents=True, exist_ok=True)
        _save_record(out, record)
        return record, preset
    if record["preset"]["name"] != preset.name or record["data"] != data:
        raise CascadeError(f"{out} holds a run with preset {record['preset']['name']!r} on "
                           f"{record['data']!r}, not {preset.name!r} on {data!r}; choose "
                           f"another --out")
    if not resume and (stage == "all" or stage in record["stages"]):
        raise CascadeError(f"{out} already holds this run; pass --resume to continue it "
                           f"(finished stages are skipped) or choose another --out")
    return record, _recorded_preset(record, preset, out, log)


def preset_differences(record: dict, preset: CascadePreset) -> dict:
    """The fields in which ``preset`` differs from the preset a run's ``record`` was started
    with: {field: (value recorded, value of ``preset``)}, compared as ``cascade.json`` stores
    them (tuples as lists)."""
    then = json.loads(json.dumps(dataclasses.asdict(CascadePreset(**record["preset"]))))
    now = json.loads(json.dumps(dataclasses.asdict(preset)))
    return {key: (then[key], now[key]) for key in now if now[key] != then[key]}


def _recorded_preset(record: dict, preset: CascadePreset, out: Path, log) -> CascadePreset:
    """The preset a run was started with, as ``cascade.json`` recorded it. A run continues
    with its own values even if the preset asked for now differs (its stages must fit
    together); the differing values are named."""
    differing = preset_differences(record, preset)
    if differing:
        log(f"note: {out} keeps the {preset.name!r} preset it was started with, which "
            f"differs in " + ", ".join(f"{key} ({then!r} here, {now!r} asked for)"
                                       for key, (then, now) in differing.items()))
    return CascadePreset(**record["preset"])


def _finished(out: Path, record: dict, name: str, preset: CascadePreset, log) -> bool:
    """Whether stage ``name`` can be skipped: recorded as finished, with its files."""
    if name not in record["stages"]:
        return False
    missing = [path for path in outputs(out, name, preset) if not path.exists()]
    if not missing:
        log(f"[{name}] already trained ({record['stages'][name]['seconds']:.0f} s); skipped")
        return True
    if name != "pipeline":
        raise CascadeError(
            f"{out} records stage {name!r} as finished but {missing[0]} is missing; "
            f"put it back, or delete {name!r} from {out / RECORD} to train the stage "
            f"again (stages after it were trained on its output)")
    log(f"[pipeline] {missing[0]} is missing; assembling it again")
    return False


def train_cascade(out_dir, stage: str = "all", preset: str | CascadePreset = "default",
                  data: str = "shapes", resume: bool = False, device: str = "cpu",
                  progress: bool = True, log=print, schedule: dict | None = None) -> dict:
    """Train ``stage`` (one of :data:`~tinymuse.cascade.stages.STAGES` or
    :data:`~tinymuse.cascade.stages.OPTIONAL_STAGES`, or ``"all"`` for every stage of
    ``STAGES`` in order) of a cascade in ``out_dir``; return the run record (also written to
    ``out_dir/cascade.json``).

    ``preset`` is a name in :data:`~tinymuse.cascade.presets.PRESETS` or a
    :class:`CascadePreset`; ``data`` is ``"shapes"`` (the shapes world) or the path of an
    image-caption folder. With ``resume``, finished stages are skipped and unfinished ones
    continue from their checkpoints (a missing pipeline folder is assembled again; a finished
    stage whose file is missing is an error, not a silent skip); without it, a folder that
    already holds a run is refused. ``schedule`` (with ``stage`` "base" or "superres")
    replaces the preset's values of :data:`SCHEDULE_KEYS` for that stage.
    """
    if stage != "all" and stage not in STAGES + OPTIONAL_STAGES:
        raise CascadeError(f"unknown stage {stage!r}; choose 'all' or one of "
                           f"{', '.join(STAGES + OPTIONAL_STAGES)}")
    schedule = _check_schedule(stage, schedule)
    if isinstance(preset, str):
        if preset not in PRESETS:
            raise CascadeError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
        preset = PRESETS[preset]
    data = _check_data(data)
    out = Path(out_dir)
    record, preset = _start_record(out, preset, data, stage, resume, log)
    for name in STAGES if stage == "all" else (stage,):
        if resume and _finished(out, record, name, preset, log):
            continue
        log(f"[{name}] training ({preset.name} preset)")
        started = time.perf_counter()
        trained = RUNNERS[name](out, preset, data, device, progress,
                                **({"schedule": schedule} if schedule else {}))
        seconds = time.perf_counter() - started if trained is None else trained
        record = _record_stage(out, name, seconds, schedule)
        log(f"[{name}] done in {seconds:.0f} s")
    return record


def train_more(out_dir, stage: str, steps: int, lr: float | None = None,
               warmup_steps: int | None = None, ema: float | None = None,
               device: str = "cpu", progress: bool = True, log=print,
               batch_size: int | None = None) -> dict:
    """Train the finished ``stage`` (``"base"`` or ``"superres"``) of the run in ``out_dir``
    for ``steps`` more steps, from its current weights, with a fresh warm-up + cosine
    schedule peaking at ``lr`` (default: the preset's). Returns the run record.

    Each continuation trains in its own folder, ``<stage>/more-1``, ``more-2``, … (resumable
    like any stage: run the same command again), then replaces ``<stage>/model.safetensors``
    atomically and adds an entry to the stage's ``"more"`` list in ``cascade.json``. If the
    run had assembled its pipeline, it is assembled again with the new weights.
    """
    if stage not in TRANSFORMER_STAGES:
        raise CascadeError(f"only a transformer stage can be trained for more steps "
                           f"(--stage base, superres or ar-base), not {stage!r}")
    _check_count(steps, "extra steps")
    out = Path(out_dir)
    record = load_record(out)
    if record is None or stage not in record["stages"]:
        raise CascadeError(f"{out} has no finished {stage!r} stage to continue; train it first "
                           f"(`tinymuse train --stage {stage} --out {out}`)")
    preset = CascadePreset(**record["preset"])  # for the schedule; the model has its own size
    weights = stage_paths(out)[stage]
    folder = weights.parent / f"more-{len(record['stages'][stage].get('more', [])) + 1}"
    changes = {"steps": steps, "lr": preset.lr if lr is None else lr,
               "warmup_steps": min(200, steps // 10) if warmup_steps is None else warmup_steps,
               "ema_decay": preset.ema if ema is None else ema}
    if batch_size is not None:
        changes["batch_size"] = batch_size
    config = transformer_training_config(preset, stage, progress).replace(
        **_check_schedule(stage, changes))
    log(f"[{stage}] {steps} more steps from its weights (lr {config.lr:g}) in {folder}")
    # the architecture is the saved model's: the preset may have changed since it was trained
    model, cache, monitor, validation = transformer_setup(out, preset, record["data"], device,
                                                          stage, weights=weights)
    result = transformer_training.train_transformer(model, cache, config, folder,
                                                    monitor=monitor, validation=validation)
    files.copy_file(folder / weights.name, weights)  # the stage's weights: old or new, never half
    record = _add_round(out, stage, result.total_seconds, steps=steps, lr=config.lr,
                        warmup_steps=config.warmup_steps, ema=config.ema_decay,
                        batch_size=config.batch_size)
    log(f"[{stage}] steps {result.start_step}-{result.step} of {steps} more in "
        f"{result.total_seconds / 60:.1f} min; weights in {weights}")
    if "pipeline" in record["stages"] and stage in ("base", "superres"):
        log("[pipeline] assembling again with the new weights")
        assemble(out, preset, record["data"], device, progress)
    return record


def more_images(out_dir, images: int, device: str = "cpu", progress: bool = True,
                log=print) -> dict:
    """Encode the token caches of the run in ``out_dir`` again, with ``images`` shapes-world
    scenes instead of the preset's count; return the run record.

    A transformer stage that has seen each cached scene many times learns the cache instead
    of the world: its loss on fresh scenes stops falling while its loss on cached ones still
    falls (the validation lines show the gap). More scenes, not more steps, are the cure.
    Scene ``i`` of the shapes world is the same whatever the count, so the new caches begin
    with the old ones, and the tokenizers are the run's own, so the transformers' later
    ``--more-steps`` rounds simply see more of the same world. Both caches are re-encoded
    (the super-resolution stage trains on pairs of them); each file is replaced atomically,
    so an interrupted command leaves old and new caches that the super-resolution stage
    refuses to pair until the command is run again.
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
    world = record["preset"].get("world", "full")  # records from before worlds: the full one
    encode_caches(stage_paths(out), "shapes", images, device, progress, world=world)
    seconds = time.perf_counter() - started
    record = _add_round(out, "tokens", seconds, images=images)
    log(f"[tokens] {images:,} scenes cached in {seconds / 60:.1f} min; train on them with "
        f"--more-steps")
    return record
