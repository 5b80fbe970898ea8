"""Chunking invariants on real BBC articles and the real WordPiece tokenizer."""

import numpy as np
import pytest

from longdoc.chunking import chunk_document, plan_windows, sentence_ends
from longdoc.config import ChunkingParams
from longdoc.data.corpus import read_corpus

PARAMS = ChunkingParams(chunk_tokens=64, overlap=8, sentence_slack=16)


@pytest.fixture(scope="module")
def texts(small_corpus):
    return read_corpus(small_corpus)["text"].tolist()


def test_windows_cover_every_token_in_order_with_exact_overlap(texts, tokenizer):
    for text in texts:
        doc = chunk_document(text, tokenizer, PARAMS)
        w = doc.windows
        assert w[0].start == 0 and w[-1].end == len(doc.input_ids)
        for a, b in zip(w, w[1:], strict=False):
            assert a.end - b.start == PARAMS.overlap  # exact overlap, order kept
            assert b.start > a.start
        assert all(0 < x.end - x.start <= PARAMS.chunk_tokens for x in w)


def test_boundaries_move_to_sentence_ends_when_one_is_near(texts, tokenizer):
    moved = at_sentence_end = 0
    for text in texts:
        doc = chunk_document(text, tokenizer, PARAMS)
        ends = sentence_ends(text, doc.offsets)
        for w in doc.windows[:-1]:
            window_ends = ends[max(w.start, w.end - PARAMS.sentence_slack) - 1 : w.end]
            if window_ends.any():
                at_sentence_end += 1
                assert ends[w.end - 1], f"window {w} ends mid-sentence though a sentence end is near"
            moved += w.end - w.start < PARAMS.chunk_tokens
    assert at_sentence_end > 0 and moved > 0


def test_window_text_is_the_original_text(texts, tokenizer):
    text = texts[0]
    doc = chunk_document(text, tokenizer, PARAMS)
    first = doc.windows[0]
    s, e = doc.char_span(first)
    assert tokenizer(text[s:e], add_special_tokens=False)["input_ids"] == doc.input_ids[first.start : first.end]


def test_no_sentence_end_means_full_windows():
    windows = plan_windows(300, np.zeros(300, dtype=bool), PARAMS)
    assert [w.end - w.start for w in windows[:-1]] == [64] * (len(windows) - 1)


def test_empty_and_short_documents(tokenizer):
    assert len(chunk_document("One short sentence.", tokenizer, PARAMS).windows) == 1
    assert plan_windows(0, np.zeros(0, dtype=bool), PARAMS)[0].end == 0
