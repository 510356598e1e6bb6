"""How good are the trained VQ tokenizers? Reconstruction PSNR, codebook usage
and the shapes oracle, on held-out shapes-world images.

    tinymuse train --stage vq-base --out runs       # train first (a cascade run's stages)
    tinymuse train --stage vq-superres --out runs
    python benchmarks/vq_quality.py                  # then measure

or in one go (training resumes from any checkpoint already in the run folder):

    python benchmarks/vq_quality.py --train --steps 2000

Held-out images are the first ``--images`` examples of the shapes world with
seed 1 (training used seed 0) and the "all" split, so they include the
colour–shape pairs kept out of the transformers' training data. Reported per
stage: PSNR over all pixels (and the mean of per-image PSNRs), the share of
codes used on those images, perplexity, the oracle's accuracy on the
originals and on the reconstructions (same captions), and the training time
and steps read from the run's log. Goals (from the issue): PSNR ≥ 28 dB at
32×32, ≥ 26 dB at 64×64, ≥ 90% of codes used, oracle on reconstructions as
good as on originals.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse.data import ShapesDataset  # noqa: E402
from tinymuse.evaluate import score_prompts  # noqa: E402
from tinymuse.training.vq import TOKENIZER, stage_training, train_tokenizer  # noqa: E402
from tinymuse.vq import VQTokenizer, evaluate_reconstruction, stage_config  # noqa: E402
from tinymuse.vq.tokens import load_examples  # noqa: E402

GOALS = {"base": 28.0, "superres": 26.0}


def training_record(run_dir: Path) -> dict:
    """Steps and training seconds of the run, from its checkpoint."""
    from tinymuse import checkpoint

    path = run_dir / "checkpoint.safetensors"
    if not path.exists():
        return {"steps": None, "train_seconds": None}
    metadata = checkpoint.load(path).metadata
    return {"steps": metadata["step"], "train_seconds": metadata["extra"]["seconds"]}


def measure(stage: str, run_dir: Path, images: int, oracle_images: int, device: str) -> dict:
    tokenizer = VQTokenizer.load(run_dir / TOKENIZER, device=device)
    size = tokenizer.config.image_size
    held_out = ShapesDataset(resolution=size, seed=1, split="all", length=images)
    started = time.perf_counter()
    report, recon, originals = evaluate_reconstruction(tokenizer, held_out, count=images,
                                                       keep=True, progress=True)
    seconds = time.perf_counter() - started
    captions = load_examples(held_out, range(oracle_images))[1]
    oracle_original = score_prompts(captions, originals[:oracle_images])["all"]
    oracle_recon = score_prompts(captions, recon[:oracle_images])["all"]
    return {"stage": stage, "image_size": size, "tokens": tokenizer.config.token_size,
            "images": images, "psnr": report.psnr, "psnr_per_image": report.psnr_per_image,
            "usage": report.usage, "codes_used": report.codes_used,
            "codebook_size": report.codebook_size, "perplexity": report.perplexity,
            "oracle_images": oracle_images, "oracle_original": oracle_original,
            "oracle_reconstruction": oracle_recon, "encode_decode_seconds": seconds,
            "parameters": tokenizer.num_parameters(), **training_record(run_dir)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stages", nargs="+", default=["base", "superres"],
                        choices=["base", "superres"])
    parser.add_argument("--runs", default="runs", help="folder holding vq-base/, vq-superres/ "
                        "(a cascade run folder)")
    parser.add_argument("--images", type=int, default=1000, help="held-out images to measure")
    parser.add_argument("--oracle-images", type=int, default=300,
                        help="how many of them the oracle scores")
    parser.add_argument("--train", action="store_true", help="train (or resume) each stage first")
    parser.add_argument("--steps", type=int, default=None, help="with --train: total steps")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the results to this file")
    args = parser.parse_args(argv)

    results = []
    for stage in args.stages:
        run_dir = Path(args.runs) / f"vq-{stage}"
        if args.train:
            config = stage_config(stage)
            train = stage_training(config)
            if args.steps is not None:
                train = train.replace(steps=args.steps)
            train_tokenizer(config, train, out_dir=run_dir, device=args.device)
        results.append(measure(stage, run_dir, args.images, args.oracle_images, args.device))

    print("\n| stage | image → tokens | PSNR (dB) | per-image PSNR | codes used | perplexity "
          "| oracle: originals | oracle: recon | steps | train time |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        minutes = "?" if r["train_seconds"] is None else f"{r['train_seconds'] / 60:.1f} min"
        goal = "✓" if r["psnr"] >= GOALS[r["stage"]] else f"goal {GOALS[r['stage']]:.0f}"
        print(f"| {r['stage']} | {r['image_size']}² → {r['tokens']}² | {r['psnr']:.2f} ({goal}) "
              f"| {r['psnr_per_image']:.2f} | {r['codes_used']}/{r['codebook_size']} "
              f"({100 * r['usage']:.1f}%) | {r['perplexity']:.0f} | "
              f"{100 * r['oracle_original']:.1f}% | {100 * r['oracle_reconstruction']:.1f}% | "
              f"{r['steps']} | {minutes} |")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
