"""The commands that draw: ``demo``, ``generate``, ``inpaint``, ``outpaint`` and ``edit``.

Each one checks everything it can before drawing (the output name, the settings against the
pipeline's grids, the prompts' words), then draws with a progress bar and writes one PNG that
records how it was made; ``generate --steps-gif / --steps-grid`` also writes the decoding, step
by step (:mod:`tinymuse.cli.steps`).
"""
from __future__ import annotations

import time
from pathlib import Path

from .limits import DRAW_BATCH, MAX_IMAGES
from .options import (CommandError, check_grids, command_prompts, edit_settings,
                      generation_settings, load_pipeline, note, prompt_notes, shown,
                      written_prompts)
from .outputs import Progress, check_picture_size, done, output_path, parameters, write_pictures
from .steps import check_steps_size, step_names, steps_outputs, write_steps

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


def prepared_prompts(pipeline, prompts, options: dict) -> list[str]:
    """The prompts as the pipeline should read them, checked before a long draw starts: in
    their written form (:func:`~tinymuse.cli.options.written_prompts`; the negative prompt in
    ``options`` too), every word known to the pipeline (else one error now), and a note for
    each prompt that will not draw what its writer may expect."""
    from ..text.tokenizer import OutOfVocabularyError

    prompts = written_prompts(prompts, pipeline)
    negative = options.get("negative_prompt")
    if negative is not None:
        negative = options["negative_prompt"] = written_prompts([negative], pipeline)[0]
    tokenizer = pipeline.tokenizer
    for prompt in prompts + ([negative] if negative else []):
        if tokenizer.known_words is None:
            continue
        try:
            tokenizer.check_words(prompt)
        except OutOfVocabularyError as error:
            raise OutOfVocabularyError(error.word, prompt, error.known,
                                       f"unknown word {error.word!r} in {shown(prompt)}: the "
                                       f"pipeline's training captions never used it; "
                                       f"`tinymuse vocab` lists the {len(error.known)} words "
                                       f"it knows") from None
    for text in prompt_notes(prompts, pipeline):
        note(text)
    for text in prompt_notes([negative] if negative is not None else [], pipeline,
                             "negative prompt"):
        note(text)
    return prompts


def draw(pipeline, prompts: list[str], options: dict, quiet: bool, keep_steps: bool = False):
    """``prompts`` drawn :data:`DRAW_BATCH` at a time (memory stays flat however many) from one
    generator, so a batch of at most that many is exactly one ``Pipeline.generate`` call.
    With ``keep_steps`` it returns ``(images, frames)``: ``frames`` holds the pictures of every
    decoding step of both stages (:func:`tinymuse.step_pictures.decoding_frames`), one uint8
    array (len(prompts), S, S, 3) per step; the images are the same either way."""
    import numpy as np

    from ..step_pictures import decoding_frames

    generator = pipeline.generator(options.pop("seed"))
    batches = range(0, len(prompts), DRAW_BATCH)
    steps = options["base"].steps + options["superres"].steps
    progress = Progress(len(batches) * steps, "drawing", quiet)
    try:
        parts = [pipeline.generate(prompts[start:start + DRAW_BATCH], seed=generator,
                                   output="uint8", return_steps=keep_steps, callback=progress,
                                   **options)
                 for start in batches]
    finally:
        progress.close()
    if not keep_steps:
        return np.concatenate(parts)
    per_batch = [decoding_frames(pipeline, part) for part in parts]
    return (np.concatenate([part.images for part in parts]),
            [np.concatenate(step) for step in zip(*per_batch)])


def cmd_demo(args) -> int:
    from ..text.tokenizer import OutOfVocabularyError

    started = time.perf_counter()
    out = output_path(args)
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    check_grids(pipeline, options["base"], options["superres"])
    try:
        prompts = prepared_prompts(pipeline, DEMO_PROMPTS, options)
    except OutOfVocabularyError as error:
        raise CommandError(f"the demo's prompts are shapes-world captions, and this pipeline "
                           f"never read the word {error.word!r}: draw prompts like its own "
                           f"training captions with tinymuse generate --pipeline "
                           f"{args.pipeline} \"...\"") from None
    check_picture_size(len(DEMO_PROMPTS), 4, pipeline.image_size, args.scale)
    recorded = parameters(args, "demo", prompts=prompts, base=options["base"],
                          superres=options["superres"])
    images = draw(pipeline, prompts, options, args.quiet)
    path = write_pictures(images, out, args, 4, recorded, labels=prompts)
    done(path, f"{len(DEMO_PROMPTS)} prompts", started)
    return 0


