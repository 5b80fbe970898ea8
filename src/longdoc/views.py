"""Robustness views of a document: the same paragraphs in another order.

- inverted: paragraphs reversed (for a news article the title and lead come last), the check from
  the inverted-patents experiment: a model that reads only the start of a document loses accuracy
  on it, one that reads the whole document should not;
- shuffled: paragraphs in a random order, seeded per document;
- position sweep: the first paragraph (the title, for BBC News) moved to 0%, 25%, 50%, 75% or 100%
  of the document, the rest in order.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable

from longdoc.data.corpus import join_paragraphs, paragraphs

SWEEP_POSITIONS = (0.0, 0.25, 0.5, 0.75, 1.0)


def inverted(text: str) -> str:
    return join_paragraphs(reversed(paragraphs(text)))


def shuffled(text: str, seed: int) -> str:
    parts = paragraphs(text)
    random.Random(seed ^ zlib.crc32(text.encode())).shuffle(parts)
    return join_paragraphs(parts)


def first_paragraph_at(text: str, fraction: float) -> str:
    parts = paragraphs(text)
    first, rest = parts[0], parts[1:]
    rest.insert(round(fraction * len(rest)), first)
    return join_paragraphs(rest)


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
