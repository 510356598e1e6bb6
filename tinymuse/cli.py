"""The ``tinymuse`` command: each subcommand maps its flags to settings and calls the library.

    tinymuse demo                                   the bundled pipeline draws example prompts
    tinymuse generate "a red circle" --seed 1       prompt(s) → PNG (a grid for several)
    tinymuse inpaint in.png "a blue square" --box 0,0,32,32
    tinymuse outpaint in.png "a green circle" --shift 0,24
    tinymuse edit in.png "a yellow circle"          mask-free editing
    tinymuse eval --prompts 20                      oracle accuracy per attribute
    tinymuse train --stage all --out runs/cascade   the whole cascade (tinymuse.cascade)

Every image command uses the bundled pipeline (``tinymuse/assets``) unless ``--pipeline DIR``
names another one: a directory saved by :meth:`tinymuse.Pipeline.save`, or a training run
folder that holds one in ``pipeline/``. A sampling flag left out means the stage's default,
:data:`tinymuse.sampling.BASE` and its siblings, which the library uses too.

Errors a user can fix (an unknown word, a missing file, an image of the wrong size, missing
weights, a setting out of range) print one line, ``tinymuse: error: ...``, and exit with
status 2; ``--debug`` shows the traceback instead.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from . import __version__, files, sampling
from .pipeline_files import BUNDLED

TRAIN_COMMAND = "tinymuse train --stage all --out runs/cascade"

# What `tinymuse demo` draws: every kind of caption the shapes world has.
DEMO_PROMPTS = (
    "a red circle",
    "a blue square on a black background",
    "a large green triangle",
    "two yellow circles",
    "three small purple squares",
    "four orange triangles on a white background",
    "a red square to the left of a blue circle",
    "a green circle above a yellow triangle",
    "a purple triangle below an orange square",
    "a yellow square with a gray background",
    "two blue triangles",
    "a small red circle right of a large green square",
    "the letter A in blue",
    "the digit 7 in red",
    "a green letter K on a black background",
    "the number 3 in purple",
)

# Sampling flags of each stage (a prefix "sr-" for the super-resolution stage) and the
# Sampling setting each one sets.
SAMPLING_FLAGS = {"steps": "steps", "guidance": "guidance_scale",
                  "guidance_schedule": "guidance_schedule", "temperature": "temperature",
                  "choice_temperature": "choice_temperature", "top_k": "top_k",
                  "iterations": "iterations", "fraction": "fraction"}
_FLAG_OF = {setting: flag for flag, setting in SAMPLING_FLAGS.items()}


class CommandError(Exception):
    """A problem with the command line itself, reported like the library's errors."""


# --------------------------------------------------------------------------- #
# Flags → library objects.
# --------------------------------------------------------------------------- #


def pipeline_dir(path: str | None) -> Path:
    """The pipeline directory a command uses: ``--pipeline`` (a pipeline directory or a
    training run holding ``pipeline/``) or the bundled one."""
    if path is None:
        if not (BUNDLED / "pipeline.json").is_file():
            raise CommandError(f"no bundled weights in {BUNDLED}: this copy of tinymuse ships "
                               f"without them. Train a pipeline with `{TRAIN_COMMAND}` and pass "
                               f"--pipeline runs/cascade")
        return BUNDLED
    folder = Path(path)
    if (folder / "pipeline" / "pipeline.json").is_file():
        return folder / "pipeline"
    if not folder.exists():
        raise CommandError(f"no pipeline at {folder}: give a directory saved by "
                           f"Pipeline.save or a training run folder (`{TRAIN_COMMAND}`)")
    return folder


def load_pipeline(args):
    from .pipeline import Pipeline

    return Pipeline.load(pipeline_dir(args.pipeline), device=args.device)


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
        flag = _FLAG_OF[error.setting]
        given = getattr(args, prefix + flag, None) is not None
        name = "--" + ((prefix if given else "") + flag).replace("_", "-")
        raise CommandError(error.renamed(name)) from None


def generation_settings(args) -> dict:
    """``base``, ``superres``, ``seed`` and ``negative_prompt`` for ``Pipeline.generate``."""
    options = dict(base=stage_settings(args, sampling.BASE),
                   superres=stage_settings(args, sampling.SUPERRES, "sr_"), seed=args.seed)
    if getattr(args, "negative", None):
        options["negative_prompt"] = args.negative
    return options


