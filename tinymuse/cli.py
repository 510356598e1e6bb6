"""The ``tinymuse`` command.

    tinymuse demo                                   the bundled pipeline draws example prompts
    tinymuse generate "a red circle" --seed 1       prompt(s) → PNG (a grid for several)
    tinymuse inpaint in.png "a blue square" --box 0,0,32,32
    tinymuse outpaint in.png "a green circle" --shift 0,24
    tinymuse edit in.png "a yellow circle"          mask-free editing
    tinymuse eval --prompts 20                      oracle accuracy per attribute
    tinymuse train --stage all --out runs/cascade   the whole cascade (tinymuse.cascade)

Every image command uses the bundled pipeline (``tinymuse/assets``) unless ``--pipeline DIR``
names another one: a directory saved by :meth:`tinymuse.Pipeline.save`, or a training run
folder that holds one in ``pipeline/``.

Errors a user can fix (an unknown word, a missing file, an image of the wrong size, missing
weights) print one line, ``tinymuse: error: ...``, and exit with status 2; ``--debug`` shows
the traceback instead.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from . import __version__
from .decoding import GUIDANCE_SCHEDULES
from .pipeline import CHOICE_TEMPERATURES, GUIDANCE, GUIDANCE_SCHEDULE, STEPS, TEMPERATURES

ASSETS = Path(__file__).resolve().parent / "assets"
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


class CommandError(Exception):
    """A problem with the command line itself, reported like the library's errors."""


# --------------------------------------------------------------------------- #
# Shared helpers.
# --------------------------------------------------------------------------- #


def pipeline_dir(path: str | None) -> Path:
    """The pipeline directory a command uses: ``--pipeline`` (a pipeline directory or a
    training run holding ``pipeline/``) or the bundled one."""
    if path is None:
        if not (ASSETS / "pipeline.json").is_file():
            raise CommandError(f"no bundled weights in {ASSETS}: this copy of tinymuse ships "
                               f"without them. Train a pipeline with `{TRAIN_COMMAND}` and pass "
                               f"--pipeline runs/cascade")
        return ASSETS
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

    from .data import load_square_image

    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"no image file at {file}")
    if resize:
        return load_square_image(file, size)[None]
    from PIL import Image

    with Image.open(file) as picture:
        if picture.size != (size, size):
            raise ValueError(f"{file} is {picture.size[0]}×{picture.size[1]} pixels; this "
                             f"pipeline works on {size}×{size}. Pass --resize to centre-crop "
                             f"and resize it")
        return np.asarray(picture.convert("RGB"))[None]


def _pair(text: str, count: int, what: str) -> tuple:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise CommandError(f"{what} takes {count} whole numbers separated by commas, got "
                           f"{text!r}")
    return values


def _sampling_options(args) -> dict:
    options = dict(base_steps=args.steps, sr_steps=args.sr_steps,
                   guidance_scale=(args.guidance, args.sr_guidance),
                   temperature=(args.temperature, args.sr_temperature),
                   choice_temperature=(args.choice_temperature, args.sr_choice_temperature),
                   guidance_schedule=(args.guidance_schedule, args.sr_guidance_schedule),
                   seed=args.seed, output="uint8")
    if getattr(args, "negative", None):
        options["negative_prompt"] = args.negative
    return options


def _done(path: Path, what: str, started: float) -> None:
    print(f"wrote {path} ({what} in {time.perf_counter() - started:.1f} s)")


# --------------------------------------------------------------------------- #
# The commands.
# --------------------------------------------------------------------------- #


def cmd_generate(args) -> int:
    started = time.perf_counter()
    pipeline = load_pipeline(args)
    if args.samples < 1:
        raise CommandError(f"--samples must be at least 1, got {args.samples}")
    prompts = [p for p in args.prompts for _ in range(args.samples)]
    images = pipeline.generate(prompts, **_sampling_options(args))
    nrow = args.samples if len(args.prompts) > 1 and args.samples > 1 else min(8, len(prompts))
    _done(save_images(images, args.out, nrow, args.scale), f"{len(images)} image(s)", started)
    return 0


