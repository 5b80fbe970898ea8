"""Splits, slices and data versions: the properties a silent mistake here would break.

A wrong split puts test documents into training (and the champion and the candidate are no longer
scored on the same documents); a wrong slice makes two data versions share fewer documents than they
should; a wrong version lets the gate compare models trained on different data as if on the same.
Every test states what must hold for any corpus, checked on generated corpora where inputs vary.
"""

from __future__ import annotations

import hashlib
import string
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from longdoc.config.params import DataParams
from longdoc.data.splits import (
    SMALL_LABEL_DOCS,
    _ranked_splits,
    _split_of,
    assign_splits,
    id_point,
    sample_per_label,
    slice_and_split,
)
from longdoc.data.versioning import (
    UNTRACKED,
    VERSION_CHARS,
    corpus_version,
    dvc_data_version,
    file_sha256,
    tracked_dvc_version,
)

PROPS = settings(max_examples=60, deadline=None)
SPLITS = {"train", "val", "test"}

IDS = st.text(string.ascii_lowercase + string.digits + "/_", min_size=1, max_size=10)
SEEDS = st.integers(0, 10_000)
FRACTIONS = st.tuples(st.floats(0.01, 0.49), st.one_of(st.just(0.0), st.floats(0.01, 0.49)))


def corpus(ids: list[str], labels: list[str]) -> pd.DataFrame:
    """A corpus frame whose text names its id, so a row can be traced through a copy."""
    return pd.DataFrame({"id": ids, "text": [f"text of {i}" for i in ids], "label": labels})


@st.composite
def corpora(draw: st.DrawFn, max_labels: int = 3, max_size: int = 120) -> pd.DataFrame:
    """Unique ids spread over a few labels, in no particular row order."""
    ids = draw(st.lists(IDS, min_size=0, max_size=max_size, unique=True))
    labels = draw(st.lists(st.sampled_from("abcdef"[:max_labels]), min_size=len(ids), max_size=len(ids)))
    return corpus(ids, labels)


def interval_split(point: float, params: DataParams) -> str:
    """The split the documented intervals give: test [0, t), val [t, t + v), train [t + v, 1)."""
    if point < params.test_fraction:
        return "test"
    return "val" if point < params.test_fraction + params.val_fraction else "train"


# --- id_point ------------------------------------------------------------------------------------


@PROPS
@given(st.lists(IDS, min_size=1, max_size=20), SEEDS)
def test_id_point_lies_in_the_unit_interval_and_is_a_function_of_id_and_seed(ids: list[str], seed: int) -> None:
    """A point outside [0, 1) would fall in no split; one that varied between calls would move documents."""
    for doc_id in ids:
        for purpose in ("split", "sample"):
            point = id_point(doc_id, seed, purpose)
            assert 0.0 <= point < 1.0
            assert point == id_point(doc_id, seed, purpose)


def test_id_point_is_spread_uniformly_over_the_unit_interval() -> None:
    """The split shares equal the configured fractions only if the points are uniform over all of [0, 1)."""
    points = np.array([id_point(f"doc-{i}", 13) for i in range(4000)])
    assert abs(points.mean() - 0.5) < 0.03
    assert abs((points < 0.15).mean() - 0.15) < 0.03
    assert points.max() > 0.95 and points.min() < 0.05
    assert len(set(points)) == len(points)


def test_id_point_depends_on_the_seed_and_is_salted_by_purpose() -> None:
    """Another seed re-deals the documents; the sample's salt keeps a slice from being all test documents."""
    ids = [f"doc-{i}" for i in range(200)]
    split = [id_point(i, 13) for i in ids]
    assert split == [id_point(i, 13, "split") for i in ids]
    assert sum(a != b for a, b in zip(split, [id_point(i, 14) for i in ids], strict=True)) == len(ids)
    sample = [id_point(i, 13, "sample") for i in ids]
    assert sum(a != b for a, b in zip(split, sample, strict=True)) == len(ids)
    assert abs(float(np.corrcoef(split, sample)[0, 1])) < 0.25


def test_id_point_is_the_same_on_every_machine_and_release() -> None:
    """Recorded splits and data versions rely on the hash never changing: pinned values from the shipped scheme."""
    def sha_point(key: bytes) -> float:
        return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") / 2**64

    assert id_point("business/001", 13) == sha_point(b"13:business/001") == 0.8074672610888239
    assert id_point("business/001", 13, "sample") == sha_point(b"sample:13:business/001") == 0.3935288358906644


