"""Flags → library objects: the pipeline, each stage's sampling settings, the prompts.

A sampling flag left out means the stage's default (:data:`tinymuse.sampling.BASE` and its
siblings), the same the library uses. A setting out of range is reported under its flag.
"""
from __future__ import annotations

import sys
from pathlib import Path

from .. import sampling
from ..pipeline_files import find_pipeline
from .parser import SAMPLING_FLAGS

_FLAG_OF = {setting: flag for flag, setting in SAMPLING_FLAGS.items()}


class CommandError(Exception):
    """A problem with the command line itself, reported like the library's errors."""


def note(text: str) -> None:
    """A line the user should read but that stops nothing (to stderr, like errors)."""
    print(f"tinymuse: note: {text}", file=sys.stderr)


def pipeline_dir(path: str | None) -> Path:
    """The pipeline directory a command uses: ``--pipeline`` (a pipeline directory or a
    training run holding ``pipeline/``) or the bundled one."""
    try:
        return find_pipeline(path)
    except FileNotFoundError as error:
        raise CommandError(str(error)) from None


def load_pipeline(args):
    from ..pipeline import Pipeline

    return Pipeline.load(pipeline_dir(args.pipeline), device=args.device)


def flag_name(setting: str, prefix: str = "") -> str:
    """The command-line flag of a Sampling setting: ``steps`` → ``--steps`` (``--sr-steps``
    with ``prefix="sr_"``)."""
    return "--" + (prefix + _FLAG_OF[setting]).replace("_", "-")


def stage_settings(args, default: sampling.Sampling, prefix: str = "",
                   shared: dict | None = None) -> sampling.Sampling:
    """The stage's settings: ``default`` with the flags the user gave (``--steps``, or
    ``--sr-steps`` with ``prefix="sr_"``), then ``shared`` flag values for flags this stage
    was not given. A setting out of range is reported under its flag's name."""
    changes = dict(shared or {})
    for flag, setting in SAMPLING_FLAGS.items():
        value = getattr(args, prefix + flag, None)
        if value is not None:
            changes[setting] = value
    try:
        return default.replace(**changes)
    except sampling.SamplingError as error:
        given = getattr(args, prefix + _FLAG_OF[error.setting], None) is not None
        raise CommandError(error.renamed(flag_name(error.setting, prefix if given else "")))\
            from None


def check_grids(pipeline, base: sampling.Sampling, superres: sampling.Sampling) -> None:
    """Refuse settings the pipeline's token grids cannot use (more steps than tokens, a top-k
    beyond the codebook) before anything is drawn, under the flags' names."""
    for settings, model, prefix in ((base, pipeline.base, ""),
                                    (superres, pipeline.superres, "sr_")):
        try:
            settings.check_grid(model.config.num_tokens, model.config.codebook_size)
        except sampling.SamplingError as error:
            raise CommandError(error.renamed(flag_name(error.setting, prefix))) from None


def generation_settings(args) -> dict:
    """``base``, ``superres``, ``seed`` and ``negative_prompt`` for ``Pipeline.generate``."""
    options = dict(base=stage_settings(args, sampling.BASE),
                   superres=stage_settings(args, sampling.SUPERRES, "sr_"), seed=args.seed)
    if getattr(args, "negative", None) is not None:
        options["negative_prompt"] = args.negative
    return options


def edit_settings(args) -> dict:
    """Mask-free editing's settings: ``--temperature`` and ``--top-k`` are for both stages,
    and the super-resolution stage is guided as the edit is unless ``--sr-guidance`` says."""
    shared = {setting: getattr(args, flag) for flag, setting in
              (("guidance", "guidance_scale"), ("temperature", "temperature"), ("top_k", "top_k"))
              if getattr(args, flag) is not None}
    options = dict(base=stage_settings(args, sampling.EDIT),
                   superres=stage_settings(args, sampling.EDIT_SUPERRES, "sr_", shared),
                   seed=args.seed)
    if args.negative is not None:
        options["negative_prompt"] = args.negative
    return options