def _edit_input(args, pipeline):
    return read_image(args.image, pipeline.image_size, args.resize)


def cmd_inpaint(args) -> int:
    import numpy as np

    started = time.perf_counter()
    pipeline = load_pipeline(args)
    image = _edit_input(args, pipeline)
    size = pipeline.image_size
    if (args.mask is None) == (args.box is None):
        raise CommandError("inpaint needs exactly one of --mask MASK.png (white = replace) and "
                           "--box LEFT,TOP,RIGHT,BOTTOM (pixels)")
    if args.box is not None:
        left, top, right, bottom = _pair(args.box, 4, "--box")
        if not (0 <= left < right <= size and 0 <= top < bottom <= size):
            raise CommandError(f"--box {args.box} is not a box inside the {size}×{size} image "
                               f"(0 <= LEFT < RIGHT <= {size}, 0 <= TOP < BOTTOM <= {size})")
        mask = np.zeros((size, size), bool)
        mask[top:bottom, left:right] = True
    else:
        mask = args.mask
    images = pipeline.inpaint(image, mask, args.prompt, **_sampling_options(args))
    _done(save_images(images, args.out, 1, args.scale), "inpainting", started)
    return 0


def cmd_outpaint(args) -> int:
    started = time.perf_counter()
    pipeline = load_pipeline(args)
    image = _edit_input(args, pipeline)
    if (args.shift is None) == (args.extend is None):
        raise CommandError("outpaint needs exactly one of --shift DY,DX (move the picture) and "
                           "--extend TOP,BOTTOM,LEFT,RIGHT (add margins and zoom out)")
    where = ({"shift": _pair(args.shift, 2, "--shift")} if args.shift is not None
             else {"extend": _pair(args.extend, 4, "--extend")})
    images = pipeline.outpaint(image, args.prompt, **where, **_sampling_options(args))
    _done(save_images(images, args.out, 1, args.scale), "outpainting", started)
    return 0


def cmd_edit(args) -> int:
    started = time.perf_counter()
    pipeline = load_pipeline(args)
    image = _edit_input(args, pipeline)
    sr_guidance = args.guidance if args.sr_guidance is None else args.sr_guidance
    images = pipeline.edit(image, args.prompt, iterations=args.iterations,
                           fraction=args.fraction, guidance_scale=(args.guidance, sr_guidance),
                           temperature=args.temperature, top_k=args.top_k,
                           sr_steps=args.sr_steps, seed=args.seed, output="uint8")
    _done(save_images(images, args.out, 1, args.scale), "editing", started)
    return 0


def cmd_demo(args) -> int:
    started = time.perf_counter()
    pipeline = load_pipeline(args)
    prompts = list(DEMO_PROMPTS)
    images = pipeline.generate(prompts, base_steps=args.steps, sr_steps=args.sr_steps,
                               guidance_scale=(args.guidance, args.sr_guidance), seed=args.seed,
                               output="uint8")
    path = save_images(images, args.out, 4, args.scale)
    _done(path, f"{len(prompts)} prompts", started)
    return 0