# --- the split of one point, and the exact shares of a small label -------------------------------


@PROPS
@given(FRACTIONS)
def test_split_intervals_are_half_open_and_cover_the_unit_interval(fractions: tuple[float, float]) -> None:
    """test is [0, t), val is [t, t + v), train the rest: each boundary point belongs to the split above it."""
    test_fraction, val_fraction = fractions
    params = DataParams(test_fraction=test_fraction, val_fraction=val_fraction)
    assert _split_of(0.0, params) == "test"
    assert _split_of(np.nextafter(test_fraction, 0.0), params) == "test"
    assert _split_of(test_fraction, params) == ("val" if val_fraction > 0 else "train")
    boundary = test_fraction + val_fraction
    if val_fraction > 0:
        assert _split_of(np.nextafter(boundary, 0.0), params) == "val"
    assert _split_of(boundary, params) == "train"
    assert _split_of(np.nextafter(1.0, 0.0), params) == "train"


@PROPS
@given(st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=0, max_size=SMALL_LABEL_DOCS - 1, unique=True),
       FRACTIONS)
def test_a_small_label_gets_exact_shares_by_rank(points: list[float], fractions: tuple[float, float]) -> None:
    """Exact shares (rounded, at least one test from 2 documents and one val from 3), lowest points first."""
    test_fraction, val_fraction = fractions
    params = DataParams(test_fraction=test_fraction, val_fraction=val_fraction)
    n = len(points)
    out = _ranked_splits(np.array(points), params)
    counts = Counter(out)
    assert len(out) == n and set(out) <= SPLITS
    assert counts["test"] == (max(1, round(n * test_fraction)) if n >= 2 else 0)
    assert counts["val"] == (max(1, round(n * val_fraction)) if n >= 3 and val_fraction > 0 else 0)
    rank = {"test": 0, "val": 1, "train": 2}
    by_point = [rank[s] for _, s in sorted(zip(points, out, strict=True))]
    assert by_point == sorted(by_point)  # every test point lies below every val point, and val below train


@pytest.mark.parametrize("n, expected", [
    (0, {}),
    (1, {"train": 1}),
    (2, {"test": 1, "train": 1}),
    (3, {"test": 1, "val": 1, "train": 1}),
    (20, {"test": 3, "val": 2, "train": 15}),
])
def test_the_smallest_labels_still_get_a_test_and_then_a_val_document(n: int, expected: dict[str, int]) -> None:
    """One document can only train; two give a test document; three give a val document too."""
    points = np.linspace(0.9, 0.1, n) if n else np.array([])
    assert Counter(_ranked_splits(points, DataParams())) == Counter(expected)


def test_no_val_document_when_the_val_fraction_is_zero() -> None:
    """val_fraction = 0 means no validation split, not one forced document per label."""
    params = DataParams(val_fraction=0.0)
    assert Counter(_ranked_splits(np.linspace(0, 1, 10, endpoint=False), params)) == {"test": 2, "train": 8}
    frame = corpus([f"d{i:03d}" for i in range(90)], ["a"] * 30 + ["b"] * 60)
    assert "val" not in set(assign_splits(frame, params)["split"])


def test_ties_between_points_keep_the_row_order() -> None:
    """Equal points (a duplicated id) are ranked in row order, so a rerun gives the same splits."""
    assert _ranked_splits(np.array([0.5] * 30), DataParams()) == ["test"] * 4 + ["val"] * 3 + ["train"] * 23
    points = np.array([0.5] * 20 + [0.1] * 19)  # 39 documents: 6 test, 4 val, all among the 0.1 copies
    assert _ranked_splits(points, DataParams()) == ["train"] * 20 + ["test"] * 6 + ["val"] * 4 + ["train"] * 9


# --- assign_splits -------------------------------------------------------------------------------


@PROPS
@given(corpora(), SEEDS, FRACTIONS)
def test_assign_splits_keeps_every_row_and_gives_each_a_split(frame: pd.DataFrame, seed: int,
                                                             fractions: tuple[float, float]) -> None:
    """The result is the same rows, ordered by id, each with exactly one of the three splits."""
    params = DataParams(seed=seed, test_fraction=fractions[0], val_fraction=fractions[1])
    out = assign_splits(frame, params)
    assert list(out.columns) == [*frame.columns, "split"]
    assert out["id"].tolist() == sorted(frame["id"])
    assert out.index.tolist() == list(range(len(frame)))
    assert out["split"].dtype == object
    assert set(out["split"]) <= SPLITS and out["split"].map(type).eq(str).all()
    pd.testing.assert_frame_equal(out.drop(columns="split"), frame.sort_values("id").reset_index(drop=True))
    assert "split" not in frame.columns  # the input is not modified


