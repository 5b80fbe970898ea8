"""Robustness views of a document: the same paragraphs in another order.

The inverted view reverses the paragraphs (for a news article the title and lead come last), the
check from the inverted-patents experiment: a model that reads only the start of a document loses
accuracy on it, one that reads the whole document should not.
"""

from __future__ import annotations

import random

from longdoc.data.corpus import join_paragraphs, paragraphs


def inverted(text: str) -> str:
    return join_paragraphs(reversed(paragraphs(text)))


def shuffled(text: str, seed: int) -> str:
    parts = paragraphs(text)
    random.Random(seed).shuffle(parts)
    return join_paragraphs(parts)


VIEWS = {"normal": lambda text, seed: text, "inverted": lambda text, seed: inverted(text)}
