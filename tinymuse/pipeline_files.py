"""A trained cascade in one folder: saving and loading a pipeline's six parts.

The folder::

    pipeline.json                 what the folder holds: file names, every part's config,
                                  the storage dtype
    tokenizer.model               the SentencePiece model (+ tokenizer.words.json, its words)
    text_encoder.safetensors      the frozen text encoder, stored once for both stages
    base_vq.safetensors           base VQ tokenizer (32×32 ⇄ 8×8)
    base.safetensors              base transformer (without the text encoder)
    superres_vq.safetensors       super-resolution VQ tokenizer (64×64 ⇄ 16×16)
    superres.safetensors          super-resolution transformer (without the text encoder)

Each ``.safetensors`` file is a :mod:`tinymuse.checkpoint` (checksummed, never pickle) and
also carries its own config; :func:`load_parts` checks it against ``pipeline.json``, so a
folder whose files were mixed up is refused with a message that names the file. Weights may
be stored in float16 (half the size, for bundling); loading always gives float32.
:meth:`tinymuse.Pipeline.save` and :meth:`tinymuse.Pipeline.load` call these.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from . import backend, checkpoint, files
from .models import (AutoregressiveConfig, AutoregressiveTransformer, BaseTransformer,
                     BaseTransformerConfig, SuperResTransformer, SuperResTransformerConfig)
from .text import TextEncoder, TextEncoderConfig, Tokenizer
from .vq import VQConfig, VQTokenizer

__all__ = ["save_parts", "load_parts", "find_pipeline", "save_baseline", "load_baseline",
           "BUNDLED", "BUNDLED_BASELINE", "RUN_PIPELINE", "FORMAT", "CONFIG_FILE", "FILES",
           "DTYPES"]

BUNDLED = Path(__file__).resolve().parent / "assets"  # the weights that ship with tinymuse

FORMAT = "tinymuse-pipeline/1"
CONFIG_FILE = "pipeline.json"
TOKENIZER_FILE = "tokenizer.model"
FILES = {"text_encoder": "text_encoder.safetensors", "base_vq": "base_vq.safetensors",
         "base": "base.safetensors", "superres_vq": "superres_vq.safetensors",
         "superres": "superres.safetensors"}
DTYPES = ("float32", "float16")
# The autoregressive baseline of chapter 7, trained on the bundled cascade's base tokens with
# its text encoder; not a part of the pipeline (it draws the same 8×8 grids another way).
BUNDLED_BASELINE = BUNDLED / "autoregressive.safetensors"
_BASELINE_KIND = "baseline/autoregressive"
RUN_PIPELINE = "pipeline"  # the folder inside a training run where its last stage saves one
TRAIN_COMMAND = "tinymuse train --stage all --out runs/cascade"


def find_pipeline(path=None) -> Path:
    """The pipeline folder meant by ``path``: the bundled weights for ``None`` (found beside
    the installed package, from any working directory), a folder written by
    :func:`save_parts`, or a training run folder, whose pipeline is in ``pipeline/``."""
    if path is None:
        if not (BUNDLED / CONFIG_FILE).is_file():
            raise FileNotFoundError(f"no bundled weights in {BUNDLED}: this copy of tinymuse "
                                    f"ships without them. Train a pipeline with "
                                    f"`{TRAIN_COMMAND}` and use runs/cascade")
        return BUNDLED
    folder = Path(path)
    if (folder / RUN_PIPELINE / CONFIG_FILE).is_file():
        return folder / RUN_PIPELINE
    if not folder.exists():
        raise FileNotFoundError(f"no pipeline at {folder}: give a folder saved by "
                                f"Pipeline.save or a training run folder (`{TRAIN_COMMAND}`)")
    if folder.is_dir() and not (folder / CONFIG_FILE).exists() \
            and not any(folder.glob("*.safetensors")):
        raise FileNotFoundError(f"{folder} holds no pipeline (yet): give a folder saved by "
                                f"Pipeline.save, or a training run folder; if it is a run that "
                                f"has not finished, finish it with `tinymuse train --out "
                                f"{folder} --resume`")
    return folder


def save_parts(path, tokenizer, base_vq, base, superres_vq, superres,
               dtype: str = "float32") -> Path:
    """Write the six parts into the folder ``path`` (created if needed; files of an earlier
    save there are replaced, each atomically, ``pipeline.json`` last). Returns the path."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; a pipeline is saved as a directory")
    path.mkdir(parents=True, exist_ok=True)
    tokenizer.save(path / TOKENIZER_FILE)
    encoder = base.text_encoder
    shared = superres.text_encoder is encoder
    parts = {"text_encoder": (encoder, dataclasses.asdict(encoder.config)),
             "base_vq": (base_vq, base_vq.config.to_dict()),
             "base": (base, base.config.to_dict()),
             "superres_vq": (superres_vq, superres_vq.config.to_dict()),
             "superres": (superres, superres.config.to_dict())}
    components = {}
    for name, (module, config) in parts.items():
        state = _stored_state(module, dtype, drop_text_encoder=(
            name == "base" or (name == "superres" and shared)))
        checkpoint.save(path / FILES[name], state, config,
                        {"kind": f"pipeline/{name}", "dtype": dtype})
        components[name] = {"file": FILES[name], "config": json.loads(json.dumps(config))}
    manifest = {"format": FORMAT, "dtype": dtype, "tokenizer": TOKENIZER_FILE,
                "shared_text_encoder": shared, "components": components}
    files.write_text(path / CONFIG_FILE, json.dumps(manifest, indent=1, sort_keys=True))
    return path