# --------------------------------------------------------------------------- #
# Prompts.
# --------------------------------------------------------------------------- #


def read_prompt_file(path: str) -> list[str]:
    """The prompts of a text file, one per non-blank line."""
    file = Path(path)
    if not file.is_file():
        raise CommandError(f"no prompt file at {file}")
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise CommandError(f"{file} is not a UTF-8 text file: a prompt file holds one prompt "
                           f"per line, as plain text") from None
    prompts = [line.strip() for line in text.splitlines() if line.strip()]
    if not prompts:
        raise CommandError(f"{file} holds no prompts (one per line)")
    return prompts


def command_prompts(args) -> list[str]:
    """``generate``'s prompts: the arguments, or ``--prompt-file``'s lines (not both)."""
    if args.prompt_file and args.prompts:
        raise CommandError("give the prompts as arguments or with --prompt-file, not both")
    if args.prompt_file:
        return read_prompt_file(args.prompt_file)
    if not args.prompts:
        raise CommandError('generate needs a prompt, e.g. tinymuse generate "a red circle", '
                           'or --prompt-file FILE')
    return list(args.prompts)


def written_prompts(prompts, pipeline) -> list[str]:
    """For a pipeline of the shapes world, each prompt in the form its captions were written
    (lower case, capitals only for a letter to draw, no final full stop; the models see the
    exact text), with a note for each one that changed; other pipelines' prompts as given."""
    from ..data import written_form

    if not shapes_vocabulary(pipeline.tokenizer):
        return list(prompts)
    written = [written_form(prompt) for prompt in prompts]
    for given, form in dict.fromkeys(zip(prompts, written)):
        if form != given and form != " ".join(given.split()):
            note(f"reading {shown(given)} as {shown(form)}: the shapes world's captions are "
                 f"lower case, with capitals only for a letter to draw")
    return written


def shown(prompt: str) -> str:
    return repr(prompt if len(prompt) <= 60 else prompt[:57] + "...")


def prompt_notes(prompts, pipeline, what: str = "prompt") -> list[str]:
    """What the user should know about their prompts before the pictures come back: an empty
    prompt draws the unconditional sample; a prompt whose words are all the shapes world's
    but that its grammar cannot parse was never seen in that form in training. Words the
    tokenizer never saw are an error of their own (raised when the prompt is encoded)."""
    from ..data import parse_caption
    from ..data.grammar import CaptionSyntaxError

    shapes_words = _shapes_words()
    notes = []
    for prompt in dict.fromkeys(prompts):
        words = prompt.lower().split()
        if not words:
            notes.append("an empty negative prompt is the same as none: guidance steers away "
                         "from the empty prompt anyway" if what == "negative prompt" else
                         "an empty prompt asks for the unconditional sample: the picture the "
                         "model draws for no text at all")
        elif set(words) <= shapes_words and shapes_vocabulary(pipeline.tokenizer):
            try:
                parse_caption(prompt)
            except CaptionSyntaxError as error:
                reason = str(error).split(": ", 1)[-1]
                notes.append(f"{shown(prompt)} is not a caption of the shapes world "
                             f"({reason}); its models learnt from captions such as 'a red "
                             f"circle above a blue square', so it may not draw what you mean")
    return list(dict.fromkeys(notes))


def _shapes_words() -> set[str]:
    """Every word a shapes-world caption can have: the grammar's and the glyphs' names."""
    from ..data import known_words
    from ..data.vocabulary import GLYPHS

    return set(known_words()) | {glyph.lower() for glyph in GLYPHS}


def shapes_vocabulary(tokenizer) -> bool:
    """Whether a tokenizer learnt the shapes world's captions (its known words are that
    world's), so that the world's grammar says what a prompt should look like."""
    known = getattr(tokenizer, "known_words", None)
    return bool(known) and set(known) <= _shapes_words()
