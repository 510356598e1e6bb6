"""The caption grammar: writing a caption for a :class:`SceneSpec`, and parsing one back.

The language, in full (``[x]`` is optional, ``|`` separates choices)::

    caption    := [prefix] body [background]
    prefix     := "a picture of" | "an image of" | "a drawing of"
    body       := group | object relation object | glyph
    group      := count [size] colour shape(s)        "two small blue squares"
                | count [size] shape(s) "in" colour    "a circle in red"
    object     := "a" [size] colour shape              "a green triangle"
    relation   := "to the left of" | "left of" | "on the left of" | "to the left side of"
                | "to the right of" | ... | "above" | "over" | "below" | "under"
    glyph      := "the" ("letter" L | "digit" D | "number" D) "in" colour
                | "a" colour ("letter" L | "digit" D | "number" D)
    background := "on a" bg "background" | "against a" bg "background"
                | "with a" bg "background" | "on" bg
    count      := "a" | "one" | "two" | "three" | "four"

``a`` and ``an`` are the same word to the parser (the writer picks the right one), case does
not matter, and a final full stop is ignored. The parser accepts exactly this language: a word
outside the vocabulary raises :class:`UnknownWordError`, which names the word and lists the
known ones, and known words in an order the grammar never makes raise
:class:`CaptionSyntaxError`, which says what was expected where.
"""

from .spec import GlyphSpec, ObjectSpec, SceneSpec
from .vocabulary import (
    BACKGROUNDS,
    COLOURS,
    COUNT_WORDS,
    DIGITS,
    LETTERS,
    RELATION_PHRASES,
    SHAPES,
    SIZES,
    relation_phrases,
)

PREFIXES = ("a picture of", "an image of", "a drawing of")
BACKGROUND_PHRASES = (
    "on a {} background",
    "against a {} background",
    "with a {} background",
    "on {}",
)
GLYPH_KINDS = {"letter": LETTERS, "digit": DIGITS, "number": DIGITS}

# How often the writer uses each optional part of a caption.
P_PREFIX = 0.25
P_ONE = 0.3  # "one red circle" rather than "a red circle"
P_COLOUR_AFTER = 0.25  # "a circle in red" rather than "a red circle"


class CaptionError(ValueError):
    """A caption the shapes grammar cannot read."""


class UnknownWordError(CaptionError):
    """A caption uses a word the vocabulary does not have."""

    def __init__(self, word, caption, known):
        self.word = word
        self.text = caption
        self.known = tuple(known)
        super().__init__(
            f"unknown word {word!r} in {caption!r}. The known words are: "
            f"{', '.join(self.known)} (and a single capital letter or digit after "
            f"'letter', 'digit' or 'number')"
        )


class CaptionSyntaxError(CaptionError):
    """A caption uses known words in an order the grammar does not make."""


def _plural(shape):
    return shape + "s"


def _article(next_word):
    return "an" if next_word[0] in "aeiou" else "a"


def _with_article(phrase):
    """``"orange circle"`` -> ``"an orange circle"``."""
    return f"{_article(phrase)} {phrase}"


# --- Writing ----------------------------------------------------------------------------------


def write_caption(spec, rng, split="all"):
    """A caption stating exactly the facts in ``spec``, its wording drawn from the numpy
    Generator ``rng``. With ``split="train"`` the held-out relation phrasings are never used.
    """
    if spec.kind == "glyph":
        body = _write_glyph(spec.glyph, rng)
    elif spec.kind == "relation":
        first, second = spec.objects
        phrase = str(rng.choice(relation_phrases(spec.relation, split)))
        body = f"{_write_single(first)} {phrase} {_write_single(second)}"
    else:
        if len(set(spec.objects)) != 1:
            raise ValueError(
                "the grammar can only describe objects that are all alike, or two objects "
                f"and a relation; got {spec.objects}"
            )
        body = _write_group(spec.objects[0], spec.count, rng)
    if rng.random() < P_PREFIX:
        body = f"{rng.choice(PREFIXES)} {body}"
    if spec.background is not None:
        body = f"{body} {rng.choice(BACKGROUND_PHRASES).format(spec.background)}"
    return body


def _write_single(obj):
    words = [obj.size, obj.colour, obj.shape] if obj.size else [obj.colour, obj.shape]
    return _with_article(" ".join(words))