def edit_settings(args) -> dict:
    """Mask-free editing's settings: ``--temperature`` and ``--top-k`` are for both stages,
    and the super-resolution stage is guided as the edit is unless ``--sr-guidance`` says."""
    shared = {setting: getattr(args, flag) for flag, setting in
              (("guidance", "guidance_scale"), ("temperature", "temperature"), ("top_k", "top_k"))
              if getattr(args, flag) is not None}
    return dict(base=stage_settings(args, sampling.EDIT),
                superres=stage_settings(args, sampling.EDIT_SUPERRES, "sr_", shared),
                seed=args.seed)


def save_images(images, out, nrow: int, scale: int) -> Path:
    """One image → a PNG of it; several → a grid PNG with ``nrow`` images per row."""
    from PIL import Image

    from .data import save_image_grid

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if len(images) == 1:
        picture = images[0]
        if scale != 1:
            picture = picture.repeat(scale, axis=0).repeat(scale, axis=1)
        Image.fromarray(picture).save(out)
    else:
        save_image_grid(images, out, nrow=nrow, scale=scale)
    return out


def read_image(path: str, size: int, resize: bool):
    """A picture file as uint8 (1, size, size, 3); with ``resize`` it is centre-cropped and
    resized, otherwise it must already be ``size``×``size``."""
    import numpy as np
    from PIL import Image

    from .data import load_square_image

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no image file at {file}")
    if resize:
        return load_square_image(file, size)[None]
    with Image.open(file) as picture:
        if picture.size != (size, size):
            raise ValueError(f"{file} is {picture.size[0]}×{picture.size[1]} pixels; this "
                             f"pipeline works on {size}×{size}. Pass --resize to centre-crop "
                             f"and resize it")
        return np.asarray(picture.convert("RGB"))[None]


