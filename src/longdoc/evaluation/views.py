"""Robustness views of a document: the same units of text in another order.

- inverted: units reversed (for a news article the title and lead come last), the check from the
  inverted-patents experiment: a model that reads only the start of a document loses accuracy on it,
  one that reads the whole document should not;
- shuffled: units in a random order, seeded per document;
- position sweep: the first unit (the title, for BBC News) moved to 0%, 25%, 50%, 75% or 100% of the
  document, the rest in order.

Why units and not paragraphs: a view must never silently test nothing. A transcript stored as one line
has a single paragraph, so reordering paragraphs gave back the original text and the model looked
perfectly robust. `units` therefore takes the first kind of unit that splits the document in two or
more: paragraphs, then lines, then sentences, then blocks of words. A view of a document with two or
more units always changes its text, unless no order of the units can (all units the same string).
Documents with a single unit (a short text of one sentence) cannot be reordered at all; they come back
unchanged, and the evaluation records each document's unit kind and leaves single-unit documents out
of the robustness gaps rather than counting them as robust.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass

UNIT_KINDS = ("paragraph", "line", "sentence", "block")
SEPARATORS = {"paragraph": "\n\n", "line": "\n", "sentence": " ", "block": " "}
BLOCK_WORDS = 64
SWEEP_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)

# A sentence ends at . ! ? or … followed by whitespace; the punctuation stays with its sentence.
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Units:
    """A document cut into `parts` of one `kind` (one of UNIT_KINDS), in document order.

    Fewer than two parts means the document cannot be reordered: then `kind` is "block" (the last kind
    tried) and `parts` is the whole stripped text, or empty for a blank text.
    """

    parts: list[str]
    kind: str

    @property
    def separator(self) -> str:
        return SEPARATORS[self.kind]

    def join(self, parts: list[str]) -> str:
        """Parts of this kind joined back into one text, so that splitting it as `kind` finds them again."""
        return self.separator.join(parts)


def _paragraphs(text: str) -> list[str]:
    """Runs of non-blank lines; a line of only whitespace counts as blank, as it looks blank to a reader."""
    found: list[str] = []
    run: list[str] = []
    for line in [*text.splitlines(), ""]:
        if line.strip():
            run.append(line)
        elif run:
            found.append("\n".join(run).strip())
            run = []
    return found


def _lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip()]


def _sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text.strip()) if s]


def _block_sizes(n_words: int) -> list[int]:
    """Sizes of at most BLOCK_WORDS words, as equal as possible and symmetric.

    Equal sizes keep every block a real piece of the document (fixed blocks of 64 would leave a
    65-word text with a 1-word block, and its inverted view would move one word). Symmetric sizes make
    the inverted view split into the same blocks again, so inverting twice gives the document back.
    An odd word count needs an odd number of blocks to be symmetric.
    """
    if n_words == 0:
        return []
    count = -(-n_words // BLOCK_WORDS)
    if n_words % 2 and count % 2 == 0:
        count += 1
    size, extra = divmod(n_words, count)
    sizes = [size] * count
    if extra % 2:
        sizes[count // 2] += 1
    for i in range(extra // 2):
        sizes[i] += 1
        sizes[-1 - i] += 1
    return sizes


def _blocks(text: str) -> list[str]:
    words = text.split()
    blocks, start = [], 0
    for size in _block_sizes(len(words)):
        blocks.append(" ".join(words[start : start + size]))
        start += size
    return blocks


_SPLITTERS: dict[str, Callable[[str], list[str]]] = {
    "paragraph": _paragraphs,
    "line": _lines,
    "sentence": _sentences,
    "block": _blocks,
}


def split_as(text: str, kind: str) -> list[str]:
    """`text` cut into non-empty units of `kind`, whatever `units` would choose for it.

    Tests split a view with the original document's kind: the view's own kind may differ (a sentence
    without final punctuation that moves to the front joins the next sentence).
    """
    if kind not in _SPLITTERS:
        raise ValueError(f"unknown unit kind {kind!r}; expected one of {UNIT_KINDS}")
    return _SPLITTERS[kind](text)


def units(text: str) -> Units:
    """The first kind in UNIT_KINDS that cuts `text` into at least two units, so that views can reorder it."""
    for kind in UNIT_KINDS:
        parts = split_as(text, kind)
        if len(parts) >= 2:
            return Units(parts, kind)
    return Units([text.strip()] if text.strip() else [], "block")


def _changed(doc: Units, order: list[str]) -> list[str]:
    """`order`, or else its first rotation whose text differs from the document's.

    A view equal to the document would test nothing: a shuffle can draw the identity, and reversing a
    palindrome (units A B A) gives it back. A rotation by one changes any sequence that is not all one
    unit; if every rotation gives the same text, no order can change it and `order` is returned.
    """
    original = doc.join(doc.parts)
    for shift in range(len(order)):
        rotated = order[shift:] + order[:shift]
        if doc.join(rotated) != original:
            return rotated
    return order


def inverted(text: str) -> str:
    """The units in reverse order (a palindrome of units, whose reverse is itself, is rotated by one)."""
    doc = units(text)
    if len(doc.parts) < 2:
        return text
    return doc.join(_changed(doc, doc.parts[::-1]))


def shuffled(text: str, seed: int) -> str:
    """The units in a random order, seeded by `seed` and the text, so a rerun gives the same view."""
    doc = units(text)
    if len(doc.parts) < 2:
        return text
    order = list(doc.parts)
    random.Random(seed ^ zlib.crc32(text.encode())).shuffle(order)
    return doc.join(_changed(doc, order))


def first_paragraph_at(text: str, fraction: float) -> str:
    """The first unit moved to `fraction` of the way through the others, which stay in order.

    The name is kept for callers: the unit is a paragraph when the document has paragraphs.
    """
    doc = units(text)
    if len(doc.parts) < 2:
        return text
    first, rest = doc.parts[0], doc.parts[1:]
    rest.insert(round(fraction * len(rest)), first)
    return doc.join(rest)


def sweep_view_name(fraction: float) -> str:
    return f"first_at_{round(fraction * 100):03d}"


View = Callable[[str, int], str]

VIEWS: dict[str, View] = {
    "normal": lambda text, seed: text,
    "inverted": lambda text, seed: inverted(text),
    "shuffled": shuffled,
}
SWEEP: dict[str, View] = {
    sweep_view_name(f): (lambda text, seed, f=f: first_paragraph_at(text, f)) for f in SWEEP_POSITIONS
}
