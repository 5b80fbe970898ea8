import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from longdoc.config.params import DataParams
from longdoc.data.corpus import read_corpus, write_jsonl
from longdoc.data.demo import DEMO_DVC_MD5
from longdoc.data.splits import assign_splits, sample_per_label
from longdoc.data.versioning import corpus_version
from longdoc.errors import LongdocError


def test_demo_corpus_has_five_topics_without_duplicates(demo_corpus):
    frame = read_corpus(demo_corpus)
    assert sorted(frame["label"].unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert frame["id"].is_unique and frame["text"].is_unique
    assert len(frame) == 2124


def test_demo_reproduces_its_dvc_hash(tmp_path):
    """Writing the demo gives the same DVC md5 on every machine (whatever corpus data.dvc tracks now)."""
    env = {"DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    from longdoc.data.demo import write_demo

    write_demo(tmp_path / "data" / "corpus.jsonl")
    subprocess.run([sys.executable, "-m", "dvc", "add", "data", "-q"], cwd=tmp_path, check=True, env=env)
    made = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    assert made["md5"] == DEMO_DVC_MD5


def test_splits_are_deterministic_stratified_and_disjoint(demo_corpus):
    frame = read_corpus(demo_corpus)
    a = assign_splits(frame, DataParams())
    b = assign_splits(frame.sample(frac=1.0, random_state=1), DataParams())
    assert a["split"].tolist() == b["split"].tolist()
    shares = a.groupby("label")["split"].apply(lambda s: (s == "test").mean())
    assert shares.between(0.09, 0.21).all()  # a hash per id: binomial around 0.15 for 386-510 documents
    assert set(a["split"]) == {"train", "val", "test"}


def test_folder_import_equals_jsonl(tmp_path):
    for label, text in [("a", "Alpha text here."), ("b", "Beta text here.")]:
        (tmp_path / "src" / label).mkdir(parents=True)
        (tmp_path / "src" / label / "001.txt").write_text(text)
    frame = read_corpus(tmp_path / "src")
    write_jsonl(frame, tmp_path / "c.jsonl")
    pd.testing.assert_frame_equal(read_corpus(tmp_path / "c.jsonl"), frame)
    assert frame["id"].tolist() == ["a/001", "b/001"]


@pytest.mark.parametrize("content, message", [
    ('{"id": "1", "label": "a"}\n', "line 1|:1: missing field\\(s\\) text"),
    ('{"id": "1", "text": "t", "label": "a"}\n{"id": 2,\n', ":2: not valid JSON"),
    ('[1, 2]\n', ":1: expected a JSON object"),
])
def test_bad_jsonl_names_the_line(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(LongdocError, match=message):
        read_corpus(path)


def test_invalid_utf8_is_reported(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(json.dumps({"id": "1", "text": "ok", "label": "a"}).encode() + b"\n" + b'{"id": "\xff"}\n')
    with pytest.raises(LongdocError, match=":2: not valid UTF-8"):
        read_corpus(path)


def test_missing_corpus(tmp_path):
    with pytest.raises(LongdocError, match="corpus not found"):
        read_corpus(tmp_path / "nope.jsonl")


def test_adding_documents_moves_no_existing_document_and_changes_the_version(demo_corpus):
    frame = read_corpus(demo_corpus)
    before = assign_splits(frame.iloc[::2], DataParams())
    after = assign_splits(frame, DataParams())  # twice the documents
    moved = after.set_index("id").loc[before["id"], "split"].to_numpy() != before["split"].to_numpy()
    assert not moved.any()
    assert corpus_version(before) != corpus_version(after)
    assert corpus_version(before) == corpus_version(before.sample(frac=1.0, random_state=3))  # row order is not data


def test_edits_and_slices_change_the_data_version(small_corpus):
    frame = assign_splits(read_corpus(small_corpus), DataParams())
    edited = frame.copy()
    edited.loc[0, "text"] = edited.loc[0, "text"] + " One more sentence."
    relabelled = frame.copy()
    relabelled.loc[0, "label"] = "tech" if frame.loc[0, "label"] != "tech" else "business"
    versions = {corpus_version(f) for f in (frame, edited, relabelled, sample_per_label(frame, 6, 13))}
    assert len(versions) == 4


def test_a_users_split_column_is_kept_row_by_row(small_corpus):
    frame = read_corpus(small_corpus)
    frame["split"] = None
    frame.loc[:9, "split"] = "test"  # ten rows say test, the rest say nothing
    out = assign_splits(frame, DataParams()).set_index("id")
    assert (out.loc[frame.loc[:9, "id"], "split"] == "test").all()
    assert set(out["split"]) <= {"train", "val", "test"} and out["split"].notna().all()


def test_small_labels_get_a_test_and_val_document(small_corpus):
    frame = assign_splits(read_corpus(small_corpus), DataParams())  # 12 per label
    counts = frame.groupby("label")["split"].value_counts().unstack(fill_value=0)
    assert (counts["test"] >= 1).all() and (counts["val"] >= 1).all() and (counts["train"] >= 8).all()


def test_a_slice_keeps_every_split(demo_corpus):
    """The slice and the split hash documents independently: a hash-chosen slice is not all test documents."""
    frame = sample_per_label(read_corpus(demo_corpus), 40, 13)
    counts = assign_splits(frame, DataParams())["split"].value_counts()
    assert counts["train"] > counts["test"] > 0 and counts["val"] > 0


@settings(max_examples=60, deadline=None)
@given(ids=st.sets(st.text("abcdefghij0123456789/", min_size=1, max_size=12), min_size=90, max_size=160),
       extra=st.sets(st.text("klmnopqrstuvwxyz", min_size=1, max_size=12), min_size=1, max_size=60),
       seed=st.integers(0, 1000))
def test_adding_documents_never_moves_one_property(ids, extra, seed):
    """For labels at or above SMALL_LABEL_DOCS, a document's split depends on its id and the seed alone."""
    from longdoc.data.splits import SMALL_LABEL_DOCS

    params = DataParams(seed=seed)
    before = pd.DataFrame({"id": sorted(ids), "text": "t", "label": "a"})
    after = pd.concat([before, pd.DataFrame({"id": sorted(extra - ids), "text": "t", "label": "a"})])
    assert len(before) >= SMALL_LABEL_DOCS
    old = assign_splits(before, params).set_index("id")["split"]
    new = assign_splits(after, params).set_index("id")["split"]
    assert (new.loc[old.index] == old).all()