def _write_group(obj, count, rng):
    """The group rule: ``count [size] colour shape(s)`` ("two small blue squares") or
    ``count [size] shape(s) "in" colour`` ("a circle in red")."""
    # BEGIN EXERCISE ch03_ex1
    shape = obj.shape if count == 1 else _plural(obj.shape)
    size = [obj.size] if obj.size else []
    if rng.random() < P_COLOUR_AFTER:
        rest = " ".join(size + [shape, "in", obj.colour])
    else:
        rest = " ".join(size + [obj.colour, shape])
    if count == 1 and rng.random() >= P_ONE:
        return _with_article(rest)
    return f"{COUNT_WORDS[count]} {rest}"
    # END EXERCISE


def _write_glyph(glyph, rng):
    kind = "letter" if glyph.char in LETTERS else str(rng.choice(["digit", "number"]))
    if rng.random() < 0.5:
        return f"the {kind} {glyph.char} in {glyph.colour}"
    return _with_article(f"{glyph.colour} {kind} {glyph.char}")


# --- The vocabulary ----------------------------------------------------------------------------


def known_words():
    """Every word the grammar uses, sorted (glyph characters aside)."""
    words = {"a", "an", "the", "in", "background", *GLYPH_KINDS}
    words |= set(SHAPES) | {_plural(s) for s in SHAPES}
    words |= set(COLOURS) | set(BACKGROUNDS) | set(SIZES) | set(COUNT_WORDS.values())
    for phrase in (*PREFIXES, *BACKGROUND_PHRASES, *sum(RELATION_PHRASES.values(), ())):
        words |= set(phrase.replace("{}", "").split())
    return tuple(sorted(words))


_KNOWN = frozenset(known_words())
_GLYPH_NAMES = frozenset(c.lower() for c in LETTERS + DIGITS)


def _words(caption):
    if not isinstance(caption, str):
        raise TypeError(f"a caption is a str, got {type(caption).__name__}")
    return caption.strip().removesuffix(".").lower().split()


def written_form(caption):
    """``caption`` as the writer writes captions: lower case, one space between words, no final
    full stop, and a letter to draw in capitals ("the letter A"). The parser reads any case,
    but a model trained on written captions sees their exact text (SentencePiece's pieces
    tell "A" from "a", and cut an unseen "Red" into letters), so a prompt should be given in
    this form."""
    words = _words(caption)
    for i in range(1, len(words)):
        if words[i - 1] == "letter" and words[i].upper() in LETTERS:
            words[i] = words[i].upper()
    return " ".join(words)


def check_words(caption):
    """Raise :class:`UnknownWordError` for the first word of ``caption`` that the grammar does
    not know. Single letters and digits pass: they name glyphs."""
    for word in _words(caption):
        if word not in _KNOWN and word not in _GLYPH_NAMES:
            raise UnknownWordError(word, caption, known_words())


# --- Parsing -----------------------------------------------------------------------------------


def parse_caption(caption):
    """The :class:`SceneSpec` a caption states. Inverse of :func:`write_caption`:
    ``parse_caption(write_caption(spec, rng)) == spec``."""
    check_words(caption)
    return _Parser(caption).caption()


def _phrase_words(phrase):
    return tuple(_words(phrase.replace("an ", "a ")))


_PREFIX_WORDS = [_phrase_words(p) for p in PREFIXES]
_RELATION_OF_WORDS = {  # longest phrasings first, so "to the left side of" beats "left of"
    words: relation
    for words, relation in sorted(
        ((_phrase_words(p), r) for r, phrases in RELATION_PHRASES.items() for p in phrases),
        key=lambda item: -len(item[0]),
    )
}
_BACKGROUND_WORDS = [_phrase_words(p.format("*")) for p in BACKGROUND_PHRASES]  # * = the colour
_COUNTS = {"a": 1, **{word: n for n, word in COUNT_WORDS.items()}}
_SHAPE_FORMS = {**{s: (s, False) for s in SHAPES}, **{_plural(s): (s, True) for s in SHAPES}}