def load_parts(path) -> dict:
    """The six parts saved by :func:`save_parts` in the folder ``path``, in float32 on the
    CPU, as a dict (``tokenizer``, ``base_vq``, ``base``, ``superres_vq``, ``superres``). A
    missing, damaged or mixed-up folder is refused with an error that names the file and what
    to do. Loading leaves the default random generator as it was."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"no pipeline directory at {path}: give the directory "
                                f"written by Pipeline.save (it holds {CONFIG_FILE})")
    manifest = _read_manifest(path)
    components = manifest["components"]
    tokenizer_path = path / manifest["tokenizer"]
    if not tokenizer_path.is_file():
        raise checkpoint.CheckpointError(_missing(path, tokenizer_path.name))
    tokenizer = Tokenizer.load(tokenizer_path)

    def stored(name):
        file = path / components[name]["file"]
        if not file.is_file():
            raise checkpoint.CheckpointError(_missing(path, file.name))
        saved = checkpoint.load(file, config=components[name]["config"])
        if saved.metadata.get("kind") != f"pipeline/{name}":
            raise checkpoint.CheckpointError(
                f"{file} holds {saved.metadata.get('kind')!r}, not the pipeline's {name}; "
                f"the directory's files are mixed up: save the pipeline again")
        return saved

    def config(name, kind):
        return kind.from_dict(components[name]["config"])

    with backend.default_generator_kept():
        encoder = TextEncoder(config("text_encoder", TextEncoderConfig))
        _load_into(encoder, stored("text_encoder"))
        base_vq = VQTokenizer(config("base_vq", VQConfig))
        _load_into(base_vq, stored("base_vq"))
        superres_vq = VQTokenizer(config("superres_vq", VQConfig))
        _load_into(superres_vq, stored("superres_vq"))
        base = BaseTransformer(config("base", BaseTransformerConfig), text_encoder=encoder,
                               tokenizer=tokenizer)
        _load_into(base, stored("base"), without_text_encoder=True)
        shared = manifest["shared_text_encoder"]
        superres = SuperResTransformer(config("superres", SuperResTransformerConfig),
                                       text_encoder=encoder if shared else None,
                                       tokenizer=tokenizer)
        _load_into(superres, stored("superres"), without_text_encoder=shared)
    return dict(tokenizer=tokenizer, base_vq=base_vq, base=base, superres_vq=superres_vq,
                superres=superres)


def save_baseline(path, model: AutoregressiveTransformer, dtype: str = "float16") -> Path:
    """Write an autoregressive baseline without its text encoder (it must be the pipeline's
    it is loaded with), in ``dtype``; returns the path."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    return checkpoint.save(path, _stored_state(model, dtype, drop_text_encoder=True),
                           model.config.to_dict(), {"kind": _BASELINE_KIND, "dtype": dtype})


