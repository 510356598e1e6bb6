"""Saving and loading checkpoints: safetensors weights plus a JSON config.

A checkpoint is ONE ``.safetensors`` file. The format is simple and safe: an
8-byte header length, a JSON header (each tensor's name, dtype, shape and byte
range, plus a ``__metadata__`` map of strings), then the raw bytes. Loading
parses JSON and copies bytes; unlike ``pickle`` it can never run code hidden
in a downloaded file. Our ``__metadata__`` holds, as JSON strings, the model's
``config`` (what it takes to build the model again) and free-form
``metadata``, and a SHA-256 digest of the tensors, so a file damaged on disk
or in transfer is refused instead of silently loading wrong weights.

Writes are atomic (:mod:`tinymuse.files`): a crash or a full disk mid-write
leaves the previous checkpoint as it was, never a half-written one.

Two levels of API:

- ``save(path, tensors, config, metadata)`` / ``load(path, model=..., config=...)``
  for weights (``tensors`` is usually ``model.state_dict()``);
- ``save_training_state`` / ``load_training_state`` for everything a run needs
  to resume exactly: weights, optimizer moments, schedule position, random
  generator states and the step.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import safetensors
from safetensors import numpy as safetensors_numpy

from . import backend, files
from .backend import Generator
from .tensor import Tensor

__all__ = ["CheckpointError", "Checkpoint", "TrainingState", "save", "load", "read_header",
           "config_differences", "save_training_state", "load_training_state"]

FORMAT = "tinymuse/1"


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used: unreadable, damaged, or not
    matching the model it is loaded into."""


@dataclasses.dataclass
class Checkpoint:
    """What :func:`load` read: NumPy arrays by name, the config and the metadata."""
    path: Path
    tensors: dict
    config: dict | None
    metadata: dict


@dataclasses.dataclass
class TrainingState:
    """What :func:`load_training_state` returns besides restoring the objects."""
    step: int | None
    extra: dict | None
    config: dict | None


# ------------------------------------------------------------------ helpers
def _to_json(value, what: str) -> str:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise TypeError(f"the checkpoint {what} must be JSON-serialisable (numbers, strings, "
                        f"lists, dicts, or a dataclass of those): {error}") from None


def _contiguous(array: np.ndarray) -> np.ndarray:
    # not np.ascontiguousarray: it turns a 0-d array (a step count) into shape (1,)
    return array if array.flags.c_contiguous else array.copy(order="C")


def _digest(arrays: dict) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    hasher = hashlib.sha256()
    for name in sorted(arrays):
        array = _contiguous(arrays[name])
        hasher.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        hasher.update(array.reshape(-1).view(np.uint8))
    return hasher.hexdigest()


def _atomic_save(path: Path, arrays: dict, header: dict) -> None:
    with files.atomic_path(path) as temporary:
        safetensors_numpy.save_file(arrays, str(temporary), metadata=header)


def config_differences(stored, expected, prefix: str = "") -> list[str]:
    """Each setting that differs, as ``name: file has A, expected B``; nested settings are
    named with dots (``train.lr``)."""
    if not isinstance(stored, dict) or not isinstance(expected, dict):
        return [] if stored == expected else [
            f"{prefix or 'config'}: file has {stored!r}, expected {expected!r}"]
    missing = "<missing>"
    differences = []
    for key in sorted(set(stored) | set(expected)):
        name = f"{prefix}{key}"
        if key in stored and key in expected and isinstance(stored[key], dict) \
                and isinstance(expected[key], dict):
            differences += config_differences(stored[key], expected[key], name + ".")
        elif key not in stored or key not in expected or stored[key] != expected[key]:
            differences.append(f"{name}: file has {stored.get(key, missing)!r}, "
                               f"expected {expected.get(key, missing)!r}")
    return differences


def _check_config(path: Path, stored, config) -> None:
    expected = json.loads(_to_json(config, "config"))  # tuples → lists, as stored
    if stored is None:
        raise CheckpointError(f"{path} has no config, but config {expected} was expected; "
                              f"load it without config=... if you know it fits")
    differences = config_differences(stored, expected)
    if differences:
        raise CheckpointError(f"{path} was saved with a different config:\n  "
                              + "\n  ".join(differences)
                              + "\nBuild the model from the checkpoint's config "
                                "(load(path).config) or load the right checkpoint.")


def _load_weights(path: Path, module, tensors: dict, strict: bool) -> None:
    try:
        module.load_state_dict(tensors, strict=strict)
    except ValueError as error:
        raise CheckpointError(f"{path} does not match the {type(module).__name__} it is "
                              f"loaded into: {error}") from None


# --------------------------------------------------------------- weights
def save(path, tensors: dict, config=None, metadata: dict | None = None) -> Path:
    """Write ``tensors`` (name → array or Tensor, on any device) with a JSON
    ``config`` (a dict or dataclass) and ``metadata`` to ``path`` atomically.
    Returns the path."""
    path = Path(path)
    arrays = {}
    for name, value in tensors.items():
        if not isinstance(name, str):
            raise TypeError(f"tensor names must be strings, got {name!r}")
        value = value.data if isinstance(value, Tensor) else value
        arrays[name] = _contiguous(backend.to_numpy(value))
    header = {"format": FORMAT,
              "config": _to_json(config, "config"),
              "metadata": _to_json(metadata or {}, "metadata"),
              "sha256": _digest(arrays)}
    _atomic_save(path, arrays, header)
    return path


