"""Time one training step of a real transformer stage, phase by phase, on CPU or GPU.

    python benchmarks/stage_step.py                                  # base stage, batch 32, CPU
    python benchmarks/stage_step.py --stage superres --batch-size 16
    python benchmarks/stage_step.py --device cuda --batch-size 128   # on a GPU (CuPy)

Builds the ``default`` preset's base or super-resolution transformer around the bundled text
encoder (frozen, as in training), feeds it random image tokens with shapes-world captions, and
runs the training step of :func:`tinymuse.training.fit` — batch, forward + loss, backward,
gradient clipping, AdamW, EMA — waiting for the device after each phase so that each phase's
time is its own. Prints ms per step and per phase, and samples per second.

What it is for: on a GPU a step of this small model is bound by how many array operations
Python launches, not by arithmetic, so the phase whose share stays flat as ``--batch-size``
grows is overhead (``--batch-size 1`` shows the floor). Run it before and after changing a hot
path, on the same machine.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse import backend, optim  # noqa: E402
from tinymuse.cascade import PRESETS  # noqa: E402
from tinymuse.data import ShapesDataset  # noqa: E402
from tinymuse.models.base import BaseTransformer, BaseTransformerConfig  # noqa: E402
from tinymuse.models.superres import SuperResTransformer, SuperResTransformerConfig  # noqa: E402
from tinymuse.pipeline import Pipeline  # noqa: E402
from tinymuse.pipeline_files import BUNDLED  # noqa: E402
from tinymuse.training import step_generator  # noqa: E402
from tinymuse.training.transformer import TRAINING, make_batch, pair_caches  # noqa: E402
from tinymuse.vq.tokens import ImageTokens  # noqa: E402

PHASES = ("batch", "forward", "backward", "clip", "adamw", "ema")


def random_cache(grid: int, codebook: int, captions: list, seed: int):
    """An image-token cache of random codes: the step's cost does not depend on their values."""
    tokens = np.random.default_rng(seed).integers(0, codebook, (len(captions), grid, grid))
    return ImageTokens(tokens=tokens.astype(np.int32), indices=np.arange(len(captions)),
                       captions=captions, tokenizer_config={})


def build(stage: str, device: str):
    pipeline = Pipeline.load(BUNDLED)
    preset = PRESETS["default"]
    text = pipeline.base.text_encoder
    captions = [ShapesDataset(32, seed=0).caption(i) for i in range(512)]
    low = random_cache(8, 64, captions, seed=1)
    common = dict(text_encoder=text, tokenizer=pipeline.tokenizer,
                  generator=backend.Generator(0))
    if stage == "base":
        config = BaseTransformerConfig(codebook_size=64, grid_size=8, text=text.config,
                                       **preset.base)
        return BaseTransformer(config, **common).to(device), low
    config = SuperResTransformerConfig(codebook_size=64, grid_size=16, low_codebook_size=64,
                                       low_grid_size=8, text=text.config, **preset.superres)
    cache = pair_caches(low, random_cache(16, 64, captions, seed=2))
    return SuperResTransformer(config, **common).to(device), cache


def phase_medians(one_step, phases, steps: int, warmup: int, device: str) -> dict:
    """Median milliseconds of each phase over ``steps`` timed steps, after ``warmup`` untimed
    ones. ``one_step(step, done)`` runs one step and calls ``done()`` at the end of each of
    its ``phases``; on a GPU ``done`` first waits for the device, so that each phase's time is
    its own."""
    xp = backend.xp_for(device)
    sync = (lambda: xp.cuda.Device().synchronize()) if device == "cuda" else (lambda: None)
    times = {phase: [] for phase in phases}
    for step in range(warmup + steps):
        marks = [time.perf_counter()]

        def done():
            sync()
            marks.append(time.perf_counter())

        one_step(step, done)
        if step >= warmup:
            for phase, start, end in zip(phases, marks, marks[1:]):
                times[phase].append(end - start)
    return {phase: statistics.median(values) * 1000 for phase, values in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stage", choices=("base", "superres"), default="base")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first (GPU "
                                                              "kernels compile on first use)")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    model, cache = build(args.stage, args.device)
    config = TRAINING.replace(batch_size=args.batch_size)
    optimizer = optim.AdamW(optim.weight_decay_groups(model, config.weight_decay),
                            lr=config.lr, betas=config.betas, fused=True)   # as fit() builds it
    trainable = [p for p in model.parameters() if p.requires_grad]
    ema = optim.EMA(model, 0.999)
    rng = np.random.default_rng(0)

    def one_step(step, done):
        batch = make_batch(model, cache, rng.integers(0, len(cache), args.batch_size))
        done()
        result = model.training_loss(batch, step_generator(0, step))
        result.loss.item()
        done()
        optimizer.zero_grad()
        result.loss.backward()
        done()
        optim.clip_grad_norm(trainable, config.grad_clip)
        done()
        optimizer.step()
        done()
        ema.update(model)
        done()

    medians = phase_medians(one_step, PHASES, args.steps, args.warmup, args.device)
    total = sum(medians.values())
    print(f"{args.stage} stage, batch {args.batch_size}, {args.device}: {total:.1f} ms/step "
          f"({args.batch_size / total * 1000:.0f} samples/s), {len(trainable)} parameter "
          f"tensors")
    print("  " + ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
