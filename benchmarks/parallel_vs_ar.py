"""Parallel decoding against autoregressive decoding: quality, speed, and the arithmetic.

    python benchmarks/parallel_vs_ar.py [--quick] [--per-kind 32] [--plot FILE.png]

Trains nothing: the parallel side is the bundled base stage, the autoregressive side the
bundled baseline (``tinymuse/assets/autoregressive.safetensors``: the same text encoder,
blocks, widths and 8×8 tokens, drawn one token per call in raster order).

1. Quality: both draw the same prompts with the same seed (the parallel stage in its default
   ``BASE`` steps, the baseline in 64, one per token, with ``AUTOREGRESSIVE``: ``BASE``'s
   guidance at a lower temperature), the base VQ decodes each grid to its 32×32 picture, and the shapes oracle
   checks it. Each score comes with its 95% Wilson interval, and the difference with the
   standard error of a paired difference (the same prompts on both sides).
2. Speed: wall time per image (the median of ``--repeats``) and model calls, one image at a
   time and in a batch (and, once, the baseline without its key/value cache, one image), for
   8×8 grids (the bundled models) and 16×16 grids. At 16×16 both
   models have the super-resolution stage's width, depth and codebook (without its
   low-resolution reader, which the baseline does not have) and *untrained* weights: a
   decoding step's time does not depend on the weights' values, so these rows time the
   arithmetic of a real 16×16 model; they score nothing. At 16×16 the parallel side takes
   ``SUPERRES``'s steps, both sides ``BASE``'s guidance.
3. The cost curve: the parallel stage at 1, 2, 4, 8, 12, 16, 24, 32 and 64 steps, oracle
   "all" against time per image (batched), with the baseline as one more point; drawn to
   ``--plot`` as a PNG.
4. The arithmetic: multiply-adds per image of each method (``tinymuse.models.arithmetic``).

The last line reads ``parallel/autoregressive: speedup S8 at 8x8, S16 at 16x16; oracle all P
(parallel) A (autoregressive)``, with the speedups of single-image wall time. ``--quick``
scores fewer prompts and repeats less (well under 10 minutes on 2 CPU cores).
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tinymuse import backend, nn
from tinymuse.data.images import to_uint8_images
from tinymuse.decoding import sample_stage
from tinymuse.evaluate.oracle import score_image
from tinymuse.evaluate.prompts import evaluation_prompts
from tinymuse.evaluate.stats import paired_difference, wilson_interval
from tinymuse.models import (AutoregressiveConfig, AutoregressiveTransformer, BaseTransformer,
                             BaseTransformerConfig)
from tinymuse.models.arithmetic import autoregressive_multiply_adds, parallel_multiply_adds
from tinymuse.pipeline import Pipeline
from tinymuse.pipeline_files import load_baseline
from tinymuse.raster import sample_raster
from tinymuse.sampling import AUTOREGRESSIVE, BASE, SUPERRES
from tinymuse.tensor import no_grad

CURVE_STEPS = (1, 2, 4, 8, 12, 16, 24, 32, 64)


def verdicts(pipeline, prompts, tokens) -> list[bool]:
    """The oracle's "all" verdict on each prompt's 32×32 picture."""
    with nn.evaluation_mode(pipeline.base_vq):
        pictures = to_uint8_images(pipeline.base_vq.decode(tokens).numpy())
    return [score_image(prompt, picture).all for prompt, picture in zip(prompts, pictures)]


def draw_parallel(model, prompts, settings, seed=0, batch=64):
    return np.concatenate([sample_stage(model, prompts[i:i + batch], settings,
                                        generator=backend.Generator([seed, i])).tokens
                           for i in range(0, len(prompts), batch)])


def draw_raster(model, prompts, settings, seed=0, batch=64, use_cache=True):
    return np.concatenate([sample_raster(model, prompts[i:i + batch], settings,
                                         generator=backend.Generator([seed, i]),
                                         use_cache=use_cache).tokens
                           for i in range(0, len(prompts), batch)])


def timed(draw, repeats: int) -> float:
    """The median wall time of ``draw()`` over ``repeats`` calls, after one warm-up call."""
    draw()
    seconds = []
    for _ in range(repeats):
        started = time.perf_counter()
        draw()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds)


def interval(successes: int, n: int) -> str:
    low, high = wilson_interval(successes, n)
    return f"{successes / n:.2f} [{low:.2f}, {high:.2f}]"


def quality(pipeline, baseline, prompts) -> tuple[list[bool], list[bool], float, float]:
    print(f"\n1. quality: {len(prompts)} prompts (evaluation_prompts, every kind), one seed; "
          f"the oracle on the base stage's 32×32 pictures")
    started = time.perf_counter()
    parallel = verdicts(pipeline, prompts, draw_parallel(pipeline.base, prompts, BASE))
    parallel_seconds = time.perf_counter() - started
    started = time.perf_counter()
    raster = verdicts(pipeline, prompts, draw_raster(baseline, prompts, AUTOREGRESSIVE))
    raster_seconds = time.perf_counter() - started
    n = len(prompts)
    print(f"   parallel, {BASE.steps} steps:        oracle all {interval(sum(parallel), n)}")
    print(f"   autoregressive, 64 steps:  oracle all {interval(sum(raster), n)}")
    difference, error = paired_difference(parallel, raster)
    print(f"   parallel − autoregressive: {difference:+.3f} ± {1.96 * error:.3f} (95%, paired)")
    return parallel, raster, parallel_seconds, raster_seconds


def sixteen_models(pipeline):
    """Untrained 16×16 models of the super-resolution stage's size, parallel and
    autoregressive, reading the bundled text encoder."""
    sr = pipeline.superres.config
    sizes = dict(codebook_size=sr.codebook_size, grid_size=16, d_model=sr.d_model,
                 num_layers=sr.num_layers, num_heads=sr.num_heads, mlp_ratio=sr.mlp_ratio,
                 text=pipeline.text_encoder.config)
    parallel = BaseTransformer(BaseTransformerConfig(**sizes), text_encoder=pipeline.text_encoder,
                               tokenizer=pipeline.tokenizer, generator=backend.Generator(0))
    raster = AutoregressiveTransformer(AutoregressiveConfig(**sizes),
                                       text_encoder=pipeline.text_encoder,
                                       tokenizer=pipeline.tokenizer,
                                       generator=backend.Generator(1))
    return parallel, raster


def speed(pipeline, baseline, repeats: int, batch: int) -> dict:
    print(f"\n2. speed: wall time per image, median of {repeats}; guidance on both sides "
          f"(each call runs a conditional and an unconditional row per image)")
    big_parallel, big_raster = sixteen_models(pipeline)
    rows = {"8x8": (pipeline.base, baseline, BASE),
            "16x16": (big_parallel, big_raster, BASE.replace(steps=SUPERRES.steps))}
    prompts = ["a red circle to the left of a blue square"] * batch
    print(f"   {'grid':6} {'method':16} {'calls':>6} {'1 image':>10} {f'batch {batch}':>12}")
    single = {}
    for grid, (parallel, raster, settings) in rows.items():
        tokens = parallel.config.num_tokens
        note = "" if grid == "8x8" else "   (untrained weights: time only)"
        for name, draw, calls in (("parallel", draw_parallel, settings.steps),
                                  ("autoregressive", draw_raster, tokens)):
            model = parallel if name == "parallel" else raster
            one = timed(lambda d=draw, m=model: d(m, prompts[:1], settings), repeats)
            many = timed(lambda d=draw, m=model: d(m, prompts, settings), repeats) / batch
            single[grid, name] = one
            print(f"   {grid:6} {name:16} {calls:6d} {one * 1e3:8.1f} ms {many * 1e3:9.1f} ms"
                  f"{note}")
        uncached = timed(lambda: draw_raster(raster, prompts[:1], settings, use_cache=False), 1)
        print(f"   {grid:6} {'AR, no cache':16} {tokens:6d} {uncached * 1e3:8.1f} ms "
              f"{'—':>12}{note}")
    return single


def curve(pipeline, prompts, raster_verdicts, raster_seconds, plot: Path | None) -> None:
    print(f"\n3. the cost curve: the parallel stage at {', '.join(map(str, CURVE_STEPS))} "
          f"steps on the same {len(prompts)} prompts (time per image, batches of 64)")
    points = []
    for steps in CURVE_STEPS:
        started = time.perf_counter()
        tokens = draw_parallel(pipeline.base, prompts, BASE.replace(steps=steps))
        seconds = (time.perf_counter() - started) / len(prompts)
        score = float(np.mean(verdicts(pipeline, prompts, tokens)))
        points.append((steps, seconds, score))
        print(f"   {steps:3d} steps: oracle all {score:.2f}   {seconds * 1e3:7.1f} ms per image")
    ar_point = (64, raster_seconds / len(prompts), float(np.mean(raster_verdicts)))
    print(f"   autoregressive (64 steps): oracle all {ar_point[2]:.2f}   "
          f"{ar_point[1] * 1e3:7.1f} ms per image")
    if plot is not None:
        draw_curve(points, ar_point, plot)
        print(f"   drawn to {plot}")


def draw_curve(points, ar_point, path: Path) -> None:
    """Oracle "all" against milliseconds per image (log scale), a labelled dot per run."""
    width, height, margin = 640, 400, 60
    picture = Image.new("RGB", (width, height), "white")
    pen = ImageDraw.Draw(picture)
    times = [p[1] for p in points] + [ar_point[1]]
    low, high = math.log10(min(times) / 1.5), math.log10(max(times) * 1.5)

    def at(seconds, score):
        x = margin + (math.log10(seconds) - low) / (high - low) * (width - 2 * margin)
        return x, height - margin - score * (height - 2 * margin)

    pen.rectangle([margin, margin, width - margin, height - margin], outline="black")
    for score in (0.0, 0.25, 0.5, 0.75, 1.0):
        _, y = at(times[0], score)
        pen.text((8, y - 6), f"{score:.2f}", fill="black")
    for exponent in range(math.ceil(low), math.floor(high) + 1):
        x, _ = at(10 ** exponent, 0)
        pen.line([x, height - margin, x, height - margin + 5], fill="black")
        pen.text((x - 18, height - margin + 8), f"{10 ** exponent * 1e3:g} ms", fill="black")
    pen.text((margin, 20), "oracle 'all' against time per image (batched); blue: parallel "
             "steps, red: autoregressive", fill="black")
    line = [at(s, score) for _, s, score in points]
    pen.line(line, fill=(70, 110, 200), width=2)
    for (steps, seconds, score), (x, y) in zip(points, line):
        pen.ellipse([x - 4, y - 4, x + 4, y + 4], fill=(70, 110, 200))
        pen.text((x + 6, y + 4), str(steps), fill="black")
    x, y = at(ar_point[1], ar_point[2])
    pen.ellipse([x - 5, y - 5, x + 5, y + 5], fill=(210, 50, 50))
    pen.text((x + 7, y - 14), "AR, 64", fill=(210, 50, 50))
    picture.save(path)


def arithmetic(pipeline, baseline, text_length: int) -> None:
    print(f"\n4. the arithmetic: multiply-adds per image, guided (two rows), a caption of "
          f"{text_length} tokens")
    big_parallel, big_raster = sixteen_models(pipeline)
    for grid, parallel, raster, steps in (("8x8", pipeline.base, baseline, BASE.steps),
                                          ("16x16", big_parallel, big_raster, SUPERRES.steps)):
        p = parallel_multiply_adds(parallel.config, steps, text_length)
        cached = autoregressive_multiply_adds(raster.config, text_length, cached=True)
        uncached = autoregressive_multiply_adds(raster.config, text_length, cached=False)
        print(f"   {grid:6} parallel, {steps} steps: {p / 1e6:7.1f} M   autoregressive: "
              f"{cached / 1e6:6.1f} M with the cache, {uncached / 1e6:7.1f} M without   "
              f"(parallel/cached = {p / cached:.1f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer prompts and repeats")
    parser.add_argument("--per-kind", type=int, default=None,
                        help="prompts of each kind (default 32; 8 with --quick)")
    parser.add_argument("--repeats", type=int, default=None, help="timing repeats (5; 3)")
    parser.add_argument("--batch", type=int, default=32, help="the batched rows' batch size")
    parser.add_argument("--plot", type=Path, default=None, help="draw the cost curve here")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="an autoregressive baseline saved by save_baseline (default: the "
                             "bundled one)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --plot")
    args = parser.parse_args()
    if args.plot is not None and args.plot.exists() and not args.overwrite:
        sys.exit(f"{args.plot} exists; pass --overwrite to replace it, or choose another --plot")
    per_kind = args.per_kind or (8 if args.quick else 32)
    repeats = args.repeats or (3 if args.quick else 5)

    pipeline = Pipeline.from_pretrained()
    baseline = load_baseline(pipeline, args.baseline)
    prompts = [p for kind in evaluation_prompts(per_kind).values() for p in kind]
    parallel, raster, _, raster_seconds = quality(pipeline, baseline, prompts)
    single = speed(pipeline, baseline, repeats, args.batch)
    curve(pipeline, prompts, raster, raster_seconds, args.plot)
    with no_grad():  # the text positions cross-attention reads: [CLS] and the pieces
        context = pipeline.base.encode_prompts(["a red circle to the left of a blue square"])
    arithmetic(pipeline, baseline, text_length=context.embeddings.shape[1])
    s8 = single["8x8", "autoregressive"] / single["8x8", "parallel"]
    s16 = single["16x16", "autoregressive"] / single["16x16", "parallel"]
    print(f"parallel/autoregressive: speedup {s8:.1f} at 8x8, {s16:.1f} at 16x16; oracle all "
          f"{np.mean(parallel):.2f} (parallel) {np.mean(raster):.2f} (autoregressive)")


if __name__ == "__main__":
    main()