@PROPS
@given(corpora(max_labels=2, max_size=150), SEEDS)
def test_splits_do_not_depend_on_row_order(frame: pd.DataFrame, seed: int) -> None:
    """A document's split is a function of the corpus, never of the order its rows were read in."""
    params = DataParams(seed=seed)
    reordered = frame.iloc[::-1].reset_index(drop=True)
    pd.testing.assert_frame_equal(assign_splits(frame, params), assign_splits(reordered, params))


@PROPS
@given(st.lists(IDS, min_size=SMALL_LABEL_DOCS, max_size=SMALL_LABEL_DOCS + 40, unique=True), SEEDS, FRACTIONS)
def test_a_large_label_is_split_by_each_documents_own_point(ids: list[str], seed: int,
                                                           fractions: tuple[float, float]) -> None:
    """From SMALL_LABEL_DOCS documents on, a document's split is its point's interval: no other document counts."""
    params = DataParams(seed=seed, test_fraction=fractions[0], val_fraction=fractions[1])
    out = assign_splits(corpus(ids, ["big"] * len(ids)), params)
    assert out["split"].tolist() == [interval_split(id_point(i, seed), params) for i in out["id"]]


def test_a_label_of_exactly_small_label_docs_is_hashed_and_one_fewer_is_ranked() -> None:
    """The threshold is SMALL_LABEL_DOCS documents: at it the hash decides, one below it the rank does."""
    params = DataParams(seed=5)
    ids = [f"id-{i}" for i in range(SMALL_LABEL_DOCS)]
    at = assign_splits(corpus(ids, ["x"] * len(ids)), params)
    hashed = [interval_split(id_point(i, params.seed), params) for i in at["id"]]
    assert at["split"].tolist() == hashed
    below = assign_splits(corpus(ids[:-1], ["x"] * (len(ids) - 1)), params)
    n = SMALL_LABEL_DOCS - 1
    assert Counter(below["split"]) == {"test": round(n * 0.15), "val": round(n * 0.1),
                                       "train": n - round(n * 0.15) - round(n * 0.1)}
    ranked = _ranked_splits(np.array([id_point(i, params.seed) for i in at["id"]]), params)
    assert ranked != hashed  # the two rules disagree on this label, so the threshold is observable


@PROPS
@given(st.lists(IDS, min_size=2, max_size=SMALL_LABEL_DOCS - 1, unique=True), SEEDS)
def test_a_small_label_is_split_by_the_rank_of_its_points(ids: list[str], seed: int) -> None:
    """Below SMALL_LABEL_DOCS the lowest split points are test and the next val, in exact shares."""
    params = DataParams(seed=seed)
    out = assign_splits(corpus(ids, ["small"] * len(ids)), params)
    points = np.array([id_point(i, seed) for i in out["id"]])
    assert out["split"].tolist() == _ranked_splits(points, params)
    assert (out["split"] == "test").sum() >= 1


@PROPS
@given(corpora(max_size=100), st.data(), SEEDS)
def test_a_given_split_is_kept_and_only_missing_ones_are_assigned(frame: pd.DataFrame, data: st.DataObject,
                                                                  seed: int) -> None:
    """A user's split column wins row by row; None, NaN and NA mean 'assign one'; the rest are assigned as if alone."""
    missing = st.sampled_from([None, np.nan, pd.NA])
    given_splits = data.draw(st.lists(st.one_of(st.sampled_from(sorted(SPLITS)), missing),
                                      min_size=len(frame), max_size=len(frame)))
    params = DataParams(seed=seed)
    with_given = frame.assign(split=pd.Series(given_splits, dtype=object, index=frame.index))
    out = assign_splits(with_given, params).set_index("id")["split"]
    assert set(out) <= SPLITS
    is_given = [isinstance(s, str) for s in given_splits]
    for doc_id, split in zip(frame["id"][is_given], np.array(given_splits, dtype=object)[is_given], strict=True):
        assert out[doc_id] == split
    rest = frame[[not g for g in is_given]]
    if len(rest):
        alone = assign_splits(rest, params).set_index("id")["split"]
        assert out.loc[alone.index].tolist() == alone.tolist()


