"""How the bundled autoregressive baseline (tinymuse/assets/autoregressive.safetensors) is
trained: on the bundled cascade's own parts, so that it reads the same text embeddings and
draws the same 8×8 base tokens as the base stage it is compared with in chapter 7.

    python scripts/train_baseline.py --out runs/baseline --steps 6000

1. a run folder is started from the bundled pipeline's tokenizer, text encoder and VQ
   tokenizers, recorded as finished stages of a ``default``-preset run;
2. ``tokens`` encodes the preset's shapes-world scenes with those tokenizers (the base
   stage's training data);
3. ``ar-base`` trains the baseline (``tinymuse train --stage ar-base``: resumable, run the
   command again after an interruption);
4. its weights are saved in float16 beside the bundled cascade (``--bundle``).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from tinymuse import files
from tinymuse.cascade import PRESETS, load_record, stage_paths, train_cascade
from tinymuse.cascade.runs import RECORD
from tinymuse.models import AutoregressiveTransformer
from tinymuse.pipeline import Pipeline
from tinymuse.pipeline_files import BUNDLED_BASELINE, save_baseline


def start_run(out: Path, pipeline: Pipeline) -> None:
    """A default-preset run folder whose first stages are the bundled pipeline's parts."""
    paths = stage_paths(out)
    pipeline.tokenizer.save(paths["tokenizer"])
    pipeline.text_encoder.save(paths["text"])
    pipeline.base_vq.save(paths["vq-base"])
    pipeline.superres_vq.save(paths["vq-superres"])
    done = {"seconds": 0.0, "finished": "from the bundled pipeline"}
    record = {"preset": dataclasses.asdict(PRESETS["default"]), "data": "shapes",
              "stages": {name: dict(done) for name in ("tokenizer", "text", "vq-base",
                                                       "vq-superres")}, "seconds": 0.0}
    files.write_text(out / RECORD, json.dumps(record, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/baseline"))
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--bundle", action="store_true",
                        help=f"write the trained weights to {BUNDLED_BASELINE}")
    args = parser.parse_args()
    if load_record(args.out) is None:
        start_run(args.out, Pipeline.from_pretrained())
    train_cascade(args.out, stage="tokens", preset="default", resume=True)
    train_cascade(args.out, stage="ar-base", preset="default", resume=True,
                  schedule={"steps": args.steps, "batch_size": args.batch_size})
    if args.bundle:
        model = AutoregressiveTransformer.load(stage_paths(args.out)["ar-base"])
        save_baseline(BUNDLED_BASELINE, model, dtype="float16")
        print(f"wrote {BUNDLED_BASELINE}")


if __name__ == "__main__":
    main()
