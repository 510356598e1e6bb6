"""How long `tinymuse demo` and `tinymuse generate` take.

    python benchmarks/demo_time.py [--pipeline DIR] [--repeats 3]

1. ``tinymuse demo`` as a user runs it: a fresh Python process (import, loading the bundled
   weights, drawing the 16 example prompts, writing the PNG), wall-clock seconds; the best and
   the median of ``--repeats`` runs.
2. ``generate`` per image, inside one process with the pipeline already loaded: one prompt at
   a time (the latency a user of ``tinymuse generate "..."`` waits for, minus start-up), and a
   batch of 16 prompts divided by 16 (the cost per image when prompts are batched), at the
   command's default settings (``tinymuse.sampling.BASE`` and ``SUPERRES``: 24 base steps,
   8 super-resolution steps, only the base stage guided), and with both stages guided at
   the base stage's scale.

A benchmark measures; no test asserts a time.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def time_demo(pipeline: str | None, repeats: int) -> list[float]:
    seconds = []
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-m", "tinymuse", "demo", "--out", str(Path(folder) / "d.png"),
                   "--overwrite", "--quiet"]
        if pipeline:
            command += ["--pipeline", pipeline]
        for _ in range(repeats):
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            seconds.append(time.perf_counter() - started)
    return seconds


def time_generate(pipeline_dir: str | None, repeats: int, superres) -> dict:
    from tinymuse.cli import DEMO_PROMPTS
    from tinymuse.pipeline import Pipeline

    pipeline = Pipeline.from_pretrained(pipeline_dir)
    options = dict(superres=superres, output="uint8")  # the default steps
    pipeline.generate(["a red circle"], seed=0, **options)  # warm-up
    single = []
    for i in range(repeats):
        started = time.perf_counter()
        pipeline.generate([DEMO_PROMPTS[i % len(DEMO_PROMPTS)]], seed=i, **options)
        single.append(time.perf_counter() - started)
    batched = []
    for i in range(repeats):
        started = time.perf_counter()
        pipeline.generate(list(DEMO_PROMPTS), seed=i, **options)
        batched.append((time.perf_counter() - started) / len(DEMO_PROMPTS))
    return {"one prompt": single, f"batch of {len(DEMO_PROMPTS)}, per image": batched}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", help="a pipeline directory (default: the bundled one)")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU threads, "
          f"Python {platform.python_version()}")
    demo = time_demo(args.pipeline, args.repeats)
    print(f"tinymuse demo (fresh process): best {min(demo):.2f} s, median "
          f"{statistics.median(demo):.2f} s")
    from tinymuse.sampling import BASE, SUPERRES

    for superres in (SUPERRES, SUPERRES.replace(guidance_scale=BASE.guidance_scale)):
        label = f"guidance {BASE.guidance_scale:g} + {superres.guidance_scale:g}"
        for name, values in time_generate(args.pipeline, args.repeats, superres).items():
            print(f"generate, {name} ({label}): best {min(values):.3f} s, median "
                  f"{statistics.median(values):.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