def _numbers(text: str, count: int, what: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise CommandError(f"{what} takes {count} whole numbers separated by commas, got "
                           f"{text!r}")
    return values


def _done(path: Path, what: str, started: float) -> None:
    print(f"wrote {path} ({what} in {time.perf_counter() - started:.1f} s)")


# --------------------------------------------------------------------------- #
# The commands.
# --------------------------------------------------------------------------- #


def cmd_generate(args) -> int:
    started = time.perf_counter()
    if args.samples < 1:
        raise CommandError(f"--samples must be at least 1, got {args.samples}")
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    prompts = [p for p in args.prompts for _ in range(args.samples)]
    images = pipeline.generate(prompts, output="uint8", **options)
    nrow = args.samples if len(args.prompts) > 1 and args.samples > 1 else min(8, len(prompts))
    _done(save_images(images, args.out, nrow, args.scale), f"{len(images)} image(s)", started)
    return 0


def _box_mask(box: str, size: int):
    import numpy as np

    left, top, right, bottom = _numbers(box, 4, "--box")
    if not (0 <= left < right <= size and 0 <= top < bottom <= size):
        raise CommandError(f"--box {box} is not a box inside the {size}×{size} image "
                           f"(0 <= LEFT < RIGHT <= {size}, 0 <= TOP < BOTTOM <= {size})")
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask


def cmd_inpaint(args) -> int:
    started = time.perf_counter()
    if (args.mask is None) == (args.box is None):
        raise CommandError("inpaint needs exactly one of --mask MASK.png (white = replace) and "
                           "--box LEFT,TOP,RIGHT,BOTTOM (pixels)")
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    image = read_image(args.image, pipeline.image_size, args.resize)
    mask = args.mask if args.box is None else _box_mask(args.box, pipeline.image_size)
    images = pipeline.inpaint(image, mask, args.prompt, output="uint8", **options)
    _done(save_images(images, args.out, 1, args.scale), "inpainting", started)
    return 0


def cmd_outpaint(args) -> int:
    started = time.perf_counter()
    if (args.shift is None) == (args.extend is None):
        raise CommandError("outpaint needs exactly one of --shift DY,DX (move the picture) and "
                           "--extend TOP,BOTTOM,LEFT,RIGHT (add margins and zoom out)")
    where = ({"shift": _numbers(args.shift, 2, "--shift")} if args.shift is not None
             else {"extend": _numbers(args.extend, 4, "--extend")})
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    image = read_image(args.image, pipeline.image_size, args.resize)
    images = pipeline.outpaint(image, args.prompt, output="uint8", **where, **options)
    _done(save_images(images, args.out, 1, args.scale), "outpainting", started)
    return 0


def cmd_edit(args) -> int:
    started = time.perf_counter()
    options = edit_settings(args)
    pipeline = load_pipeline(args)
    image = read_image(args.image, pipeline.image_size, args.resize)
    images = pipeline.edit(image, args.prompt, output="uint8", **options)
    _done(save_images(images, args.out, 1, args.scale), "editing", started)
    return 0


def cmd_demo(args) -> int:
    started = time.perf_counter()
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    images = pipeline.generate(list(DEMO_PROMPTS), output="uint8", **options)
    _done(save_images(images, args.out, 4, args.scale), f"{len(DEMO_PROMPTS)} prompts", started)
    return 0


def _prompt_sets(args) -> dict:
    """The prompts ``tinymuse eval`` scores, by set name (``train/single``, ...)."""
    from .evaluate import evaluation_prompts

    if args.prompt_file:
        file = Path(args.prompt_file)
        if not file.is_file():
            raise FileNotFoundError(f"no prompt file at {file}")
        prompts = [line.strip() for line in file.read_text().splitlines() if line.strip()]
        if not prompts:
            raise CommandError(f"{file} holds no prompts (one per line)")
        return {"file/prompts": prompts}
    if args.prompts < 1:
        raise CommandError(f"--prompts is the number of prompts per kind and must be at least "
                           f"1, got {args.prompts}")
    splits = ("train", "heldout") if args.split == "both" else (args.split,)
    sets = {f"{split}/{kind}": prompts for split in splits
            for kind, prompts in evaluation_prompts(args.prompts, split).items()
            if args.kind in (None, kind)}
    if not sets:
        raise CommandError(f"the held-out split has no {args.kind} prompts (glyphs have "
                           f"no colour–shape pair to hold out); use --split train")
    return sets


def _format_scores(entry: dict) -> str:
    text = ", ".join(f"{k} {v:.2f}" for k, v in entry["pipeline"].items())
    if "base_alone" in entry:
        text += " | base stage alone: " + ", ".join(f"{k} {v:.2f}"
                                                    for k, v in entry["base_alone"].items())
    return text


def cmd_eval(args) -> int:
    from .evaluate import score_pipeline

    started = time.perf_counter()
    sets = _prompt_sets(args)
    options = generation_settings(args)
    pipeline = load_pipeline(args)

    def report(name, entry):
        print(f"{name} ({entry['prompts']} prompts): " + _format_scores(entry), flush=True)

    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be at least 1, got {args.batch_size}")
    results = score_pipeline(pipeline, sets, batch_size=args.batch_size,
                             compare_base=args.compare_base, report=report, **options)
    print(f"overall ({results['overall']['prompts']} prompts): "
          + _format_scores(results["overall"]))
    if args.out:
        results["settings"] = {"pipeline": str(pipeline_dir(args.pipeline)), "seed": args.seed,
                               "base": dataclasses.asdict(options["base"]),
                               "superres": dataclasses.asdict(options["superres"])}
        files.write_text(args.out, json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def cmd_train(args) -> int:
    from .cascade import PRESETS, changed, more_images, train_cascade, train_more

    schedule = {key: value for key, value in (
        ("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
        ("warmup_steps", args.warmup_steps), ("ema_decay", args.ema)) if value is not None}
    progress = not args.quiet
    if args.images is not None:
        if args.stage != "tokens":
            raise CommandError(f"--images re-encodes the token caches: use it with --stage "
                               f"tokens, not --stage {args.stage}")
        if args.more_steps is not None or schedule or args.set:
            raise CommandError("--images and a stage's training settings (--more-steps, "
                               "--steps, --lr, --set, ...) are two commands: encode the caches "
                               "with --stage tokens --images N first, then train with --stage "
                               "base|superres --more-steps N")
        record = more_images(args.out, args.images, device=args.device, progress=progress)
    elif args.more_steps is not None:
        if args.steps is not None or args.set:
            raise CommandError("--more-steps continues a finished stage with its own sizes: "
                               "drop --steps (--more-steps is the number of steps) and --set")
        record = train_more(args.out, args.stage, args.more_steps, lr=args.lr,
                            warmup_steps=args.warmup_steps, ema=args.ema, device=args.device,
                            progress=progress, batch_size=args.batch_size)
    else:
        preset = changed(PRESETS[args.preset], args.set) if args.set else args.preset
        record = train_cascade(args.out, stage=args.stage, preset=preset, data=args.data,
                               resume=args.resume, device=args.device, progress=progress,
                               schedule=schedule)
    stages = ", ".join(f"{name} {entry['seconds']:.0f} s"
                       for name, entry in record["stages"].items())
    print(f"{args.out}: {stages} (total {record.get('seconds', 0) / 60:.1f} min)")
    if "pipeline" in record["stages"]:
        print(f"try it: tinymuse demo --pipeline {args.out}")
    return 0


# --------------------------------------------------------------------------- #
# The parser.
# --------------------------------------------------------------------------- #


def _add_pipeline_options(parser, scale: int = 1) -> None:
    parser.add_argument("--pipeline", metavar="DIR",
                        help="a saved pipeline or a training run folder (default: the bundled "
                             "weights)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0, help="same seed, same images")
    parser.add_argument("--scale", type=int, default=scale,
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


def _add_edit_input(parser) -> None:
    parser.add_argument("image", help="the picture to edit (a PNG or JPEG of the pipeline's "
                                      "size, 64×64)")
    parser.add_argument("prompt", help="what the result should show")
    parser.add_argument("--resize", action="store_true",
                        help="centre-crop and resize the picture to the pipeline's size")


def _add_image_commands(commands) -> None:
    demo = commands.add_parser("demo", help="draw a grid of example prompts into one PNG")
    demo.add_argument("--out", default="tinymuse-demo.png")
    _add_pipeline_options(demo, scale=2)
    _add_stage_options(demo, "", sampling.BASE, "base stage", ("steps", "guidance"))
    _add_stage_options(demo, "sr_", sampling.SUPERRES, "super-resolution stage",
                       ("steps", "guidance"))
    demo.set_defaults(run=cmd_demo)

    generate = commands.add_parser("generate", help="prompt(s) → a PNG (a grid for several)")
    generate.add_argument("prompts", nargs="+", metavar="PROMPT")
    generate.add_argument("--samples", type=int, default=1, help="images per prompt")
    generate.add_argument("--negative", help="a negative prompt: what the image should not be")
    generate.add_argument("--out", default="tinymuse.png")
    _add_pipeline_options(generate)
    _add_generation_options(generate)
    generate.set_defaults(run=cmd_generate)

    inpaint = commands.add_parser("inpaint", help="redraw a masked region under a prompt")
    _add_edit_input(inpaint)
    inpaint.add_argument("--mask", help="a mask picture of the same size, white = replace")
    inpaint.add_argument("--box", metavar="LEFT,TOP,RIGHT,BOTTOM",
                         help="replace this box of pixels")
    inpaint.add_argument("--negative")
    inpaint.add_argument("--out", default="tinymuse-inpaint.png")
    _add_pipeline_options(inpaint)
    _add_generation_options(inpaint)
    inpaint.set_defaults(run=cmd_inpaint)

    outpaint = commands.add_parser("outpaint", help="move or widen the canvas and draw the "
                                                    "uncovered part")
    _add_edit_input(outpaint)
    outpaint.add_argument("--shift", metavar="DY,DX", help="move the picture by DY, DX pixels")
    outpaint.add_argument("--extend", metavar="TOP,BOTTOM,LEFT,RIGHT",
                          help="add margins (pixels) and zoom out")
    outpaint.add_argument("--negative")
    outpaint.add_argument("--out", default="tinymuse-outpaint.png")
    _add_pipeline_options(outpaint)
    _add_generation_options(outpaint)
    outpaint.set_defaults(run=cmd_outpaint)

    edit = commands.add_parser("edit", help="mask-free editing towards a new prompt")
    _add_edit_input(edit)
    _add_stage_options(edit, "", sampling.EDIT, "the edit", ("iterations", "fraction"))
    _add_stage_options(edit, "", sampling.EDIT, "both stages",
                       ("guidance", "temperature", "top_k"))
    _add_stage_options(edit, "sr_", sampling.EDIT_SUPERRES, "super-resolution stage",
                       ("steps",))
    _add_stage_options(edit, "sr_", sampling.EDIT_SUPERRES,
                       "super-resolution stage, if not --guidance's", ("guidance",))
    edit.add_argument("--out", default="tinymuse-edit.png")
    _add_pipeline_options(edit)
    edit.set_defaults(run=cmd_edit)


def _add_eval_command(commands) -> None:
    from .evaluate import PROMPT_KINDS

    evaluate = commands.add_parser("eval", help="oracle accuracy per attribute on prompts "
                                                "training never read")
    evaluate.add_argument("--prompts", type=int, default=25, help="prompts per kind "
                          "(single, count, relation, glyph)")
    evaluate.add_argument("--split", default="both", choices=("train", "heldout", "both"),
                          help="seen combinations, held-out ones, or both")
    evaluate.add_argument("--kind", choices=PROMPT_KINDS,
                          help="score only this kind of prompt (default: all four)")
    evaluate.add_argument("--prompt-file", help="score these prompts instead (one per line)")
    evaluate.add_argument("--compare-base", action="store_true",
                          help="also score the base stage alone (its 32×32 images, same "
                               "samples)")
    evaluate.add_argument("--batch-size", type=int, default=50)
    evaluate.add_argument("--out", help="write the scores to this JSON file")
    _add_pipeline_options(evaluate)
    _add_generation_options(evaluate)
    evaluate.set_defaults(run=cmd_eval)


def _add_train_command(commands) -> None:
    from .cascade import PRESETS, STAGES
    from .cascade.presets import describe_fields

    train = commands.add_parser("train", help="train one stage of the cascade, or all of them")
    train.add_argument("--stage", default="all", choices=("all",) + STAGES)
    train.add_argument("--out", required=True, help="the run folder")
    train.add_argument("--data", default="shapes",
                       help="'shapes' (the built-in shapes world) or a folder of image-caption "
                            "pairs")
    train.add_argument("--preset", default="default", choices=tuple(PRESETS))
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="change a field of the preset for this run (repeatable), e.g. "
                            "base_steps=600 or base.d_model=64; fields: "
                            + ", ".join(describe_fields()))
    train.add_argument("--resume", action="store_true",
                       help="continue a run: skip finished stages, resume unfinished ones")
    train.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--images", type=int, metavar="N",
                       help="with --stage tokens on a finished run: encode the token caches "
                            "again with N shapes-world scenes (the first ones are the old "
                            "cache's), for --more-steps rounds that would otherwise see the "
                            "same scenes over and over")
    more = train.add_argument_group(
        "a transformer stage's schedule (with --stage base or superres; default: the preset's)")
    more.add_argument("--more-steps", type=int, metavar="N",
                      help="N more steps from the finished stage's weights, with a fresh "
                           "warm-up and cosine schedule (run it again to resume it)")
    more.add_argument("--steps", type=int, help="the stage's training steps")
    more.add_argument("--batch-size", type=int,
                      help="e.g. larger on a GPU, where a step of the preset's batch is "
                           "mostly overhead")
    more.add_argument("--lr", type=float, help="peak learning rate (default: the preset's)")
    more.add_argument("--warmup-steps", type=int, help="default: N/10, at most 200")
    more.add_argument("--ema", type=float, help="EMA decay of the weights, e.g. 0.999 "
                                                "(default: the preset's)")
    train.set_defaults(run=cmd_train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinymuse",
        description="Masked generative text-to-image models (Muse), from scratch.")
    parser.add_argument("--version", action="version", version=f"tinymuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_image_commands(commands)
    _add_eval_command(commands)
    _add_train_command(commands)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    from .checkpoint import CheckpointError

    expected = (ValueError, OSError, CheckpointError, CommandError)  # OSError: missing and
    # unreadable files
    try:
        return args.run(args)
    except expected as error:
        if args.debug:
            raise
        print(f"tinymuse: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        hint = " (the run continues from its last checkpoint with --resume)" \
            if args.command == "train" else ""
        print(f"tinymuse: interrupted{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
