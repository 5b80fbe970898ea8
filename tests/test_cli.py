"""The CLI answers fast and turns a user's mistake into a message and exit code 2, never a traceback."""

import json
import time

from tests.conftest import cli


def _clean_failure(done, fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_help_is_fast():
    started = time.perf_counter()
    done = cli("--help")
    assert done.returncode == 0 and "pipeline" in done.stdout
    assert time.perf_counter() - started < 5  # no torch/mlflow/GX import at start-up (~1 s measured)


def test_missing_corpus(tmp_path):
    _clean_failure(cli("run", "--set", f"data.corpus={tmp_path}/missing.jsonl"), "corpus not found")


def test_jsonl_line_without_text(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "1", "text": "A text long enough.", "label": "a"}) + "\n"
                    + json.dumps({"id": "2", "label": "a"}) + "\n")
    _clean_failure(cli("validate", "--set", f"data.corpus={path}", "--out", str(tmp_path / "v")),
                   "c.jsonl:2: missing field(s) text")


def test_unknown_label_in_test_split_fails_validation_with_report(tmp_path, small_corpus):
    rows = [json.loads(line) for line in small_corpus.read_text().splitlines()]
    for i, row in enumerate(rows):
        row["split"] = "test" if i % 5 == 0 else "train"
    rows[0]["label"] = "weather"
    path = tmp_path / "c.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    done = cli("validate", "--set", f"data.corpus={path}", "--set", "data.on_invalid=fail", "--out",
               str(tmp_path / "v"))
    _clean_failure(done, "corpus validation failed")
    assert rows[0]["id"] in done.stderr
    report = json.loads((tmp_path / "v" / "validation.json").read_text())
    assert not report["success"]
    assert not (tmp_path / "v" / "corpus.parquet").exists()  # nothing for later stages to pick up


def test_unreachable_tracking_uri_fails_before_training(small_corpus):
    started = time.perf_counter()
    done = cli("run", "--set", f"data.corpus={small_corpus}", "--set", "registry.tracking_uri=http://127.0.0.1:9",
               env={"MLFLOW_TRACKING_URI": ""})
    _clean_failure(done, "MLflow tracking server http://127.0.0.1:9 cannot be reached")
    assert time.perf_counter() - started < 30


def test_bad_set_override():
    _clean_failure(cli("validate", "--set", "train.epochs"), "--set expects key=value")
    _clean_failure(cli("validate", "--set", "train.variants=[bigbird]"), "unknown variant 'bigbird'")


def test_unknown_variant(small_corpus):
    _clean_failure(cli("run", "--set", f"data.corpus={small_corpus}", "--set", "train.variants=[bigbird]"),
                   "unknown variant 'bigbird'")