def test_a_fully_given_label_does_not_stop_the_others_being_assigned() -> None:
    """A label whose every row has a split is skipped, and the labels after it are still assigned."""
    frame = corpus([f"d{i}" for i in range(12)], ["a"] * 6 + ["b"] * 6)
    frame["split"] = ["train"] * 6 + [None] * 6
    out = assign_splits(frame, DataParams())
    assert out["split"].tolist()[:6] == ["train"] * 6
    assert Counter(out["split"][6:]) == {"test": 1, "val": 1, "train": 4}


def test_a_split_column_of_missing_values_is_assigned_like_no_column() -> None:
    """A split column read with only missing values (floats, NaN) is no choice at all: the same splits as none."""
    frame = corpus([f"d{i}" for i in range(30)], ["a", "b", "c"] * 10)
    expected = assign_splits(frame, DataParams())
    nan_column = assign_splits(frame.assign(split=np.nan), DataParams())
    pd.testing.assert_frame_equal(nan_column, expected)


def test_integer_ids_get_the_split_of_their_string() -> None:
    """An id read as a number is split like its text, so re-reading a corpus with other dtypes moves nothing."""
    numbers = corpus(list(range(60)), ["a"] * 60)
    strings = corpus([str(i) for i in range(60)], ["a"] * 60)
    assert assign_splits(numbers, DataParams())["split"].tolist() == (
        assign_splits(strings, DataParams()).set_index("id").loc[[str(i) for i in range(60)], "split"].tolist()
    )


def test_rows_sharing_an_id_keep_their_input_order() -> None:
    """The id sort is stable: copies of one id stay in the order given, so a rerun on the same file is identical."""
    ids = [i % 3 for i in range(60)]
    frame = pd.DataFrame({"id": ids, "text": [f"row {i}" for i in range(60)], "label": "a"})
    out = assign_splits(frame, DataParams())
    assert out["text"].tolist() == [f"row {i}" for key in range(3) for i in range(key, 60, 3)]


# --- sample_per_label and slice_and_split --------------------------------------------------------


def lowest_by_sample_point(frame: pd.DataFrame, n: int, seed: int) -> set[str]:
    """The documented slice: per label, the n documents whose sample point is lowest."""
    kept: set[str] = set()
    for _, group in frame.groupby("label"):
        kept |= set(sorted(group["id"], key=lambda i: id_point(str(i), seed, "sample"))[:n])
    return kept


@PROPS
@given(corpora(), st.integers(1, 30), SEEDS)
def test_a_slice_keeps_at_most_n_per_label_chosen_by_the_sample_hash(frame: pd.DataFrame, n: int, seed: int) -> None:
    """min(n, size) documents per label, the ones with the lowest sample point, as whole rows ordered by id."""
    out = sample_per_label(frame, n, seed)
    assert list(out.columns) == list(frame.columns)
    sizes = Counter(frame["label"])
    assert Counter(out["label"]) == {label: min(n, size) for label, size in sizes.items()}
    assert set(out["id"]) == lowest_by_sample_point(frame, n, seed)
    assert out["id"].tolist() == sorted(out["id"])
    assert out.index.tolist() == list(range(len(out)))
    assert [t == f"text of {i}" for i, t in zip(out["id"], out["text"], strict=True)] == [True] * len(out)


@PROPS
@given(corpora(max_size=80), st.lists(IDS, max_size=40), st.integers(1, 20), SEEDS)
def test_adding_documents_only_drops_a_sampled_document_when_a_new_one_outranks_it(
        frame: pd.DataFrame, extra: list[str], n: int, seed: int) -> None:
    """Two data versions share their slices: an old document leaves the slice only for a new one, never for an old."""
    new_ids = sorted(set(extra) - set(frame["id"]))
    grown = pd.concat([frame, corpus(new_ids, ["a"] * len(new_ids))], ignore_index=True)
    before = set(sample_per_label(frame, n, seed)["id"])
    after = set(sample_per_label(grown, n, seed)["id"])
    assert after & set(frame["id"]) <= before
    if not new_ids:
        assert after == before


