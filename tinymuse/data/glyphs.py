"""A 5x7 bitmap font for the capital letters and digits the shapes world draws.

Each glyph is 7 rows of 5 cells, ``#`` for ink. Scaled up so that one cell is several pixels,
these blocky characters are legible at 64x64 and still readable at 32x32, and, because they are
defined here, the renderer and the oracle agree exactly on what each glyph looks like. (Pillow's
built-in bitmap font is tiny and not scalable, and no font is downloaded.)

The patterns follow the classic 5x7 character-LCD font. Every glyph fills all 7 rows, which lets
the oracle measure a glyph's height from its ink.
"""

import numpy as np

GLYPH_ROWS, GLYPH_COLUMNS = 7, 5

_FONT = {
    "A": ".###. #...# #...# ##### #...# #...# #...#",
    "B": "####. #...# #...# ####. #...# #...# ####.",
    "C": ".###. #...# #.... #.... #.... #...# .###.",
    "D": "###.. #..#. #...# #...# #...# #..#. ###..",
    "E": "##### #.... #.... ####. #.... #.... #####",
    "F": "##### #.... #.... ####. #.... #.... #....",
    "G": ".###. #...# #.... #.### #...# #...# .####",
    "H": "#...# #...# #...# ##### #...# #...# #...#",
    "I": ".###. ..#.. ..#.. ..#.. ..#.. ..#.. .###.",
    "J": "..### ...#. ...#. ...#. ...#. #..#. .##..",
    "K": "#...# #..#. #.#.. ##... #.#.. #..#. #...#",
    "L": "#.... #.... #.... #.... #.... #.... #####",
    "M": "#...# ##.## #.#.# #.#.# #...# #...# #...#",
    "N": "#...# #...# ##..# #.#.# #..## #...# #...#",
    "O": ".###. #...# #...# #...# #...# #...# .###.",
    "P": "####. #...# #...# ####. #.... #.... #....",
    "Q": ".###. #...# #...# #...# #.#.# #..#. .##.#",
    "R": "####. #...# #...# ####. #.#.. #..#. #...#",
    "S": ".#### #.... #.... .###. ....# ....# ####.",
    "T": "##### ..#.. ..#.. ..#.. ..#.. ..#.. ..#..",
    "U": "#...# #...# #...# #...# #...# #...# .###.",
    "V": "#...# #...# #...# #...# #...# .#.#. ..#..",
    "W": "#...# #...# #...# #.#.# #.#.# #.#.# .#.#.",
    "X": "#...# #...# .#.#. ..#.. .#.#. #...# #...#",
    "Y": "#...# #...# #...# .#.#. ..#.. ..#.. ..#..",
    "Z": "##### ....# ...#. ..#.. .#... #.... #####",
    "0": ".###. #...# #..## #.#.# ##..# #...# .###.",
    "1": "..#.. .##.. ..#.. ..#.. ..#.. ..#.. .###.",
    "2": ".###. #...# ....# ...#. ..#.. .#... #####",
    "3": "##### ...#. ..#.. ...#. ....# #...# .###.",
    "4": "...#. ..##. .#.#. #..#. ##### ...#. ...#.",
    "5": "##### #.... ####. ....# ....# #...# .###.",
    "6": "..##. .#... #.... ####. #...# #...# .###.",
    "7": "##### ....# ...#. ..#.. .#... .#... .#...",
    "8": ".###. #...# #...# .###. #...# #...# .###.",
    "9": ".###. #...# #...# .#### ....# ...#. .##..",
}


def glyph_bitmap(char):
    """The 7x5 boolean bitmap of ``char`` (a capital letter or a digit)."""
    if char not in _FONT:
        known = "".join(_FONT)
        raise ValueError(f"no glyph for {char!r}; the font has the characters {known}")
    rows = _FONT[char].split()
    return np.array([[cell == "#" for cell in row] for row in rows], dtype=bool)


def all_glyph_bitmaps():
    """Every glyph as ``(chars, bitmaps)``: a string and a bool array [36, 7, 5]."""
    chars = "".join(_FONT)
    return chars, np.stack([glyph_bitmap(c) for c in chars])
