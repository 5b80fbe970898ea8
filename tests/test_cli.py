"""The CLI starts light and turns a user's mistake into a message and exit code 2, never a traceback.

How long it takes is a figure in `bench/` (`python -m bench.run --only cli`), not an assertion here.
"""

import json
import subprocess
import sys

from tests.conftest import cli


def _clean_failure(done, fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert fragment in done.stderr
    assert "Traceback" not in done.stderr + done.stdout


def test_help_lists_the_commands():
    done = cli("--help")
    assert done.returncode == 0
    for command in ("run", "validate", "train", "gate", "package", "serve", "pipeline", "models", "data"):
        assert f" {command} " in done.stdout, command


def test_start_up_imports_no_heavy_library():
    """torch, mlflow, GX, kfp, transformers and bentoml are imported by the commands that use them."""
    probe = ("import sys; import longdoc.cli.app; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & "
             "{'torch', 'mlflow', 'great_expectations', 'kfp', 'transformers', 'bentoml', 'sklearn'}))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr


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


def test_unreachable_tracking_uri_fails_before_training(small_corpus, tmp_path):
    done = cli("run", "--set", f"data.corpus={small_corpus}", "--set", "registry.tracking_uri=http://127.0.0.1:9",
               "--set", f"pipeline.pipeline_root={tmp_path / 'kfp'}", env={"MLFLOW_TRACKING_URI": ""})
    _clean_failure(done, "MLflow tracking server http://127.0.0.1:9 cannot be reached")
    assert not list(tmp_path.rglob("train_summary.json")) and not list(tmp_path.rglob("chunks.parquet"))


def test_bad_set_override():
    _clean_failure(cli("validate", "--set", "train.epochs"), "--set expects key=value")
    _clean_failure(cli("validate", "--set", "train.variants=[bigbird]"), "unknown variant 'bigbird'")


def test_unknown_variant(small_corpus):
    _clean_failure(cli("run", "--set", f"data.corpus={small_corpus}", "--set", "train.variants=[bigbird]"),
                   "unknown variant 'bigbird'")


def test_a_malformed_dvc_reference_fails_before_any_work(tmp_path):
    """A corpus named by version must say which version: caught when the params load, before any pull."""
    done = cli("validate", "--set", "data.corpus=dvc://https://git.example/acme/longdoc.git#data/corpus.jsonl",
               "--out", str(tmp_path / "v"))
    _clean_failure(done, "names no version: add ?rev=")
    assert not (tmp_path / "v").exists()
