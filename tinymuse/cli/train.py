"""``tinymuse train``: the cascade's stages in one run folder (:mod:`tinymuse.cascade`)."""
from __future__ import annotations

import shlex
from pathlib import Path

from .options import CommandError


def cmd_train(args) -> int:
    from ..cascade import PRESETS, changed, load_record, more_images, train_cascade, train_more

    schedule = {key: value for key, value in (
        ("steps", args.steps), ("batch_size", args.batch_size), ("lr", args.lr),
        ("warmup_steps", args.warmup_steps), ("ema_decay", args.ema)) if value is not None}
    progress = not args.quiet
    if Path(args.out).exists() and not Path(args.out).is_dir():
        raise CommandError(f"--out {args.out} is a file; a run is a folder: give a new folder's "
                           f"name, or a run's folder")
    if args.images is not None:
        if args.stage != "tokens":
            raise CommandError(f"--images re-encodes the token caches: use it with --stage "
                               f"tokens, not --stage {args.stage}")
        if args.more_steps is not None or schedule or args.set:
            raise CommandError("--images and a stage's training settings (--more-steps, "
                               "--steps, --lr, --set, ...) are two commands: encode the caches "
                               "with --stage tokens --images N first, then train with --stage "
                               "base|superres|ar-base --more-steps N")
        record = more_images(args.out, args.images, device=args.device, progress=progress)
    elif args.more_steps is not None:
        if args.steps is not None or args.set:
            raise CommandError("--more-steps continues a finished stage with its own sizes: "
                               "drop --steps (--more-steps is the number of steps) and --set")
        record = train_more(args.out, args.stage, args.more_steps, lr=args.lr,
                            warmup_steps=args.warmup_steps, ema=args.ema, device=args.device,
                            progress=progress, batch_size=args.batch_size)
    else:
        started = load_record(args.out)  # None for a new folder
        name = args.preset or (started["preset"]["name"] if started else "default")
        if name not in PRESETS:
            raise CommandError(f"{args.out} was trained with preset {name!r}, which this "
                               f"version has no longer; train a new run with --preset "
                               f"{' or '.join(PRESETS)}")
        preset = changed(PRESETS[name], args.set) if args.set else name
        if args.set and started:
            _refuse_changed_values(args.out, started, args.set, preset)
        record = train_cascade(args.out, stage=args.stage, preset=preset, data=args.data,
                               resume=args.resume, device=args.device, progress=progress,
                               schedule=schedule)
    stages = ", ".join(f"{name} {entry['seconds']:.0f} s"
                       for name, entry in record["stages"].items())
    print(f"{args.out}: {stages} (total {record.get('seconds', 0) / 60:.1f} min)")
    if "pipeline" in record["stages"]:
        print(f"try it: {try_it(args.out, record.get('data', 'shapes'))}")
    return 0


def _refuse_changed_values(out, record: dict, assignments, preset) -> None:
    """A started run keeps the values it was started with, so that its stages fit together
    (later ``--stage`` calls need no ``--preset`` again): a ``--set`` that would change one
    of them is refused, not quietly ignored."""
    from ..cascade import preset_differences

    differing = preset_differences(record, preset)
    for key in dict.fromkeys(a.partition("=")[0].partition(".")[0] for a in assignments):
        if key in differing:
            then, now = differing[key]
            raise CommandError(f"{out} was started with {key}={then!r}, not {now!r}, and a run "
                               f"keeps its values; --set changes a new run only: give a new "
                               f"--out")


def try_it(out, data: str) -> str:
    """A first command for a finished run: the demo for the shapes world, a caption of the
    run's own pictures for a folder of them (the demo's words would be unknown to it)."""
    if data == "shapes":
        return f"tinymuse demo --pipeline {shlex.quote(str(out))}"
    from ..data import ImageCaptionFolder

    caption = ImageCaptionFolder(data, resolution=8).caption(0)
    return f"tinymuse generate --pipeline {shlex.quote(str(out))} {shlex.quote(caption)}"