def test_copies_of_one_id_are_sampled_in_row_order() -> None:
    """Copies of an id tie on the sample hash; the first rows win, so the slice is a function of the file."""
    frame = pd.DataFrame({"id": [3] * 30 + [7] * 30, "text": [f"row {i}" for i in range(60)], "label": "a"})
    out = sample_per_label(frame, 40, 13)
    low, high = sorted((7, 3), key=lambda i: id_point(str(i), 13, "sample"))
    rows_of = {key: [i for i in range(60) if frame["id"][i] == key] for key in (3, 7)}
    kept = {low: rows_of[low], high: rows_of[high][:10]}  # every copy of the lower point, then the first rows
    assert out["text"].tolist() == [f"row {i}" for key in (3, 7) for i in kept[key]]


@PROPS
@given(st.lists(st.tuples(st.integers(0, 15), st.sampled_from("abc")), min_size=1, max_size=60, unique=True),
       st.integers(1, 10), st.randoms(use_true_random=False))
def test_a_slice_does_not_depend_on_row_order_when_an_id_is_in_several_labels(
        pairs: list[tuple[int, str]], n: int, rnd) -> None:
    """An id may repeat across labels; the slice is still ordered by id, then label, whatever order rows came in."""
    frame = pd.DataFrame({"id": [i for i, _ in pairs], "text": [f"{i} {lab}" for i, lab in pairs],
                          "label": [lab for _, lab in pairs]})
    order = list(range(len(frame)))
    rnd.shuffle(order)
    out = sample_per_label(frame, n, 13)
    pd.testing.assert_frame_equal(out, sample_per_label(frame.iloc[order], n, 13))
    assert list(zip(out["id"], out["label"], strict=True)) == sorted(zip(out["id"], out["label"], strict=True))


def test_no_sample_size_keeps_the_whole_corpus() -> None:
    """sample_per_label = None means the full corpus, untouched (same rows, same order)."""
    frame = corpus(["b", "a", "c"], ["x", "y", "x"])
    pd.testing.assert_frame_equal(sample_per_label(frame, None, 13), frame)


def test_a_corpus_without_labelled_rows_samples_to_an_empty_frame() -> None:
    """No label, no stratum: nothing is sampled, and the columns are kept for the next step."""
    frame = pd.DataFrame({"id": ["a", "b"], "text": ["x", "y"], "label": [None, None]})
    out = sample_per_label(frame, 3, 13)
    assert out.empty and list(out.columns) == ["id", "text", "label"]
    assert sample_per_label(frame.iloc[:0], 3, 13).empty


def test_the_slice_depends_on_the_seed() -> None:
    """Another seed gives another slice (the seed is not ignored)."""
    frame = corpus([f"d{i}" for i in range(100)], ["a"] * 100)
    slices = {tuple(sample_per_label(frame, 10, seed)["id"]) for seed in range(5)}
    assert len(slices) == 5


@PROPS
@given(corpora(max_size=100), st.one_of(st.none(), st.integers(2, 30)), SEEDS)
def test_slice_and_split_is_the_seeded_slice_with_splits_assigned(frame: pd.DataFrame, n: int | None,
                                                                 seed: int) -> None:
    """The corpus a run validates: the configured slice (with the run's seed), every document given a split."""
    params = DataParams(seed=seed, sample_per_label=n)
    out = slice_and_split(frame, params)
    expected_ids = set(frame["id"]) if n is None else lowest_by_sample_point(frame, n, seed)
    assert set(out["id"]) == expected_ids and len(out) == len(expected_ids)
    assert set(out["split"]) <= SPLITS
    sliced = frame[frame["id"].isin(expected_ids)]
    pd.testing.assert_frame_equal(out, assign_splits(sliced, params))


# --- corpus_version ------------------------------------------------------------------------------


SPLIT_FRAMES = st.lists(st.tuples(IDS, st.sampled_from("ab"), st.sampled_from(sorted(SPLITS)), st.text(max_size=20)),
                        min_size=1, max_size=12, unique_by=lambda r: r[0]).map(
    lambda rows: pd.DataFrame(rows, columns=["id", "label", "split", "text"]))


@PROPS
@given(SPLIT_FRAMES, st.randoms(use_true_random=False))
def test_the_version_is_a_short_hex_hash_of_the_data_not_of_row_order_or_other_columns(frame: pd.DataFrame,
                                                                                        rnd) -> None:
    """Row order, column order and extra columns are not data; the version is VERSION_CHARS hex digits."""
    version = corpus_version(frame)
    assert len(version) == VERSION_CHARS and set(version) <= set("0123456789abcdef")
    order = list(frame.index)
    rnd.shuffle(order)
    shuffled = frame.loc[order, ["text", "split", "id", "label"]].assign(n_chars=frame["text"].str.len())
    assert corpus_version(shuffled) == version


