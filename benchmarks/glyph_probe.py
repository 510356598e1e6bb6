"""Does the base stage read which letter a caption names? A probe by likelihood.

    python benchmarks/glyph_probe.py [--pipeline DIR] [--scenes 150] [--hide 1.0 0.5]

Glyph accuracy of generated pictures mixes two skills: reading the character from the caption
and drawing it. This measures the first alone. For glyph scenes training never read
(shapes-world seed ``--seed``), it takes the true 8×8 base tokens, hides a fraction of them
(``--hide``; 1.0 = all, as at the first decoding step) and scores them under 36 captions that
differ only in the character ("the letter A in red", "the letter B in red", …, "the digit 9
in red"): the masked-token loss of each,

    NLL(c) = − Σ_{i hidden} log p(x_i | visible tokens, caption c).

The probe counts how often the true caption has the lowest loss (top-1; chance 1/36 ≈ 0.03)
and the mean number of wrong captions that beat it (chance 17.5). It also prints how alike the
frozen text encoder's vectors for the 26 letters are (mean cosine similarity; 1.0 = the
letters are indistinguishable to anything that reads them).
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tinymuse.data import ShapesDataset  # noqa: E402
from tinymuse.data.grammar import DIGITS, LETTERS  # noqa: E402
from tinymuse.decoding import log_softmax  # noqa: E402
from tinymuse.pipeline import Pipeline  # noqa: E402
from tinymuse.pipeline_files import BUNDLED  # noqa: E402
from tinymuse.tensor import no_grad  # noqa: E402
from tinymuse.vq.tokens import load_examples  # noqa: E402

CHARACTER = re.compile(r"\b(letter|digit|number) (\w)\b")


def rivals(caption: str) -> tuple[list[str], int]:
    """The caption with each of the 36 characters in its character's place (a letter after
    "letter", a digit after the caption's own "digit"/"number"), and the true one's index."""
    found = CHARACTER.search(caption)
    characters = LETTERS + DIGITS
    digit_word = "digit" if found.group(1) == "letter" else found.group(1)
    captions = [f"{caption[:found.start()]}{'letter' if c in LETTERS else digit_word} {c}"
                f"{caption[found.end():]}" for c in characters]
    return captions, characters.index(found.group(2))


def probe(base, grids, captions, hide: float, seed: int = 0) -> tuple[float, float]:
    """``(top-1, mean rank of the truth)`` over token grids (N, h, w) and their captions."""
    rng = np.random.default_rng(seed)
    hits, ranks = 0, 0
    for grid, caption in zip(grids, captions):
        candidates, truth = rivals(caption)
        grid = grid.reshape(-1)
        hidden = rng.random(grid.size) < hide
        hidden[rng.integers(grid.size)] = True  # at least one
        tokens = np.where(hidden, base.mask_id, grid)[None].repeat(len(candidates), 0)
        with no_grad():
            context = base.encode_text(*base.tokenize(candidates, check_words=False))
            logits = base.logits(tokens, context).numpy().astype(np.float64)
        nll = -log_softmax(logits)[:, np.arange(grid.size), grid][:, hidden].sum(axis=1)
        hits += int(np.argmin(nll) == truth)
        ranks += int((nll < nll[truth]).sum())
    return hits / len(grids), ranks / len(grids)


def letter_similarity(base) -> float:
    """Mean cosine similarity of the text encoder's output vectors at the character of
    "the letter X in red", over all pairs of the 26 letters."""
    ids, mask = base.tokenize([f"the letter {c} in red" for c in LETTERS], check_words=False)
    where = 1 + int(np.flatnonzero((ids != ids[0]).any(axis=0))[0])  # +1: [CLS] comes first
    with no_grad():
        vectors = base.text_encoder(ids, mask).embeddings.numpy()[:, where]
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    similarity = vectors @ vectors.T
    return float(similarity[~np.eye(len(LETTERS), dtype=bool)].mean())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pipeline", default=str(BUNDLED), help="pipeline folder (default: bundled)")
    parser.add_argument("--scenes", type=int, default=150, help="glyph scenes to probe")
    parser.add_argument("--seed", type=int, default=321, help="shapes-world seed (training used 0)")
    parser.add_argument("--hide", type=float, nargs="+", default=[1.0, 0.5],
                        help="fractions of the tokens to hide")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    pipeline = Pipeline.load(args.pipeline)
    base = pipeline.base.eval()
    dataset = ShapesDataset(resolution=pipeline.image_size, seed=args.seed, split="train")
    indices, index = [], 0
    while len(indices) < args.scenes:
        if CHARACTER.search(dataset.caption(index)):
            indices.append(index)
        index += 1
    images, captions = load_examples(dataset, indices)
    grids = np.concatenate([pipeline.encode_images(images[i:i + 50])[0]
                            for i in range(0, len(images), 50)])
    print(f"{args.pipeline}: letters' text vectors, mean cosine similarity "
          f"{letter_similarity(base):.3f}")
    for hide in args.hide:
        top1, rank = probe(base, grids, captions, hide)
        print(f"hide {hide:.0%} of the tokens: the true character's caption explains the grid "
              f"best in {top1:.0%} of {args.scenes} scenes (chance 3%); mean rank of the "
              f"truth {rank:.1f} (chance 17.5)", flush=True)
    print(f"({time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
