"""Time the operations that share their element-wise work over the CPU's threads, on one
thread and on all of them, in one process.

    python benchmarks/cpu_threads.py                 # threads: the machine's cores
    python benchmarks/cpu_threads.py --threads 4 --repeats 50

:func:`tinymuse.backend.run_in_parallel` reads the thread count
(:func:`tinymuse.backend.cpu_threads`) at every call, so this script sets it to 1 and to
``--threads`` in turn, round after round, and the two columns share the machine's state; the
BLAS keeps the threads it started with. Each row is the best round of each setting, in ms:
GELU's forward over the transformer benchmark's MLP activations (``train_step.py``: 2560 × 1024),
a fused AdamW step over 3.2 M parameters, and im2col and col2im of a VQ convolution (batch 32,
32 channels, 32 × 32, 3 × 3 kernel), with the speed-up of the threads.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse import backend, nn, optim  # noqa: E402
from tinymuse.ops import elementwise, nn as conv_ops  # noqa: E402


def operations(rng):
    """Name → a function that runs the operation once."""
    z = rng.standard_normal((2560, 1024)).astype(np.float32)
    layer = nn.Linear(1792, 1792)                                # 3.2 M parameters
    adamw = optim.AdamW(layer.parameters(), lr=1e-3, fused=True)
    for p in layer.parameters():
        p.grad = rng.standard_normal(p.shape).astype(np.float32)
    image = rng.standard_normal((32, 32, 34, 34)).astype(np.float32)   # padded 32 × 32
    geometry = ((3, 3), (1, 1), (32, 32))
    cols = conv_ops._im2col(image, *geometry)
    return {
        "GELU forward (2560 × 1024)": lambda: elementwise.gelu_forward_rows(z),
        "AdamW step, fused (3.2 M)": adamw.step,
        "im2col (32, 32, 32², 3 × 3)": lambda: conv_ops._im2col(image, *geometry),
        "col2im (32, 32, 32², 3 × 3)": lambda: conv_ops._col2im(cols, image.shape, *geometry),
    }


def best_ms(run, threads: int, repeats: int) -> float:
    os.environ["OPENBLAS_NUM_THREADS"] = str(threads)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None,
                        help="the second column's threads (default: the usable cores)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=10, help="runs per round and setting")
    args = parser.parse_args()
    for name in backend.THREAD_VARIABLES:
        os.environ.pop(name, None)
    threads = args.threads or backend.cpu_threads()
    timings = {}
    for name, run in operations(np.random.default_rng(0)).items():
        run()                                                     # first-use allocations
        rounds = [(best_ms(run, 1, args.repeats), best_ms(run, threads, args.repeats))
                  for _ in range(args.rounds)]
        timings[name] = tuple(min(column) for column in zip(*rounds))
    print(f"{'operation':30s} {'1 thread':>10s} {f'{threads} threads':>11s}  speed-up")
    for name, (one, many) in timings.items():
        print(f"{name:30s} {one:8.2f} ms {many:8.2f} ms  {one / many:5.2f}×")
    return 0


if __name__ == "__main__":
    sys.exit(main())
