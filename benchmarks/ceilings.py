"""Where does the cascade lose accuracy? The shapes oracle at each point of the pipeline.

    python benchmarks/ceilings.py [--pipeline DIR] [--scenes 240] [--guidance 3 0]
    python benchmarks/ceilings.py --base-vq runs/vq-base/tokenizer.safetensors   # another one
    python benchmarks/ceilings.py --pipeline runs/lab/pipeline --world single    # the lab preset

A generated image can only be as right as the stages it passes through allow. For shapes-world
scenes training never read (seed ``--seed``), on the seen split and on the held-out one
(colour–shape pairs and relation phrasings kept out of training), this scores, per attribute:

1. the original images at the pipeline's size (64×64 for the bundled weights; the oracle's own
   ceiling, ~1.00);
2. the super-resolution VQ tokenizer's round trip, image → tokens (16×16) → image;
3. the base VQ tokenizer's round trip at its own size (32×32: image shrunk as
   :meth:`Pipeline.encode_images` does → 8×8 tokens → image): no base transformer can draw
   better than its tokenizer;
4. the super-resolution transformer given the scene's *true* base tokens (greedy, 8 steps, at
   each ``--guidance`` scale): the cascade with a perfect base stage.

A tokenizer trained only on the seen split can fail on held-out colour–shape pairs by itself,
before any transformer is involved: compare its rows across the two splits. ``--world`` picks
the scenes (``single`` for a cascade trained on the one-object world, such as ``lab``).

Compare with ``tinymuse eval --compare-base`` (the whole cascade on prompts): the gap from
row 4 to it is the base transformer's, the gap from row 1 to row 3 the base tokenizer's.
``--base-vq`` scores another base tokenizer's round trip in the pipeline's place (rows 1-3
only: the super-resolution stage was trained on the pipeline's own 8×8 codes).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse.data import ShapesDataset  # noqa: E402
from tinymuse.data.shapes import WORLDS  # noqa: E402
from tinymuse.decoding import sample_stage  # noqa: E402
from tinymuse.data.images import to_uint8_images  # noqa: E402
from tinymuse.evaluate import score_prompts  # noqa: E402
from tinymuse.pipeline import Pipeline  # noqa: E402
from tinymuse.pipeline_files import BUNDLED  # noqa: E402
from tinymuse.sampling import SUPERRES  # noqa: E402
from tinymuse.tensor import no_grad  # noqa: E402
from tinymuse.vq import VQTokenizer  # noqa: E402
from tinymuse.vq.tokens import load_examples  # noqa: E402

ATTRIBUTES = ("background", "count", "colour", "shape", "size", "relation", "glyph", "all")


def rows(pipeline: Pipeline, images, captions, guidances, batch: int) -> dict:
    """Oracle scores (attribute → accuracy) at each point of the pipeline."""
    low, high = [], []
    for start in range(0, len(images), batch):
        lo, hi = pipeline.encode_images(images[start:start + batch])
        low.append(lo)
        high.append(hi)
    low, high = np.concatenate(low), np.concatenate(high)
    with no_grad():
        base_round_trip = to_uint8_images(pipeline.base_vq.decode(low).numpy())
    size, base_size = pipeline.image_size, pipeline.base_image_size
    grid = "×".join(str(n) for n in low.shape[1:])
    results = {
        f"original {size}×{size}": score_prompts(captions, images),
        "super-res. VQ round trip": score_prompts(captions, pipeline.decode_tokens(high, "uint8")),
        f"base VQ round trip, {base_size}×{base_size}": score_prompts(captions, base_round_trip),
    }
    for scale in guidances:
        drawn = np.concatenate([
            sample_stage(pipeline.superres, captions[i:i + batch],
                         SUPERRES.replace(guidance_scale=scale), low_tokens=low[i:i + batch],
                         generator=pipeline.generator(i)).tokens
            for i in range(0, len(images), batch)])
        results[f"super-res. on true {grid} tokens, guidance {scale:g}"] = score_prompts(
            captions, pipeline.decode_tokens(drawn, "uint8"))
    return results


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(BUNDLED), help="pipeline folder (default: bundled)")
    parser.add_argument("--scenes", type=int, default=240, help="scenes per split")
    parser.add_argument("--seed", type=int, default=321, help="shapes-world seed (training used 0)")
    parser.add_argument("--guidance", type=float, nargs="+", default=[3.0, 0.0])
    parser.add_argument("--batch", type=int, default=60)
    parser.add_argument("--base-vq", help="a base VQ tokenizer (.safetensors) to score instead")
    parser.add_argument("--world", default="full", choices=WORLDS,
                        help="the shapes world the scenes come from (default full)")
    args = parser.parse_args(argv)

    pipeline = Pipeline.load(args.pipeline)
    guidances = args.guidance
    if args.base_vq:
        pipeline.base_vq = VQTokenizer.load(args.base_vq)
        guidances = []
    for split in ("train", "heldout"):
        started = time.perf_counter()
        dataset = ShapesDataset(resolution=pipeline.image_size, seed=args.seed, split=split,
                                world=args.world)
        images, captions = load_examples(dataset, range(args.scenes))
        results = rows(pipeline, images, captions, guidances, args.batch)
        print(f"\n{split} split, {args.scenes} scenes ({time.perf_counter() - started:.0f} s)\n")
        print("| | " + " | ".join(ATTRIBUTES) + " |")
        print("| --- |" + " --- |" * len(ATTRIBUTES))
        for name, scores in results.items():
            cells = [f"{scores[a]:.3f}" if a in scores else "–" for a in ATTRIBUTES]
            print(f"| {name} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