def load(path, model=None, config=None, strict: bool = True) -> Checkpoint:
    """Read a checkpoint written by :func:`save`.

    With ``model``, copy the weights into it (``model.load_state_dict``,
    ``strict`` as there); with ``config``, first check that the file was saved
    with the same config. Any problem raises :class:`CheckpointError` (or
    ``FileNotFoundError``) naming the file, what is wrong and what to do.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}: check the path (checkpoints are "
                                f"written by tinymuse.checkpoint.save)")
    if path.is_dir():
        raise CheckpointError(f"{path} is a directory; give the path of a .safetensors file")
    try:
        with safetensors.safe_open(str(path), framework="numpy") as file:
            header = file.metadata() or {}
            tensors = {name: file.get_tensor(name) for name in file.keys()}
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(
            f"{path} is not a readable safetensors checkpoint ({error}). The file is corrupt, "
            f"truncated (an interrupted save, download or copy?) or not a .safetensors file. "
            f"Save or copy it again, or load an earlier checkpoint.") from None
    file_format = header.get("format")
    if file_format != FORMAT or "sha256" not in header:
        raise CheckpointError(f"{path} is not a tinymuse checkpoint (format {file_format!r}, "
                              f"this tinymuse reads {FORMAT!r}); save it with "
                              f"tinymuse.checkpoint.save, or use the tinymuse version that "
                              f"wrote it.")
    if _digest(tensors) != header["sha256"]:
        raise CheckpointError(f"{path} is corrupt: its tensors do not match the checksum stored "
                              f"when it was saved. Save or copy it again, or load an earlier "
                              f"checkpoint.")
    try:
        stored_config = json.loads(header.get("config", "null"))
        metadata = json.loads(header.get("metadata", "{}"))
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{path} has a damaged config/metadata header ({error}); "
                              f"save it again or load an earlier checkpoint.") from None
    if config is not None:
        _check_config(path, stored_config, config)
    if model is not None:
        _load_weights(path, model, tensors, strict)
    return Checkpoint(path, tensors, stored_config, metadata)


def read_header(path) -> tuple:
    """``(config, metadata)`` of a checkpoint, read from its header alone: no tensor is read
    or checked (:func:`load` does that)."""
    try:
        with safetensors.safe_open(str(path), framework="numpy") as file:
            header = file.metadata() or {}
        return json.loads(header.get("config", "null")), json.loads(header.get("metadata", "{}"))
    except (safetensors.SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path} is not a readable tinymuse checkpoint ({error}); "
                              f"save or copy it again") from None


# ---------------------------------------------------------- training state
def _as_generator_dict(generators) -> dict:
    if generators is None:
        return {}
    if isinstance(generators, Generator):
        return {"default": generators}
    return dict(generators)


def save_training_state(path, model, optimizer, scheduler=None, generators=None,
                        step: int | None = None, config=None, extra: dict | None = None) -> Path:
    """Save everything needed to continue training exactly where it stopped:
    the model's weights, the optimizer's settings and moments, the
    scheduler's position, the states of the random ``generators`` (one
    :class:`~tinymuse.backend.Generator` or a dict name → Generator, e.g. the
    ones for dropout and for data), the ``step`` and any JSON ``extra``."""
    tensors = {f"model.{name}": array for name, array in model.state_dict().items()}
    optimizer_state = optimizer.state_dict()
    tensors.update({f"optimizer.{key}": array for key, array in optimizer_state["state"].items()})
    metadata = {
        "kind": "training_state",
        "step": step,
        "optimizer": {"type": type(optimizer).__name__,
                      "param_groups": optimizer_state["param_groups"]},
        "scheduler": None if scheduler is None else scheduler.state_dict(),
        "generators": {name: gen.state_dict()
                       for name, gen in _as_generator_dict(generators).items()},
        "extra": extra,
    }
    return save(path, tensors, config, metadata)


def load_training_state(path, model, optimizer, scheduler=None, generators=None,
                        config=None) -> TrainingState:
    """Restore, in place, what :func:`save_training_state` saved into objects
    built the same way (same model config, same optimizer groups). Returns the
    step, the extra data and the config."""
    checkpoint = load(path, config=config)
    meta = checkpoint.metadata
    if meta.get("kind") != "training_state":
        raise CheckpointError(f"{path} holds model weights, not a training state; load it with "
                              f"tinymuse.checkpoint.load(path, model=...)")
    saved_optimizer = meta["optimizer"]
    if saved_optimizer["type"] != type(optimizer).__name__:
        raise CheckpointError(f"{path} holds the state of a {saved_optimizer['type']} optimizer, "
                              f"not of a {type(optimizer).__name__}")
    generators = _as_generator_dict(generators)
    saved_generators = meta["generators"]
    if set(generators) != set(saved_generators):
        raise CheckpointError(f"{path} holds the generators {sorted(saved_generators)}, "
                              f"but {sorted(generators)} were given to restore")
    if (scheduler is None) != (meta["scheduler"] is None):
        raise CheckpointError(f"{path} was saved {'with' if meta['scheduler'] else 'without'} a "
                              f"scheduler; pass the same to load_training_state")
    model_state, optimizer_arrays = {}, {}
    for name, array in checkpoint.tensors.items():
        kind, _, key = name.partition(".")
        if kind not in ("model", "optimizer"):
            raise CheckpointError(f"{path} has an unexpected tensor {name!r} in a training state")
        (model_state if kind == "model" else optimizer_arrays)[key] = array
    _load_weights(path, model, model_state, strict=True)
    try:
        optimizer.load_state_dict({"param_groups": saved_optimizer["param_groups"],
                                   "state": optimizer_arrays})
    except ValueError as error:
        raise CheckpointError(f"{path} does not match the optimizer: {error}") from None
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
    for name, generator in generators.items():
        generator.load_state_dict(saved_generators[name])
    return TrainingState(meta["step"], meta["extra"], checkpoint.config)
