"""Time one training step of an MLP, tinymuse against PyTorch (CPU, eager), in one run.

    python benchmarks/mlp_step.py                    # 784-1024-1024-10, ReLU, batch 256, SGD
    python benchmarks/mlp_step.py --rounds 7 --steps 10
    OMP_NUM_THREADS=1 python benchmarks/mlp_step.py  # one BLAS thread for both libraries

One step is forward, cross-entropy, backward and a plain SGD update (lr 0.01; ``--momentum``
adds momentum), built the same way in both libraries from the same initial weights. The two are timed in
alternating rounds (``--steps`` steps of tinymuse, then as many of PyTorch, ``--rounds``
times), so that a machine whose load changes during the run slows both alike; each library's
time is the median step over all its rounds. The last line reads ``tinymuse/pytorch = R``,
the ratio of the two step times (lower is better for tinymuse).

An MLP is three matrix products and two activations: almost all of a step is BLAS, so this
measures how little tinymuse adds around the arithmetic (temporaries, passes over memory,
Python per operation) where ``train_step.py`` measures a whole transformer.
"""
from __future__ import annotations

import argparse
import itertools
import sys
import time

import numpy as np

import tinymuse
from tinymuse import functional as F
from tinymuse import nn, optim

WIDTHS = (784, 1024, 1024, 10)


def tinymuse_model() -> nn.Module:
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(WIDTHS)):
        layers.append(nn.Linear(fan_in, fan_out))
        if i < len(WIDTHS) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def torch_model(torch, weights: list):
    """The same MLP in PyTorch, starting from tinymuse's initial ``weights``."""
    layers = []
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(WIDTHS)):
        layers.append(torch.nn.Linear(fan_in, fan_out))
        if i < len(WIDTHS) - 2:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers)
    with torch.no_grad():
        for param, value in zip(model.parameters(), weights):
            param.copy_(torch.from_numpy(value))
    return model


def tinymuse_step(model, x, y, lr, momentum):
    opt = optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    x = tinymuse.Tensor(x)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return loss.item()
    return step


def torch_step(torch, model, x, y, lr, momentum):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    x, y = torch.from_numpy(x), torch.from_numpy(y)

    def step():
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss.item()
    return step


def timed(step, steps: int) -> list[float]:
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.0)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal((args.batch, WIDTHS[0])).astype(np.float32)
    y = rng.integers(0, WIDTHS[-1], args.batch)
    tinymuse.manual_seed(0)
    model = tinymuse_model()
    ours = tinymuse_step(model, x, y, args.lr, args.momentum)
    print(f"MLP {'-'.join(map(str, WIDTHS))}, ReLU, batch {args.batch}, SGD (momentum "
          f"{args.momentum:g}), cross-entropy; {args.rounds} rounds of {args.steps} steps each")
    try:
        import torch
    except ImportError:
        print("PyTorch is not installed: tinymuse alone (pip install torch to compare)")
        torch = None
    theirs = None
    if torch is not None:
        theirs = torch_step(torch, torch_model(torch, [p.numpy() for p in model.parameters()]),
                            x, y, args.lr, args.momentum)
        first = (ours(), theirs())
        print(f"first loss: tinymuse {first[0]:.5f}, pytorch {first[1]:.5f}")
    for step in (ours, theirs):
        for _ in range(args.warmup if step is not None else 0):
            step()
    times = {"tinymuse": [], "pytorch": []}
    for _ in range(args.rounds):
        times["tinymuse"] += timed(ours, args.steps)
        if theirs is not None:
            times["pytorch"] += timed(theirs, args.steps)
    medians = {name: float(np.median(t)) for name, t in times.items() if t}
    for name, seconds in medians.items():
        print(f"{name:>9}: {seconds * 1e3:7.2f} ms/step (median of {len(times[name])})")
    if theirs is not None:
        print(f"tinymuse/pytorch = {medians['tinymuse'] / medians['pytorch']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