@PROPS
@given(SPLIT_FRAMES, st.sampled_from(["id", "label", "split", "text"]), st.integers(0, 11))
def test_changing_any_hashed_field_of_any_row_changes_the_version(frame: pd.DataFrame, column: str, row: int) -> None:
    """An edit, a relabel, a moved split or a renamed document is another data version."""
    row = row % len(frame)
    changed = frame.copy()
    changed.loc[row, column] = changed.loc[row, column] + "~"
    assert corpus_version(changed) != corpus_version(frame)
    assert corpus_version(frame.drop(index=row)) != corpus_version(frame)


def test_the_version_is_unambiguous_about_field_boundaries() -> None:
    """Moving characters between fields or rows is other data: each value is length-prefixed."""
    base = pd.DataFrame({"id": ["ab"], "label": ["c"], "split": ["test"], "text": ["t"]})
    moved = pd.DataFrame({"id": ["a"], "label": ["bc"], "split": ["test"], "text": ["t"]})
    assert corpus_version(base) != corpus_version(moved)
    two = pd.DataFrame({"id": ["1", "2"], "label": ["a", "a"], "split": ["x", "x"], "text": ["y", "y"]})
    merged = pd.DataFrame({"id": ["1"], "label": ["a"], "split": ["x"], "text": ["y2axy"]})
    assert corpus_version(two) != corpus_version(merged)


def test_the_version_hashes_only_the_columns_present() -> None:
    """A frame before splits have been assigned has a version too, and adding splits changes it."""
    frame = pd.DataFrame({"id": ["1", "2"], "label": ["a", "b"], "text": ["x", "y"]})
    assert len(corpus_version(frame)) == VERSION_CHARS
    assert corpus_version(frame) != corpus_version(frame.assign(split="train"))
    assert corpus_version(frame.iloc[:0]) == hashlib.sha256().hexdigest()[:VERSION_CHARS]


def test_the_version_hashes_rows_in_id_order_keeping_the_given_order_of_copies() -> None:
    """Sorting the rows by id first (stably) changes nothing: the version is defined on the id-ordered table."""
    frame = pd.DataFrame({"id": [i % 4 for i in range(80)], "label": "a", "split": "train",
                          "text": [f"row {i}" for i in range(80)]})
    assert corpus_version(frame) == corpus_version(frame.sort_values("id", kind="stable"))
    assert corpus_version(frame) != corpus_version(frame.iloc[::-1])  # copies of an id are ordered rows


def test_the_version_is_the_same_on_every_machine_and_release() -> None:
    """Versions recorded on registered models are compared by the gate later: the scheme is pinned here."""
    frame = pd.DataFrame({"id": ["b", "a"], "label": ["y", "x"], "split": ["train", "test"], "text": ["two", "one"]})
    expected = hashlib.sha256()
    for value in ["a", "x", "test", "one", "b", "y", "train", "two"]:
        expected.update(len(value).to_bytes(8, "big") + value.encode())
    assert corpus_version(frame) == expected.hexdigest()[:VERSION_CHARS]
    assert corpus_version(frame) == "a71325c69b1b388a"


# --- DVC md5 and file hashes ---------------------------------------------------------------------


def write_dvc(path: Path, content: object) -> Path:
    path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))
    return path


@pytest.mark.parametrize("content, expected", [
    ({"outs": [{"md5": "abc123.dir", "path": "data"}]}, "abc123.dir"),
    ({"outs": [{"path": "data"}]}, UNTRACKED),
    ({"outs": []}, UNTRACKED),
    ({"outs": None}, UNTRACKED),
    ({"other": 1}, UNTRACKED),
    ("", UNTRACKED),
])
def test_dvc_data_version_reads_the_first_outs_md5(tmp_path: Path, content: object, expected: str) -> None:
    """The md5 DVC recorded, or 'untracked' for any .dvc file that records none (never a crash)."""
    assert dvc_data_version(write_dvc(tmp_path / "data.dvc", content)) == expected
    assert dvc_data_version(str(tmp_path / "data.dvc")) == expected


