"""Time one training step of a VQ tokenizer, phase by phase, on CPU or GPU.

    python benchmarks/vq_step.py                            # the lab preset's base tokenizer
    python benchmarks/vq_step.py --stage superres --preset lab
    python benchmarks/vq_step.py --preset default --stage superres --batch-size 8

Builds the tokenizer a preset trains (``tinymuse/cascade/presets.py``: its ``vq_base`` or
``vq_superres`` changes on the stage's default config) and runs the step that
:func:`tinymuse.training.fit` runs for it: a batch of shapes-world pictures drawn as training
draws them (rendered, not cached), forward and loss, backward, AdamW. Prints ms per step and
per phase. In the ``lab`` preset the two tokenizers take about a third of the run, and their
steps are mostly convolutions: im2col copies, small matrix products, col2im additions, group
norm and SiLU. Run it before and after changing one of those, on the same machine.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from stage_step import phase_medians  # noqa: E402  (this folder: the phase timing)
from tinymuse import optim  # noqa: E402
from tinymuse.cascade import PRESETS  # noqa: E402
from tinymuse.data import ShapesDataset  # noqa: E402
from tinymuse.training.vq import TRAINING, _images_at  # noqa: E402
from tinymuse.vq import VQTokenizer, stage_config  # noqa: E402

PHASES = ("batch", "forward", "backward", "adamw")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", choices=tuple(PRESETS), default="lab")
    parser.add_argument("--stage", choices=("base", "superres"), default="base")
    parser.add_argument("--batch-size", type=int, help="default: the preset's")
    parser.add_argument("--steps", type=int, default=20, help="timed steps")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    args = parser.parse_args()

    preset = PRESETS[args.preset]
    config = dataclasses.replace(stage_config(args.stage), **getattr(preset, f"vq_{args.stage}"))
    batch = args.batch_size or getattr(preset, f"vq_{args.stage}_batch")
    tokenizer = VQTokenizer(config, seed=0).to(args.device)
    train = TRAINING.replace(batch_size=batch)
    optimizer = optim.AdamW(tokenizer.parameters(), lr=train.lr, fused=True)
    images_at = _images_at(ShapesDataset(config.image_size, world=preset.world), train,
                           args.device)

    def one_step(step, done):
        images = images_at(step)
        done()
        loss = tokenizer.training_loss(images)[0]
        loss.item()
        done()
        optimizer.zero_grad()
        loss.backward()
        done()
        optimizer.step()
        done()

    medians = phase_medians(one_step, PHASES, args.steps, args.warmup, args.device)
    total = sum(medians.values())
    print(f"{args.preset} preset, {args.stage} tokenizer ({config.image_size}² → "
          f"{config.token_size}² tokens), batch {batch}, {args.device}: {total:.1f} ms/step")
    print("  " + ", ".join(f"{phase} {ms:.1f} ms" for phase, ms in medians.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