def cmd_eval(args) -> int:
    import numpy as np

    from .data.images import to_uint8_images
    from .evaluate import score_prompts
    from .train import evaluation_prompts

    started = time.perf_counter()
    pipeline = load_pipeline(args)
    if args.prompt_file:
        file = Path(args.prompt_file)
        if not file.is_file():
            raise FileNotFoundError(f"no prompt file at {file}")
        sets = {"file": {"prompts": [line.strip() for line in file.read_text().splitlines()
                                     if line.strip()]}}
        if not sets["file"]["prompts"]:
            raise CommandError(f"{file} holds no prompts (one per line)")
    else:
        splits = ("train", "heldout") if args.split == "both" else (args.split,)
        sets = {split: {kind: prompts for kind, prompts in
                        evaluation_prompts(args.prompts, split).items()
                        if args.kind in (None, kind)} for split in splits}
        if not any(sets.values()):
            raise CommandError(f"the held-out split has no {args.kind} prompts (glyphs have "
                               f"no colour–shape pair to hold out); use --split train")
    options = _sampling_options(args)
    results, everything = {}, {"prompts": [], "pipeline": [], "base_alone": []}
    for split, by_kind in sets.items():
        for kind, prompts in by_kind.items():
            images = {"pipeline": [], "base_alone": []}
            for start in range(0, len(prompts), args.batch_size):
                batch = prompts[start:start + args.batch_size]
                out = pipeline.generate(batch, **options, return_tokens=True)
                images["pipeline"].append(out.images)
                if args.compare_base:
                    images["base_alone"].append(pipeline.base_vq.decode(out.base_tokens).numpy())
            key = f"{split}/{kind}"
            results[key] = {"prompts": len(prompts)}
            everything["prompts"] += prompts
            for which, parts in images.items():
                if parts:
                    images[which] = to_uint8_images(np.concatenate(parts))
                    results[key][which] = score_prompts(prompts, images[which])
                    everything[which].append(images[which])
            print(f"{key} ({len(prompts)} prompts): " + _format_scores(results[key]), flush=True)
    results["overall"] = {"prompts": len(everything["prompts"])}
    for which in ("pipeline", "base_alone"):
        if everything[which]:
            results["overall"][which] = score_prompts(everything["prompts"],
                                                      np.concatenate(everything[which]))
    print(f"overall ({len(everything['prompts'])} prompts): "
          + _format_scores(results["overall"]))
    if args.out:
        settings = {k: v for k, v in options.items() if k != "output"}
        results["settings"] = {"pipeline": str(pipeline_dir(args.pipeline)), **settings}
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=1))
        print(f"wrote {args.out}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


def _format_scores(entry: dict) -> str:
    text = ", ".join(f"{k} {v:.2f}" for k, v in entry["pipeline"].items())
    if "base_alone" in entry:
        text += " | base stage alone: " + ", ".join(f"{k} {v:.2f}"
                                                    for k, v in entry["base_alone"].items())
    return text


def cmd_train(args) -> int:
    from .cascade import more_images, train_cascade, train_more

    schedule = {key: value for key, value in (
        ("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
        ("warmup_steps", args.warmup_steps), ("ema_decay", args.ema)) if value is not None}
    if args.images is not None:
        if args.stage != "tokens":
            raise CommandError(f"--images re-encodes the token caches: use it with --stage "
                               f"tokens, not --stage {args.stage}")
        if args.more_steps is not None or schedule:
            raise CommandError("--images and a transformer stage's schedule (--more-steps, "
                               "--steps, --lr, ...) are two commands: encode the caches with "
                               "--stage tokens --images N first, then train with --stage "
                               "base|superres --more-steps N")
        record = more_images(args.out, args.images, device=args.device, progress=not args.quiet)
    elif args.more_steps is not None:
        if args.steps is not None:
            raise CommandError("--more-steps is already the number of steps; drop --steps")
        record = train_more(args.out, args.stage, args.more_steps, lr=args.lr,
                            warmup_steps=args.warmup_steps, ema=args.ema, device=args.device,
                            progress=not args.quiet, batch_size=args.batch_size)
    else:
        record = train_cascade(args.out, stage=args.stage, preset=args.preset, data=args.data,
                               resume=args.resume, device=args.device,
                               progress=not args.quiet, schedule=schedule)
    stages = ", ".join(f"{name} {entry['seconds']:.0f} s"
                       for name, entry in record["stages"].items())
    print(f"{args.out}: {stages} (total {record.get('seconds', 0) / 60:.1f} min)")
    if "pipeline" in record["stages"]:
        print(f"try it: tinymuse demo --pipeline {args.out}")
    return 0


# --------------------------------------------------------------------------- #
# The parser.
# --------------------------------------------------------------------------- #


def _add_pipeline_options(parser) -> None:
    parser.add_argument("--pipeline", metavar="DIR",
                        help="a saved pipeline or a training run folder (default: the bundled "
                             "weights)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--seed", type=int, default=0, help="same seed, same images")
    parser.add_argument("--scale", type=int, default=1,
                        help="enlarge each pixel into SCALE×SCALE in the PNG (default 1)")


def _add_sampling_options(parser) -> None:
    parser.add_argument("--steps", type=int, default=STEPS[0],
                        help=f"decoding steps of the base stage (default {STEPS[0]})")
    parser.add_argument("--sr-steps", type=int, default=STEPS[1],
                        help=f"decoding steps of the super-resolution stage (default "
                             f"{STEPS[1]})")
    parser.add_argument("--guidance", type=float, default=GUIDANCE[0],
                        help=f"classifier-free guidance scale of the base stage, 0 = none "
                             f"(default {GUIDANCE[0]:g})")
    parser.add_argument("--sr-guidance", type=float, default=GUIDANCE[1],
                        help=f"guidance scale of the super-resolution stage (default "
                             f"{GUIDANCE[1]:g}: it only adds detail to the base stage's picture, "
                             f"and unguided is as accurate and faster)")
    parser.add_argument("--guidance-schedule", choices=GUIDANCE_SCHEDULES,
                        default=GUIDANCE_SCHEDULE[0],
                        help=f"keep the base stage's guidance scale constant, or raise it "
                             f"linearly to the full scale at the last step (default "
                             f"{GUIDANCE_SCHEDULE[0]})")
    parser.add_argument("--sr-guidance-schedule", choices=GUIDANCE_SCHEDULES,
                        default=GUIDANCE_SCHEDULE[1],
                        help=f"the same for the super-resolution stage (default "
                             f"{GUIDANCE_SCHEDULE[1]})")
    parser.add_argument("--temperature", type=float, default=TEMPERATURES[0],
                        help=f"sampling temperature of the base stage (default "
                             f"{TEMPERATURES[0]:g})")
    parser.add_argument("--sr-temperature", type=float, default=TEMPERATURES[1],
                        help=f"sampling temperature of the super-resolution stage (default "
                             f"{TEMPERATURES[1]:g}: the most likely token, which keeps shapes "
                             f"clean)")
    parser.add_argument("--choice-temperature", type=float, default=CHOICE_TEMPERATURES[0],
                        help=f"noise on the confidences that choose which tokens each base "
                             f"step keeps (default {CHOICE_TEMPERATURES[0]:g}: the most "
                             f"confident; MaskGIT used 4.5)")
    parser.add_argument("--sr-choice-temperature", type=float, default=CHOICE_TEMPERATURES[1],
                        help=f"the same for the super-resolution stage (default "
                             f"{CHOICE_TEMPERATURES[1]:g})")


def _add_edit_input(parser) -> None:
    parser.add_argument("image", help="the picture to edit (a PNG or JPEG of the pipeline's "
                                      "size, 64×64)")
    parser.add_argument("prompt", help="what the result should show")
    parser.add_argument("--resize", action="store_true",
                        help="centre-crop and resize the picture to the pipeline's size")


def build_parser() -> argparse.ArgumentParser:
    from .cascade import PRESETS, STAGES
    from .train import PROMPT_KINDS

    parser = argparse.ArgumentParser(
        prog="tinymuse",
        description="Masked generative text-to-image models (Muse), from scratch.")
    parser.add_argument("--version", action="version", version=f"tinymuse {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    demo = commands.add_parser("demo", help="draw a grid of example prompts into one PNG")
    _add_pipeline_options(demo)
    demo.add_argument("--out", default="tinymuse-demo.png")
    demo.add_argument("--steps", type=int, default=STEPS[0])
    demo.add_argument("--sr-steps", type=int, default=STEPS[1])
    demo.add_argument("--guidance", type=float, default=GUIDANCE[0])
    demo.add_argument("--sr-guidance", type=float, default=GUIDANCE[1])
    demo.set_defaults(run=cmd_demo, scale=2)

    generate = commands.add_parser("generate", help="prompt(s) → a PNG (a grid for several)")
    generate.add_argument("prompts", nargs="+", metavar="PROMPT")
    generate.add_argument("--samples", type=int, default=1, help="images per prompt")
    generate.add_argument("--negative", help="a negative prompt: what the image should not be")
    generate.add_argument("--out", default="tinymuse.png")
    _add_pipeline_options(generate)
    _add_sampling_options(generate)
    generate.set_defaults(run=cmd_generate)

    inpaint = commands.add_parser("inpaint", help="redraw a masked region under a prompt")
    _add_edit_input(inpaint)
    inpaint.add_argument("--mask", help="a mask picture of the same size, white = replace")
    inpaint.add_argument("--box", metavar="LEFT,TOP,RIGHT,BOTTOM",
                         help="replace this box of pixels")
    inpaint.add_argument("--negative")
    inpaint.add_argument("--out", default="tinymuse-inpaint.png")
    _add_pipeline_options(inpaint)
    _add_sampling_options(inpaint)
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
    _add_sampling_options(outpaint)
    outpaint.set_defaults(run=cmd_outpaint)

    edit = commands.add_parser("edit", help="mask-free editing towards a new prompt")
    _add_edit_input(edit)
    edit.add_argument("--iterations", type=int, default=30)
    edit.add_argument("--fraction", type=float, default=0.08,
                      help="share of tokens resampled per iteration (Muse: 0.08)")
    edit.add_argument("--guidance", type=float, default=4.0, help="Muse: 4")
    edit.add_argument("--sr-guidance", type=float,
                      help="the super-resolution stage's (default: --guidance)")
    edit.add_argument("--temperature", type=float, default=1.0)
    edit.add_argument("--top-k", type=int, default=3)
    edit.add_argument("--sr-steps", type=int, default=STEPS[1])
    edit.add_argument("--out", default="tinymuse-edit.png")
    _add_pipeline_options(edit)
    edit.set_defaults(run=cmd_edit)

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
    _add_sampling_options(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    train = commands.add_parser("train", help="train one stage of the cascade, or all of them")
    train.add_argument("--stage", default="all", choices=("all",) + STAGES)
    train.add_argument("--out", required=True, help="the run folder")
    train.add_argument("--data", default="shapes",
                       help="'shapes' (the built-in shapes world) or a folder of image-caption "
                            "pairs")
    train.add_argument("--preset", default="default", choices=tuple(PRESETS))
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
    return parser


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split()) or type(error).__name__
    if isinstance(error, KeyboardInterrupt):
        return "interrupted"
    return message


_SCALES = {"guidance": "no guidance", "temperature": "always the most likely token",
           "choice_temperature": "keep the most confident tokens"}


def _check_scales(args) -> None:
    """Guidance scales, temperatures and decoding steps are checked here too, so that the
    message names the flag (``train`` has a ``--steps`` of its own, checked by the trainer)."""
    for name, zero in _SCALES.items():
        for flag in (name, f"sr_{name}"):
            value = getattr(args, flag, None)
            if value is not None and not value >= 0:
                raise CommandError(f"--{flag.replace('_', '-')} must be a number >= 0 (0: "
                                   f"{zero}), got {value}")
    if args.command != "train":
        for flag in ("steps", "sr_steps"):
            value = getattr(args, flag, None)
            if value is not None and value < 1:
                raise CommandError(f"--{flag.replace('_', '-')} is a number of decoding steps "
                                   f"and must be at least 1, got {value}")


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
        _check_scales(args)
        return args.run(args)
    except expected as error:
        if args.debug:
            raise
        print(f"tinymuse: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tinymuse: interrupted (a training run continues with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
