import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from longdoc.config import DataParams
from longdoc.data.corpus import read_corpus, write_jsonl
from longdoc.data.splits import assign_splits
from longdoc.errors import LongdocError
from tests.conftest import ROOT


def test_demo_corpus_has_five_topics_without_duplicates(demo_corpus):
    frame = read_corpus(demo_corpus)
    assert sorted(frame["label"].unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert frame["id"].is_unique and frame["text"].is_unique
    assert len(frame) == 2124


def test_demo_reproduces_the_hash_in_data_dvc(tmp_path):
    """A fresh clone that writes the demo gets exactly the data version committed in data.dvc."""
    env = {"DVC_NO_ANALYTICS": "1"}
    subprocess.run([sys.executable, "-m", "dvc", "init", "--no-scm", "-q"], cwd=tmp_path, check=True, env=env)
    from longdoc.data.demo import write_demo

    write_demo(tmp_path / "data" / "corpus.jsonl")
    subprocess.run([sys.executable, "-m", "dvc", "add", "data", "-q"], cwd=tmp_path, check=True, env=env)
    made = yaml.safe_load((tmp_path / "data.dvc").read_text())["outs"][0]
    committed = yaml.safe_load((ROOT / "data.dvc").read_text())["outs"][0]
    assert made["md5"] == committed["md5"]


def test_splits_are_deterministic_stratified_and_disjoint(demo_corpus):
    frame = read_corpus(demo_corpus)
    a = assign_splits(frame, DataParams())
    b = assign_splits(frame.sample(frac=1.0, random_state=1), DataParams())
    assert a["split"].tolist() == b["split"].tolist()
    shares = a.groupby("label")["split"].apply(lambda s: (s == "test").mean())
    assert shares.between(0.13, 0.17).all()
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
