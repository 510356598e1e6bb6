"""``tinymuse info`` and ``tinymuse vocab``: what a picture was made with, what a pipeline
can read."""
from __future__ import annotations

import json
import textwrap
from pathlib import Path

from .options import CommandError, pipeline_dir, shapes_vocabulary


def cmd_info(args) -> int:
    """Print the parameters a PNG written by tinymuse carries, and the command that made it."""
    from ..data.images import read_png_parameters

    file = Path(args.image)
    if not file.is_file():
        raise CommandError(f"no image file at {file}")
    recorded = read_png_parameters(file)
    if not recorded:
        raise CommandError(f"{file} carries no tinymuse parameters: it was not written by the "
                           f"tinymuse command (or an editor dropped its PNG text)")
    command_line = recorded.pop("command_line", None)
    for key, value in recorded.items():
        shown = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
        print(f"{key}: {shown}")
    if command_line:
        print(f"draw it again: {command_line}")
    return 0


def cmd_vocab(args) -> int:
    """Print the words the pipeline's prompts may use (the words of its training captions)."""
    from ..pipeline_files import TOKENIZER_FILE
    from ..text import Tokenizer

    folder = pipeline_dir(args.pipeline)
    tokenizer = Tokenizer.load(folder / TOKENIZER_FILE)
    if tokenizer.known_words is None:
        raise CommandError(f"the tokenizer in {folder} keeps no list of words (it was not "
                           f"trained by tinymuse); any text is encoded into its pieces")
    words = tokenizer.known_words
    print(f"{len(words)} words (prompts may use these, in any case):")
    print(textwrap.fill(" ".join(words), width=88))
    if shapes_vocabulary(tokenizer):
        from ..data import shapes_captions

        print("The shapes world's captions, which its models learnt from, read like these:")
        for caption in shapes_captions(4, seed=0):
            print(f"  {caption}")
    return 0