def load_baseline(pipeline, path=None) -> AutoregressiveTransformer:
    """The autoregressive baseline saved by :func:`save_baseline` at ``path`` (the bundled
    one for None), reading prompts with ``pipeline``'s tokenizer and frozen text encoder, on
    the pipeline's device."""
    path = BUNDLED_BASELINE if path is None else Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no autoregressive baseline at {path}: train one with "
                                f"`tinymuse train --stage ar-base --out RUN` and save it with "
                                f"tinymuse.pipeline_files.save_baseline")
    saved = checkpoint.load(path)
    if saved.metadata.get("kind") != _BASELINE_KIND:
        raise checkpoint.CheckpointError(f"{path} holds {saved.metadata.get('kind')!r}, not an "
                                         f"autoregressive baseline")
    config = AutoregressiveConfig.from_dict(saved.config)
    if config.text != pipeline.text_encoder.config:
        raise checkpoint.CheckpointError(f"{path} was trained with another text encoder than "
                                         f"this pipeline's; load it with the pipeline it was "
                                         f"trained beside")
    with backend.default_generator_kept():
        model = AutoregressiveTransformer(config, text_encoder=pipeline.text_encoder,
                                          tokenizer=pipeline.tokenizer)
    _load_into(model, saved, without_text_encoder=True)
    return model.to(pipeline.device)


def _stored_state(module, dtype: str, drop_text_encoder: bool) -> dict:
    """The arrays to save: parameters in ``dtype``, buffers (e.g. the VQ's running counts,
    which can exceed float16's range) as they are; the shared text encoder left out."""
    parameters = {name for name, _ in module.named_parameters()}
    state = {}
    for name, array in module.state_dict().items():
        if drop_text_encoder and name.startswith("text_encoder."):
            continue
        array = backend.to_numpy(array)
        if dtype == "float16" and name in parameters and array.dtype.kind == "f":
            array = array.astype(np.float16)
        state[name] = array
    return state


def _load_into(module, saved, without_text_encoder: bool = False) -> None:
    """Copy a stored state into ``module`` (float16 arrays become float32 on the way)."""
    state = dict(saved.tensors)
    if without_text_encoder:
        state.update({f"text_encoder.{k}": v for k, v in module.text_encoder.state_dict().items()})
    try:
        module.load_state_dict(state)
    except ValueError as error:
        raise checkpoint.CheckpointError(f"{saved.path} does not fit the model described in "
                                         f"{CONFIG_FILE}: {error}. Save the pipeline again."
                                         ) from None


def _missing(path: Path, name: str) -> str:
    return (f"the pipeline directory {path} has no {name}: it is incomplete (an interrupted "
            f"copy or download?). Copy the whole directory again, or save it again with "
            f"Pipeline.save")


def _read_manifest(path: Path) -> dict:
    file = path / CONFIG_FILE
    if not file.is_file():
        raise checkpoint.CheckpointError(_missing(path, CONFIG_FILE) + " (a pipeline "
                                         "directory always holds pipeline.json)")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise checkpoint.CheckpointError(f"{file} is not valid JSON ({error}); the directory "
                                         f"is damaged: copy it again or save the pipeline "
                                         f"again") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else None
        raise checkpoint.CheckpointError(f"{file} has format {found!r}, this tinymuse reads "
                                         f"{FORMAT!r}: it is not a pipeline saved by "
                                         f"Pipeline.save, or one from another version")
    components = manifest.get("components")
    missing = [name for name in FILES if not isinstance(components, dict)
               or name not in components]
    missing += [key for key in ("tokenizer", "shared_text_encoder") if key not in manifest]
    if missing:
        raise checkpoint.CheckpointError(f"{file} lists no {', '.join(missing)}; the "
                                         f"directory is damaged: save the pipeline again")
    return manifest
