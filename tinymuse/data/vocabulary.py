"""The words of the shapes world, the colours they mean, and what training never sees.

Everything the shapes world can say is listed here, once: the grammar writes captions from
these lists, the renderer paints with these colours, and the oracle reads pixels back into these
words. Change a colour here and all three stay in agreement.

Colours are saturated and far apart in RGB (the closest pair, orange and yellow, still differ
by about 100 of 255 in one channel), so they stay distinguishable after a VQ tokenizer has
blurred an image, and none of them is close to a background.
"""

SHAPES = ("circle", "square", "triangle")

COLOURS = {
    "red": (225, 25, 25),
    "orange": (255, 130, 0),
    "yellow": (255, 230, 0),
    "green": (25, 170, 45),
    "blue": (30, 70, 235),
    "purple": (150, 40, 200),
}

BACKGROUNDS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
}

# Side of an object's bounding box as a fraction of the image side. A small object is 7 pixels
# across in the 32x32 base image, a large one 11.5 pixels.
SIZES = {"small": 0.22, "large": 0.36}

COUNT_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

RELATIONS = ("left of", "right of", "above", "below")

# Every way a caption may say each relation. The words mean "the first object is <relation> the
# second object": "a red circle above a blue square" puts the circle higher up.
RELATION_PHRASES = {
    "left of": ("to the left of", "left of", "on the left of", "to the left side of"),
    "right of": ("to the right of", "right of", "on the right of", "to the right side of"),
    "above": ("above", "over"),
    "below": ("below", "under"),
}

LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
DIGITS = tuple("0123456789")
GLYPHS = LETTERS + DIGITS

# --- The compositional test -----------------------------------------------------------------
# The training split never shows these colour-shape pairs (each colour and each shape still
# appears, just never together), nor these relation phrasings (each built only from words that
# training captions do use). The "heldout" split shows nothing but scenes that use them.
HELDOUT_COMBINATIONS = (
    ("purple", "triangle"),
    ("orange", "circle"),
    ("green", "square"),
)
HELDOUT_RELATION_PHRASES = ("on the right of", "to the left side of")

TRAIN_COMBINATIONS = tuple(
    (colour, shape)
    for colour in COLOURS
    for shape in SHAPES
    if (colour, shape) not in HELDOUT_COMBINATIONS
)


def relation_phrases(relation, split="all"):
    """The phrasings of ``relation`` that captions of ``split`` may use."""
    phrases = RELATION_PHRASES[relation]
    if split == "train":
        return tuple(p for p in phrases if p not in HELDOUT_RELATION_PHRASES)
    return phrases
