"""The command line's grammar: every subcommand, its flags and the range each value must lie in.

A value outside its range is refused by argparse before anything is loaded, with the flag's
name (``argument --seed: must be a whole number from 0 to ...``). Sampling flags default to
``None``, meaning the stage's default in :mod:`tinymuse.sampling`; their ranges are checked
there, the one home of sampling settings, and reported under the flag's name.
"""
from __future__ import annotations

import argparse
import math

from .. import __version__, sampling
from . import limits

# Sampling flags of each stage (a prefix "sr-" for the super-resolution stage) and the
# Sampling setting each one sets.
SAMPLING_FLAGS = {"steps": "steps", "guidance": "guidance_scale",
                  "guidance_schedule": "guidance_schedule", "temperature": "temperature",
                  "choice_temperature": "choice_temperature", "top_k": "top_k",
                  "iterations": "iterations", "fraction": "fraction"}


class UsageError(Exception):
    """A command line argparse cannot read (an unknown flag, a value out of range)."""


class Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line, ``tinymuse: error: ...``, like every other error
    of the command (argparse's own way prints the whole usage first)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def whole(low: int, high: int | None = None):
    """An argparse type: a whole number in [low, high]."""
    bound = f">= {low}" if high is None else f"from {low} to {high}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"must be a whole number {bound}, got {text!r}")
        return value
    return parse


def real(low: float, high: float, *, above_low: bool = False, below_high: bool = False):
    """An argparse type: a finite number between ``low`` and ``high`` (each end included
    unless ``above_low`` / ``below_high``)."""
    lower = f"above {low}" if above_low else f"from {low}"
    upper = f"below {high}" if below_high else f"at most {high}" if above_low else f"to {high}"
    bound = f"{lower} and {upper}" if above_low or below_high else f"{lower} {upper}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        fits = math.isfinite(value) and (value > low if above_low else value >= low) \
            and (value < high if below_high else value <= high)
        if not fits:
            raise argparse.ArgumentTypeError(f"must be a number {bound}, got {text!r}")
        return value
    return parse


# --------------------------------------------------------------------------- #
# Options shared by several commands.
# --------------------------------------------------------------------------- #


def _add_pipeline_options(parser) -> None:
    parser.add_argument("--pipeline", metavar="DIR",
                        help="a saved pipeline or a training run folder (default: the bundled "
                             "weights)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seed", type=whole(0, limits.MAX_SEED), default=0,
                        help="same seed, same images (default 0)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_output_options(parser, default: str, scale: int = 1) -> None:
    """``--out`` (default ``default``, kept as ``args.default_out``), ``--overwrite``,
    ``--scale``."""
    parser.add_argument("--out", metavar="FILE.png",
                        help=f"the PNG to write (default {default}, or {default[:-4]}-2.png "
                             f"and so on if it exists)")
    parser.set_defaults(default_out=default)
    parser.add_argument("--overwrite", action="store_true",
                        help="replace --out if it exists (an input picture is never replaced)")
    parser.add_argument("--scale", type=whole(1, limits.MAX_SCALE), default=scale,
                        help=f"enlarge each pixel into SCALE×SCALE in the PNG (default {scale})")


def _add_stage_options(parser, prefix: str, default: sampling.Sampling, stage: str,
                       flags=("steps", "guidance", "guidance_schedule", "temperature",
                              "choice_temperature")) -> None:
    """The sampling flags of one stage; each defaults to ``default``'s value (shown)."""
    helps = {"steps": "decoding steps", "guidance": "classifier-free guidance scale (0: none)",
             "guidance_schedule": "keep the guidance scale constant, or raise it linearly to "
                                  "the full scale at the last step",
             "temperature": "sampling temperature (0: the likeliest token)",
             "choice_temperature": "noise on the confidences that choose which tokens each "
                                   "step keeps (MaskGIT used 4.5)",
             "top_k": "sample among the K likeliest codes",
             "iterations": "how many times a random subset of tokens is resampled",
             "fraction": "share of tokens resampled per iteration (Muse: 0.08)"}
    types = {"steps": int, "top_k": int, "iterations": int, "guidance_schedule": str}
    for flag in flags:
        value = getattr(default, SAMPLING_FLAGS[flag])
        options = {"choices": sampling.GUIDANCE_SCHEDULES} if flag == "guidance_schedule" else {}
        parser.add_argument("--" + (prefix + flag).replace("_", "-"),
                            type=types.get(flag, float), default=None, **options,
                            help=f"{stage}: {helps[flag]} (default {value})")


def _add_generation_options(parser) -> None:
    _add_stage_options(parser, "", sampling.BASE, "base stage")
    _add_stage_options(parser, "sr_", sampling.SUPERRES, "super-resolution stage")


def _add_negative(parser) -> None:
    parser.add_argument("--negative", metavar="PROMPT",
                        help="a negative prompt: what the image should not be (guided stages "
                             "steer away from it instead of from the empty prompt)")


def _add_common_options(parser, run, command: str, sampling_flags: bool = True) -> None:
    """What every command that draws from a prompt takes: a negative prompt, the output, the
    pipeline, and (unless it has its own) the sampling flags of both stages."""
    _add_negative(parser)
    _add_output_options(parser, "tinymuse.png" if command == "generate"
                        else f"tinymuse-{command}.png")
    _add_pipeline_options(parser)
    if sampling_flags:
        _add_generation_options(parser)
    parser.set_defaults(run=run[command])


def _add_edit_input(parser, what: str) -> None:
    parser.add_argument("image", help="the picture to edit (a PNG or JPEG of the pipeline's "
                                      "size, 64×64)")
    parser.add_argument("prompt", help=what)
    parser.add_argument("--resize", action="store_true",
                        help="centre-crop and resize the picture to the pipeline's size")


# --------------------------------------------------------------------------- #
# The commands.
# --------------------------------------------------------------------------- #


def _add_drawing_commands(commands, run) -> None:
    demo = commands.add_parser("demo", help="draw a grid of example prompts, labelled, into "
                                            "one PNG")
    _add_output_options(demo, "tinymuse-demo.png", scale=2)
    _add_pipeline_options(demo)
    _add_stage_options(demo, "", sampling.BASE, "base stage", ("steps", "guidance"))
    _add_stage_options(demo, "sr_", sampling.SUPERRES, "super-resolution stage",
                       ("steps", "guidance"))
    demo.set_defaults(run=run["demo"])

    generate = commands.add_parser("generate", help="prompt(s) → a PNG (a grid for several)")
    generate.add_argument("prompts", nargs="*", metavar="PROMPT")
    generate.add_argument("--prompt-file", metavar="FILE",
                          help="read the prompts from a UTF-8 text file, one per line")
    generate.add_argument("--samples", type=whole(1, limits.MAX_IMAGES), default=1,
                          help="images per prompt (default 1)")
    generate.add_argument("--labels", action="store_true",
                          help="write each image's prompt under it in the grid")
    generate.add_argument("--steps-gif", metavar="FILE.gif",
                          help="also write the decoding as an animated GIF: one frame per base "
                               "step, then one per super-resolution step, each the picture as "
                               "decoded so far (still-masked tokens dark gray), captioned with "
                               "its step")
    generate.add_argument("--steps-grid", metavar="FILE.png",
                          help="also write the decoding as one PNG: one row per image, one "
                               "column per step (the base steps, then the super-resolution "
                               "ones); with --labels each row starts with its prompt and every "
                               "other cell names its step")
    _add_common_options(generate, run, "generate")


def _add_editing_commands(commands, run) -> None:
    inpaint = commands.add_parser("inpaint", help="redraw a masked region under a prompt")
    _add_edit_input(inpaint, "what the whole picture should show once the region is redrawn "
                             "(the kept part included)")
    inpaint.add_argument("--mask", help="a mask picture of the same size, white = replace")
    inpaint.add_argument("--box", metavar="LEFT,TOP,RIGHT,BOTTOM",
                         help="replace this box of pixels")
    _add_common_options(inpaint, run, "inpaint")

    outpaint = commands.add_parser("outpaint", help="move or widen the canvas and draw the "
                                                    "uncovered part")
    _add_edit_input(outpaint, "what the whole new picture should show (the moved picture "
                              "included)")
    outpaint.add_argument("--shift", metavar="DY,DX",
                          help="move the picture by DY, DX pixels (negative: up, left)")
    outpaint.add_argument("--extend", metavar="TOP,BOTTOM,LEFT,RIGHT",
                          help="add margins (pixels) and zoom out")
    _add_common_options(outpaint, run, "outpaint")

    edit = commands.add_parser("edit", help="mask-free editing towards a new prompt")
    _add_edit_input(edit, "what the picture should show after the edit")
    _add_stage_options(edit, "", sampling.EDIT, "the edit", ("iterations", "fraction"))
    _add_stage_options(edit, "", sampling.EDIT, "both stages",
                       ("guidance", "temperature", "top_k"))
    _add_stage_options(edit, "sr_", sampling.EDIT_SUPERRES, "super-resolution stage",
                       ("steps",))
    _add_stage_options(edit, "sr_", sampling.EDIT_SUPERRES,
                       "super-resolution stage, if not --guidance's", ("guidance",))
    _add_common_options(edit, run, "edit", sampling_flags=False)


def _add_inspection_commands(commands, run) -> None:
    info = commands.add_parser("info", help="the settings a PNG written by tinymuse was made "
                                            "with, and the command that draws it again")
    info.add_argument("image", help="a PNG written by tinymuse")
    info.set_defaults(run=run["info"])

    vocab = commands.add_parser("vocab", help="the words a pipeline's prompts may use")
    vocab.add_argument("--pipeline", metavar="DIR",
                       help="a saved pipeline or a training run folder (default: the bundled "
                            "weights)")
    vocab.set_defaults(run=run["vocab"])

    tutorials = commands.add_parser("tutorials", help="list the chapters, draw their figures "
                                                      "again, or write them as notebooks")
    tutorials.add_argument("--notebooks", metavar="DIR",
                           help="write each chapter as a Jupyter notebook into DIR (needs "
                                "pip install 'tinymuse[notebooks]')")
    tutorials.add_argument("--figures", action="store_true",
                           help="run every chapter and draw tutorials/figures/ again")
    tutorials.add_argument("--folder", metavar="DIR",
                           help="the chapters' folder (default: tutorials/ of this checkout)")
    tutorials.set_defaults(run=run["tutorials"])

    course = commands.add_parser("course", help="the exercises: list them, export a student "
                                                "copy, grade a copy")
    course.add_argument("action", choices=("list", "export", "grade"))
    course.add_argument("dir", nargs="?", metavar="DIR",
                        help="export: the new folder; grade: the copy to grade (default: this "
                             "checkout)")
    course.add_argument("--chapters", metavar="SPEC",
                        help="export: the chapters whose exercises are blanked, e.g. 4, 3-5 or "
                             "2,7 (default: all)")
    course.add_argument("--json", action="store_true", help="grade: print the results as JSON")
    course.add_argument("--gradescope", metavar="FILE",
                        help="grade: also write Gradescope's results.json to FILE")
    course.add_argument("--overwrite", action="store_true",
                        help="grade: replace --gradescope's FILE if it exists")
    course.set_defaults(run=run["course"])


def _add_eval_command(commands, run) -> None:
    from ..evaluate import PROMPT_KINDS

    evaluate = commands.add_parser("eval", help="oracle accuracy per attribute on prompts "
                                                "training never read")
    evaluate.add_argument("--prompts", type=whole(1, limits.MAX_EVAL_PROMPTS), default=25,
                          help="prompts per kind (single, count, relation, glyph; default 25)")
    evaluate.add_argument("--split", default="both", choices=("train", "heldout", "both"),
                          help="seen combinations, held-out ones, or both")
    evaluate.add_argument("--kind", choices=PROMPT_KINDS,
                          help="score only this kind of prompt (default: all four)")
    evaluate.add_argument("--prompt-file", metavar="FILE",
                          help="score these prompts instead (UTF-8, one per line)")
    evaluate.add_argument("--compare-base", action="store_true",
                          help="also score the base stage alone (its 32×32 images, same "
                               "samples)")
    evaluate.add_argument("--batch-size", type=whole(1, limits.MAX_BATCH), default=50,
                          help="images drawn at once (default 50)")
    evaluate.add_argument("--out", metavar="FILE.json", help="write the scores to this JSON file")
    evaluate.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    _add_pipeline_options(evaluate)
    _add_generation_options(evaluate)
    evaluate.set_defaults(run=run["eval"])


def _add_train_command(commands, run) -> None:
    from ..cascade import OPTIONAL_STAGES, PRESETS, STAGES
    from ..cascade.presets import describe_fields

    train = commands.add_parser("train", help="train one stage of the cascade, or all of them")
    train.add_argument("--stage", default="all", choices=("all",) + STAGES + OPTIONAL_STAGES)
    train.add_argument("--out", required=True, help="the run folder")
    train.add_argument("--data", default="shapes",
                       help="'shapes' (the built-in shapes world) or a folder of image-caption "
                            "pairs")
    train.add_argument("--preset", choices=tuple(PRESETS),
                       help="the sizes of every stage (default: the run folder's own preset, or "
                            "'default' for a new run)")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change a field of the preset for a new run (repeatable), e.g. "
                            "base_steps=600 or base.d_model=64; fields: "
                            + ", ".join(describe_fields()))
    train.add_argument("--resume", action="store_true",
                       help="continue a run: skip finished stages, resume unfinished ones")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--images", type=whole(1), metavar="N",
                       help="with --stage tokens on a finished run: encode the token caches "
                            "again with N shapes-world scenes (the first ones are the old "
                            "cache's), for --more-steps rounds that would otherwise see the "
                            "same scenes over and over")
    more = train.add_argument_group(
        "a transformer stage's schedule (with --stage base, superres or ar-base; default: the "
        "preset's)")
    more.add_argument("--more-steps", type=whole(1), metavar="N",
                      help="N more steps from the finished stage's weights, with a fresh "
                           "warm-up and cosine schedule (run it again to resume it)")
    more.add_argument("--steps", type=whole(1), help="the stage's training steps")
    more.add_argument("--batch-size", type=whole(1),
                      help="e.g. larger on a GPU, where a step of the preset's batch is "
                           "mostly overhead")
    more.add_argument("--lr", type=real(0, 1, above_low=True),
                      help="peak learning rate (default: the preset's)")
    more.add_argument("--warmup-steps", type=whole(0), help="default: N/10, at most 200")
    more.add_argument("--ema", type=real(0, 1, below_high=True),
                      help="EMA decay of the weights, e.g. 0.999 (default: the preset's)")
    train.set_defaults(run=run["train"])


def build_parser(run: dict) -> argparse.ArgumentParser:
    """The whole command line; ``run`` maps each command's name to the function that runs it."""
    parser = Parser(
        prog="tinymuse",
        description="Masked generative text-to-image models (Muse), from scratch.")
    parser.add_argument("--version", action="version", version=f"tinymuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_drawing_commands(commands, run)
    _add_editing_commands(commands, run)
    _add_eval_command(commands, run)
    _add_train_command(commands, run)
    _add_inspection_commands(commands, run)
    return parser
