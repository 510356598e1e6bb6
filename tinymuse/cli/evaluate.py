"""``tinymuse eval``: the oracle's accuracy per attribute, prompt kind by prompt kind."""
from __future__ import annotations

import dataclasses
import json
import time

from .options import (CommandError, check_grids, generation_settings, load_pipeline,
                      pipeline_dir, read_prompt_file)
from .outputs import Progress, output_path, write_file


def _prompt_sets(args) -> dict:
    """The prompts ``tinymuse eval`` scores, by set name (``train/single``, ...)."""
    from ..evaluate import evaluation_prompts

    if args.prompt_file:
        return {"file/prompts": read_prompt_file(args.prompt_file)}
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
    from ..evaluate import score_pipeline

    started = time.perf_counter()
    out = output_path(args, suffix=".json") if args.out else None
    sets = _prompt_sets(args)
    options = generation_settings(args)
    pipeline = load_pipeline(args)
    check_grids(pipeline, options["base"], options["superres"])
    batches = sum(-(-len(prompts) // args.batch_size) for prompts in sets.values())
    progress = Progress(batches * (options["base"].steps + options["superres"].steps),
                        "scoring", args.quiet)

    def report(name, entry):
        progress.bar.clear()
        print(f"{name} ({entry['prompts']} prompts): " + _format_scores(entry), flush=True)

    try:
        results = score_pipeline(pipeline, sets, batch_size=args.batch_size,
                                 compare_base=args.compare_base, report=report,
                                 callback=progress, **options)
    finally:
        progress.close()
    print(f"overall ({results['overall']['prompts']} prompts): "
          + _format_scores(results["overall"]))
    if out is not None:
        results["settings"] = {"pipeline": str(pipeline_dir(args.pipeline)), "seed": args.seed,
                               "base": dataclasses.asdict(options["base"]),
                               "superres": dataclasses.asdict(options["superres"])}
        write_file(out, json.dumps(results, indent=1).encode(), args.overwrite,
                   "the prompts were scored")
        print(f"wrote {out}")
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0