def test_without_a_dvc_file_the_data_is_untracked(tmp_path: Path) -> None:
    """No .dvc file (or a folder in its place) means no DVC version, for both readers."""
    assert dvc_data_version(tmp_path / "missing.dvc") == UNTRACKED
    assert dvc_data_version(tmp_path) == UNTRACKED
    assert tracked_dvc_version(tmp_path / "data", tmp_path / "missing.dvc") == UNTRACKED
    assert tracked_dvc_version(tmp_path / "data", tmp_path) == UNTRACKED


def test_a_corpus_inside_the_tracked_folder_carries_the_dvc_md5(tmp_path: Path) -> None:
    """The tracked path is relative to the .dvc file (not the working directory); a sibling is not inside."""
    project = tmp_path / "project"
    (project / "data" / "sub").mkdir(parents=True)
    dvc = write_dvc(project / "data.dvc", {"outs": [{"md5": "m5.dir", "path": "data"}]})
    assert tracked_dvc_version(project / "data" / "corpus.jsonl", dvc) == "m5.dir"
    assert tracked_dvc_version(project / "data" / "sub" / "x.jsonl", dvc) == "m5.dir"
    assert tracked_dvc_version(project / "data", dvc) == "m5.dir"
    assert tracked_dvc_version(str(project / "data" / ".." / "data" / "corpus.jsonl"), str(dvc)) == "m5.dir"
    assert tracked_dvc_version(project / "data2" / "corpus.jsonl", dvc) == UNTRACKED
    assert tracked_dvc_version(project / "corpus.jsonl", dvc) == UNTRACKED
    assert tracked_dvc_version(tmp_path / "data" / "corpus.jsonl", dvc) == UNTRACKED


@pytest.mark.parametrize("content", [{"outs": [{"path": "data"}]}, {"outs": None}, "", {"outs": []}])
def test_a_tracked_corpus_without_a_recorded_md5_is_untracked(tmp_path: Path, content: object) -> None:
    """Inside the tracked folder but no md5 recorded: no version is invented."""
    dvc = write_dvc(tmp_path / "data.dvc", content)
    assert tracked_dvc_version(tmp_path / "data" / "corpus.jsonl", dvc) == UNTRACKED


def test_an_outs_entry_without_a_path_tracks_the_dvc_files_folder(tmp_path: Path) -> None:
    """A missing path means the .dvc file's own folder, so only corpora under that folder carry its md5."""
    (tmp_path / "proj").mkdir()
    dvc = write_dvc(tmp_path / "proj" / "data.dvc", {"outs": [{"md5": "m5"}]})
    assert tracked_dvc_version(tmp_path / "proj" / "corpus.jsonl", dvc) == "m5"
    assert tracked_dvc_version(tmp_path / "other" / "corpus.jsonl", dvc) == UNTRACKED


def test_the_default_dvc_file_is_data_dvc_in_the_working_directory(tmp_path: Path, monkeypatch) -> None:
    """Run from a project folder, both readers find its data.dvc without being told."""
    (tmp_path / "data").mkdir()
    write_dvc(tmp_path / "data.dvc", {"outs": [{"md5": "d41d8.dir", "path": "data"}]})
    monkeypatch.chdir(tmp_path)
    assert dvc_data_version() == "d41d8.dir"
    assert tracked_dvc_version("data/corpus.jsonl") == "d41d8.dir"
    assert tracked_dvc_version(tmp_path / "elsewhere.jsonl") == UNTRACKED


def test_file_sha256_of_a_file_is_its_content_hash(tmp_path: Path) -> None:
    """The lineage hash of one file is the standard sha256 of its bytes, whatever its name."""
    path = tmp_path / "corpus.jsonl"
    path.write_bytes(b'{"id": "1"}\n')
    assert file_sha256(path) == hashlib.sha256(b'{"id": "1"}\n').hexdigest()
    assert file_sha256(str(path)) == file_sha256(path)


@PROPS
@given(st.dictionaries(st.sampled_from(["a", "b", "z", "m/x", "m/y", "q/r/s"]), st.binary(max_size=20), min_size=1))
def test_file_sha256_of_a_folder_hashes_every_file_in_path_order(files: dict[str, bytes]) -> None:
    """Every file under the folder counts, in sorted path order whatever order they were written in."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for name in sorted(files, reverse=True):
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_bytes(files[name])
        (root / "empty_dir").mkdir()
        in_order = sorted(files, key=lambda name: Path(name).parts)
        expected = hashlib.sha256(b"".join(files[name] for name in in_order)).hexdigest()
        assert file_sha256(root) == expected
