"""The ``tinymuse`` command: each subcommand maps its flags to settings and calls the library.

    tinymuse demo                                   the bundled pipeline draws example prompts
    tinymuse generate "a red circle" --seed 1       prompt(s) → PNG (a grid for several)
    tinymuse inpaint in.png "a blue square" --box 0,0,32,32
    tinymuse outpaint in.png "a green circle" --shift 0,24
    tinymuse edit in.png "a yellow circle"          mask-free editing
    tinymuse eval --prompts 20                      oracle accuracy per attribute
    tinymuse train --stage all --out runs/cascade   the whole cascade (tinymuse.cascade)
    tinymuse info tinymuse.png                      how a picture was made
    tinymuse vocab                                  the words prompts may use
    tinymuse tutorials --notebooks DIR              the chapters as Jupyter notebooks
    tinymuse course export DIR --chapters 4         a student copy, chapter 4 to write

Every image command uses the bundled pipeline (``tinymuse/assets``) unless ``--pipeline DIR``
names another one: a directory saved by :meth:`tinymuse.Pipeline.save`, or a training run
folder that holds one in ``pipeline/``. A sampling flag left out means the stage's default,
:data:`tinymuse.sampling.BASE` and its siblings, which the library uses too.

The package, one job per module: :mod:`~tinymuse.cli.parser` (the flags and their ranges),
:mod:`~tinymuse.cli.limits` (the bounds of the command's work), :mod:`~tinymuse.cli.options`
(flags → settings, pipeline, prompts), :mod:`~tinymuse.cli.outputs` (file names, PNG
parameters, progress), :mod:`~tinymuse.cli.steps` (the decoding's pictures, step by step),
and the commands: :mod:`~tinymuse.cli.draw`,
:mod:`~tinymuse.cli.evaluate`, :mod:`~tinymuse.cli.train`, :mod:`~tinymuse.cli.info`,
:mod:`~tinymuse.cli.tutorials`, :mod:`~tinymuse.cli.course`.

Errors a user can fix (an unknown word, a missing file, an image of the wrong size, missing
weights, a setting out of range, an output that exists) print one line, ``tinymuse: error:
...``, and exit with status 2; ``--debug`` shows the traceback instead. Ctrl-C exits with
status 130 and leaves every file whole. Anything else is a bug of tinymuse's: one line too,
status 1, asking for the ``--debug`` traceback.
"""
from __future__ import annotations

import re
import sys

from ..pipeline_files import BUNDLED, TRAIN_COMMAND
from . import course, draw, evaluate, info, train, tutorials
from .draw import DEMO_PROMPTS
from .options import CommandError, edit_settings, generation_settings
from .parser import UsageError
from .parser import build_parser as _build_parser

__all__ = ["main", "build_parser", "CommandError", "DEMO_PROMPTS", "BUNDLED", "TRAIN_COMMAND",
           "generation_settings", "edit_settings"]

COMMANDS = {"demo": draw.cmd_demo, "generate": draw.cmd_generate, "inpaint": draw.cmd_inpaint,
            "outpaint": draw.cmd_outpaint, "edit": draw.cmd_edit, "eval": evaluate.cmd_eval,
            "train": train.cmd_train, "info": info.cmd_info, "vocab": info.cmd_vocab,
            "tutorials": tutorials.cmd_tutorials, "course": course.cmd_course}

# A value such as "-24,0" (a negative --shift) looks to argparse like an unknown flag;
# written "--shift=-24,0" it is a value. Lists of numbers with a leading minus are joined so.
_NEGATIVE_LIST = re.compile(r"-\d+(,-?\d+)+")


def build_parser():
    """The ``tinymuse`` argument parser (see :mod:`tinymuse.cli.parser`)."""
    return _build_parser(COMMANDS)


def _join_negative_lists(argv: list[str]) -> list[str]:
    joined = []
    for arg in argv:
        if joined and _NEGATIVE_LIST.fullmatch(arg) and joined[-1].startswith("--") \
                and "=" not in joined[-1]:
            joined[-1] = f"{joined[-1]}={arg}"
        else:
            joined.append(arg)
    return joined


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _expected_errors() -> tuple:
    """The errors a user can fix, each reported as one line."""
    from ..backend import DeviceError
    from ..checkpoint import CheckpointError

    # OSError: missing and unreadable files (a picture too large is the reader's PictureError)
    return (ValueError, OSError, CheckpointError, CommandError, DeviceError)


def main(argv: list[str] | None = None) -> int:
    argv = _join_negative_lists(list(sys.argv[1:] if argv is None else argv))
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as error:
        print(f"tinymuse: error: {error}", file=sys.stderr)
        return 2
    if args.command is None:
        parser.print_help()
        return 0
    args.argv = argv
    expected = _expected_errors()
    try:
        if getattr(args, "device", "cpu") != "cpu":
            from ..backend import check_device

            check_device(args.device)
        return args.run(args)
    except expected as error:
        if args.debug:
            raise
        print(f"tinymuse: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print("tinymuse: error: out of memory: draw fewer images at once (--samples, "
              "--batch-size) or a smaller --scale", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (the run continues from its last checkpoint with --resume)" \
            if args.command == "train" else " (nothing was written)"
        print(f"tinymuse: interrupted{hint}", file=sys.stderr)
        return 130
    except Exception as error:  # a bug: still one line, and the way to see more
        if args.debug:
            raise
        print(f"tinymuse: error: {type(error).__name__}: {_one_line(error)} (this is a bug in "
              f"tinymuse: run the command again with --debug and report the traceback)",
              file=sys.stderr)
        return 1
