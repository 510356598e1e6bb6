"""Is the base stage learning the shapes world or memorising its token cache?

    python benchmarks/cache_gap.py --pipeline runs/g9/pipeline --cache runs/g9/tokens/base.safetensors
    python benchmarks/cache_gap.py --pipeline A --pipeline B --cache ...   # two sets of weights
    python benchmarks/cache_gap.py --pipeline runs/lab/pipeline \
        --cache runs/lab/tokens/base.safetensors --world single       # a lab run

The base transformer trains on a fixed cache of pre-encoded scenes (20,000 in the default
preset), seeing each one many times. This computes its masked-token loss, as in training
(:func:`tinymuse.training.transformer.held_out_loss`: masks from the cosine schedule, caption dropout, label
smoothing; the same draws for both), on ``--scenes`` scenes of the cache and on as many fresh
shapes-world scenes it has never seen (seed ``--seed``; the cache used 0), encoded by the
pipeline's own base tokenizer, from the world the run was trained on (``--world``: the
``lab`` preset's is ``single``; fresh scenes of another world would measure that world, not
the cache). ``tinymuse train`` logs the same two numbers for 256 scenes at every sampling.
A gap that grows from one training round to the next means the stage is fitting its cache
more than the world: more cached scenes (a larger preset ``images``) would help it more than
more steps.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse.data import WORLDS, ShapesDataset  # noqa: E402
from tinymuse.pipeline import Pipeline  # noqa: E402
from tinymuse.training.transformer import held_out_loss  # noqa: E402
from tinymuse.vq import load_image_tokens  # noqa: E402
from tinymuse.vq.tokens import ImageTokens, load_examples  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", action="append", required=True,
                        help="pipeline folder (repeat to compare weights)")
    parser.add_argument("--cache", required=True, help="the run's tokens/base.safetensors")
    parser.add_argument("--scenes", type=int, default=2048, help="scenes of each kind")
    parser.add_argument("--seed", type=int, default=321, help="shapes-world seed of the fresh "
                        "scenes (the cache used 0)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--world", choices=WORLDS, default="full",
                        help="the shapes world the run was trained on (the preset's world)")
    args = parser.parse_args(argv)

    cache = load_image_tokens(args.cache)
    n = min(args.scenes, len(cache.captions))
    fresh = None
    print("| weights | loss on cached scenes | loss on fresh scenes | gap |")
    print("| --- | --- | --- | --- |")
    for path in args.pipeline:
        started = time.perf_counter()
        pipeline = Pipeline.load(path)
        if fresh is None:
            dataset = ShapesDataset(resolution=pipeline.image_size, seed=args.seed, split="train",
                                    world=args.world)
            images, captions = load_examples(dataset, range(n))
            grids = np.concatenate([pipeline.encode_images(images[i:i + args.batch])[0]
                                    for i in range(0, n, args.batch)])
            fresh = ImageTokens(grids, np.arange(n), captions, {})
        base = pipeline.base.eval()
        seen, unseen = (held_out_loss(base, tokens, args.batch, n)
                        for tokens in (cache, fresh))
        print(f"| {path} | {seen:.4f} | {unseen:.4f} | {unseen - seen:+.4f} |  "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