class _Parser:
    """A recursive-descent parser: one method per rule of the grammar, reading words left to
    right with at most a few words of look-ahead."""

    def __init__(self, caption):
        self.text = caption
        # "an" and "a" are the same word once parsing starts.
        self.words = ["a" if w == "an" else w for w in _words(caption)]
        self.at = 0

    # -- helpers --
    def peek(self, ahead=0):
        i = self.at + ahead
        return self.words[i] if i < len(self.words) else None

    def fail(self, expected):
        found = f"word {self.at + 1} {self.peek()!r}" if self.peek() else "the end of the caption"
        raise CaptionSyntaxError(f"cannot parse {self.text!r}: expected {expected}, found {found}")

    def take(self, allowed, what):
        word = self.peek()
        if word not in allowed:
            self.fail(what)
        self.at += 1
        return word

    def optional(self, allowed):
        """Consume the next word if it is in ``allowed`` and return it; else None."""
        if self.peek() in allowed:
            self.at += 1
            return self.words[self.at - 1]
        return None

    def take_phrase(self, phrases):
        """Consume the first phrase (a tuple of words) the caption continues with, or None."""
        for words in phrases:
            if tuple(self.words[self.at : self.at + len(words)]) == words:
                self.at += len(words)
                return words
        return None

    # -- rules --
    def caption(self):
        if not self.words:
            raise CaptionSyntaxError("cannot parse an empty caption")
        self.take_phrase(_PREFIX_WORDS)
        if self.peek() == "the" or (self.peek() == "a" and self.peek(2) in GLYPH_KINDS):
            spec = SceneSpec(glyph=self.glyph())
        else:
            spec = self.objects()
        background = self.background()
        if self.peek() is not None:
            self.fail("the end of the caption")
        return SceneSpec(spec.objects, spec.relation, spec.glyph, background)

    def glyph(self):
        if self.peek() == "the":  # the letter K in blue
            self.at += 1
            char = self.glyph_name()
            self.take({"in"}, "'in'")
            colour = self.take(COLOURS, f"a colour ({', '.join(COLOURS)})")
        else:  # a blue letter K
            self.take({"a"}, "'a'")
            colour = self.take(COLOURS, f"a colour ({', '.join(COLOURS)})")
            char = self.glyph_name()
        return GlyphSpec(char, colour)

    def glyph_name(self):
        kind = self.take(GLYPH_KINDS, "'letter', 'digit' or 'number'")
        allowed = GLYPH_KINDS[kind]
        word = self.peek()
        if word is None or word.upper() not in allowed:
            self.fail(f"a {'capital letter' if kind == 'letter' else 'digit'} after {kind!r}")
        self.at += 1
        return word.upper()

    def objects(self):
        count_word = self.take(
            _COUNTS, f"a count ({', '.join(['a', 'an', *COUNT_WORDS.values()])})"
        )
        count = _COUNTS[count_word]
        first, colour_after = self.object_phrase(plural=count > 1)
        relation = self.take_phrase(_RELATION_OF_WORDS)
        if relation is None:
            return SceneSpec(objects=(first,) * count)
        if count_word != "a" or colour_after:
            raise CaptionSyntaxError(
                f"cannot parse {self.text!r}: before a relation, describe the object as "
                "'a [size] colour shape', e.g. 'a red circle'"
            )
        self.take({"a"}, "'a' or 'an'")
        second, colour_after = self.object_phrase(plural=False, colour_after_allowed=False)
        return SceneSpec(objects=(first, second), relation=_RELATION_OF_WORDS[relation])

    def object_phrase(self, plural, colour_after_allowed=True):
        """``[size] colour shape`` or ``[size] shape in colour``.

        Returns the object and whether its colour came after the shape."""
        # BEGIN EXERCISE ch03_ex2
        size = self.optional(SIZES)
        colour = self.optional(COLOURS)
        if colour is None and not colour_after_allowed:
            self.fail(f"a colour ({', '.join(COLOURS)})")
        word = self.peek()
        if word not in _SHAPE_FORMS:
            expected = "a shape" if colour else "a colour or a shape"
            self.fail(f"{expected} ({', '.join(SHAPES)})")
        shape, is_plural = _SHAPE_FORMS[word]
        if is_plural != plural:
            self.fail(f"{_plural(shape) if plural else shape!r} to agree with the count")
        self.at += 1
        colour_after = colour is None
        if colour_after:
            self.take({"in"}, "'in' and a colour")
            colour = self.take(COLOURS, f"a colour ({', '.join(COLOURS)})")
        return ObjectSpec(shape, colour, size), colour_after
        # END EXERCISE

    def background(self):
        """An optional background phrase; the background's name, or None."""
        for phrase in _BACKGROUND_WORDS:
            window = self.words[self.at : self.at + len(phrase)]
            if len(window) == len(phrase) and all(
                p == w or (p == "*" and w in BACKGROUNDS) for p, w in zip(phrase, window)
            ):
                self.at += len(phrase)
                return window[phrase.index("*")]
        return None