def cmd_generate(args) -> int:
    started = time.perf_counter()
    prompts = command_prompts(args)
    count = len(prompts) * args.samples
    if count > MAX_IMAGES:
        raise CommandError(f"{len(prompts)} prompt(s) × --samples {args.samples} is {count} "
                           f"images, more than the {MAX_IMAGES} one command draws: split them "
                           f"into several commands, each with its own --seed")
    out = output_path(args)
    step_files = steps_outputs(args, out)
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    base_steps, superres_steps = options["base"].steps, options["superres"].steps
    check_grids(pipeline, options["base"], options["superres"])
    prompts = prepared_prompts(pipeline, prompts, options)
    per_row = args.samples if len(prompts) > 1 and args.samples > 1 else min(8, count)
    check_picture_size(count, per_row, pipeline.image_size, args.scale)
    check_steps_size(args, count, per_row, pipeline.image_size, base_steps + superres_steps)
    recorded = parameters(args, "generate", prompts=prompts, samples=args.samples,
                          negative_prompt=options.get("negative_prompt"), base=options["base"],
                          superres=options["superres"])
    every = [prompt for prompt in prompts for _ in range(args.samples)]
    labels = every if args.labels else None
    keep_steps = any(path is not None for path in step_files)
    drawn = draw(pipeline, every, options, args.quiet, keep_steps)
    images, frames = drawn if keep_steps else (drawn, None)
    path = write_pictures(images, out, args, per_row, recorded, labels=labels)
    done(path, f"{len(images)} image(s)", started)
    if keep_steps:
        names = step_names(base_steps, superres_steps)
        for written in write_steps(frames, names, step_files, args, per_row, recorded, labels):
            print(f"wrote {written} (the decoding, {len(names)} steps)")
    return 0


# --------------------------------------------------------------------------- #
# Editing a picture.
# --------------------------------------------------------------------------- #


def read_image(path: str, size: int, resize: bool):
    """A picture file (checked to exist by the caller) as uint8 (1, size, size, 3); with
    ``resize`` it is centre-cropped and resized, otherwise it must already be
    ``size``×``size``."""
    from ..data import load_square_image
    from ..data.images import read_picture

    file = Path(path)
    if resize:
        return load_square_image(file, size)[None]
    picture = read_picture(file)
    if picture.shape[:2] != (size, size):
        raise CommandError(f"{file} is {picture.shape[1]}×{picture.shape[0]} pixels; this "
                           f"pipeline works on {size}×{size}. Pass --resize to centre-crop "
                           f"and resize it")
    return picture[None]


def numbers(text: str, count: int, what: str) -> tuple:
    """``"0,24"`` → ``(0, 24)``: ``count`` whole numbers separated by commas."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if len(values) != count:
        raise CommandError(f"{what} takes {count} whole numbers separated by commas, got "
                           f"{text!r}")
    return values


def _box_mask(box: str, size: int):
    import numpy as np

    left, top, right, bottom = numbers(box, 4, "--box")
    if not (0 <= left < right <= size and 0 <= top < bottom <= size):
        raise CommandError(f"--box {box} is not a box inside the {size}×{size} image "
                           f"(0 <= LEFT < RIGHT <= {size}, 0 <= TOP < BOTTOM <= {size})")
    mask = np.zeros((size, size), bool)
    mask[top:bottom, left:right] = True
    return mask


def _redraw_picture(args, command: str, inputs, edit, **where) -> int:
    """The common path of the editing commands: check, read the picture, ``edit(pipeline,
    image, options, callback)``, write."""
    started = time.perf_counter()
    for given in inputs:
        if given is not None and not Path(given).is_file():
            raise CommandError(f"no image file at {given}")
    out = output_path(args, inputs=inputs)
    options = edit_settings(args) if command == "edit" else generation_settings(args)
    pipeline = load_pipeline(args)
    check_grids(pipeline, options["base"], options["superres"])
    args.prompt = prepared_prompts(pipeline, [args.prompt], options)[0]
    check_picture_size(1, 1, pipeline.image_size, args.scale)
    image = read_image(args.image, pipeline.image_size, args.resize)
    recorded = parameters(args, command, prompt=args.prompt, input=str(args.image),
                          negative_prompt=options.get("negative_prompt"), base=options["base"],
                          superres=options["superres"], **where)
    first = options["base"].iterations if command == "edit" else options["base"].steps
    progress = Progress(first + options["superres"].steps, command, args.quiet)
    try:
        images = edit(pipeline, image, options, progress)
    finally:
        progress.close()
    done(write_pictures(images, out, args, 1, recorded), command, started)
    return 0


def cmd_inpaint(args) -> int:
    if (args.mask is None) == (args.box is None):
        raise CommandError("inpaint needs exactly one of --mask MASK.png (white = replace) and "
                           "--box LEFT,TOP,RIGHT,BOTTOM (pixels)")

    def inpaint(pipeline, image, options, callback):
        mask = args.mask if args.box is None else _box_mask(args.box, pipeline.image_size)
        return pipeline.inpaint(image, mask, args.prompt, output="uint8", callback=callback,
                                **options)
    return _redraw_picture(args, "inpaint", (args.image, args.mask), inpaint,
                           mask=args.mask, box=args.box)


def cmd_outpaint(args) -> int:
    if (args.shift is None) == (args.extend is None):
        raise CommandError("outpaint needs exactly one of --shift DY,DX (move the picture) and "
                           "--extend TOP,BOTTOM,LEFT,RIGHT (add margins and zoom out)")
    where = ({"shift": numbers(args.shift, 2, "--shift")} if args.shift is not None
             else {"extend": numbers(args.extend, 4, "--extend")})

    def outpaint(pipeline, image, options, callback):
        return pipeline.outpaint(image, args.prompt, output="uint8", callback=callback,
                                 **where, **options)
    return _redraw_picture(args, "outpaint", (args.image,), outpaint, **where)


def cmd_edit(args) -> int:
    def edit(pipeline, image, options, callback):
        return pipeline.edit(image, args.prompt, output="uint8", callback=callback, **options)
    return _redraw_picture(args, "edit", (args.image,), edit)
