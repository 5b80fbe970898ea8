"""The pieces a cluster run rests on, without a cluster: the tracking URI from the environment, the
training folder on the PVC that a retried pod resumes from, and the dvc:// corpus syntax."""

import json

import pytest

from longdoc.config.dvc_reference import DvcReference, parse_reference
from longdoc.config.params import load_params
from longdoc.errors import LongdocError
from longdoc.registry.tracking import FROM_ENVIRONMENT, resolve_tracking_uri
from longdoc.stages import on_work_volume, work_folder
from tests.conftest import ROOT


def test_the_tracking_uri_comes_from_the_environment_or_a_clear_error(monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.svc:5000")
    assert resolve_tracking_uri(FROM_ENVIRONMENT) == "http://mlflow.svc:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    with pytest.raises(LongdocError, match="MLFLOW_TRACKING_URI is not set.*pipeline.cluster.secret"):
        resolve_tracking_uri(FROM_ENVIRONMENT)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # a Secret key with an empty value is as good as none
    with pytest.raises(LongdocError, match="is not set"):
        resolve_tracking_uri(FROM_ENVIRONMENT)


def _training(calls: list, fail: bool = False):
    """A stand-in for a training run: resumes from the checkpoint it finds, writes the model at the end."""
    def run(folder):
        checkpoints = folder / "checkpoints"
        resumed = checkpoints.is_dir()
        checkpoints.mkdir(parents=True, exist_ok=True)
        (checkpoints / "step-000002").write_text("state")
        calls.append((folder, resumed))
        if fail:
            raise RuntimeError("pod preempted")
        (folder / "model").mkdir()
        (folder / "model" / "weights").write_text("w")
        (folder / "train_summary.json").write_text(json.dumps({"steps": 4}))
        return {"steps": 4}
    return run


def test_a_retried_training_resumes_from_its_folder_on_the_volume_then_hands_over(tmp_path):
    params = load_params(ROOT / "params.yaml", {"pipeline.work_dir": str(tmp_path / "pvc")})
    calls: list = []
    with pytest.raises(RuntimeError):
        on_work_volume(params, "head", "chunks-uri encoder-uri", tmp_path / "out1", _training(calls, fail=True))
    summary = on_work_volume(params, "head", "chunks-uri encoder-uri", tmp_path / "out2", _training(calls))
    (first, resumed_first), (second, resumed_second) = calls
    assert first == second and not resumed_first and resumed_second  # the retry found the checkpoints
    assert summary == {"steps": 4}
    assert (tmp_path / "out2" / "model" / "weights").read_text() == "w"
    assert not (tmp_path / "out2" / "checkpoints").exists()  # the output carries the model, not the checkpoints
    assert not second.exists()  # the volume keeps only unfinished trainings


def test_the_work_folder_is_one_per_task_inputs_and_params(tmp_path):
    params = load_params(ROOT / "params.yaml", {"pipeline.work_dir": str(tmp_path)})
    other_lr = load_params(ROOT / "params.yaml", {"pipeline.work_dir": str(tmp_path), "train.lr": 1e-3})
    folder = work_folder(params, "head", "a b")
    assert folder.parent == tmp_path and folder == work_folder(params, "head", "a b")
    assert len({folder, work_folder(params, "rnn", "a b"), work_folder(params, "head", "a c"),
                work_folder(other_lr, "head", "a b")}) == 4
    assert work_folder(load_params(ROOT / "params.yaml"), "head", "a b") is None  # locally: straight into the output
    calls: list = []
    on_work_volume(load_params(ROOT / "params.yaml"), "head", "a b", tmp_path / "out", _training(calls))
    assert calls[0][0] == tmp_path / "out"


@pytest.mark.parametrize(("text", "expected"), [
    ("dvc://https://git.example/acme/longdoc.git?rev=v1.2#data/corpus.jsonl",
     DvcReference("https://git.example/acme/longdoc.git", "data/corpus.jsonl", "v1.2")),
    ("dvc://git@git.example:acme/longdoc.git?rev=3f2c1e0&remote=store#data/corpus.jsonl",
     DvcReference("git@git.example:acme/longdoc.git", "data/corpus.jsonl", "3f2c1e0", "store")),
    ("dvc:///srv/git/longdoc?rev=main#data", DvcReference("/srv/git/longdoc", "data", "main")),
])
def test_a_reference_parses_and_prints_back(text, expected):
    assert parse_reference(text) == expected
    assert str(expected) == text
    assert parse_reference(str(expected)) == expected


def test_a_token_in_the_repository_url_is_never_shown():
    ref = parse_reference("dvc://https://bot:tok3n@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl")
    assert ref.repo == "https://bot:tok3n@git.example/acme/longdoc.git"  # what git is given
    assert str(ref) == "dvc://https://***@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl"  # all the userinfo
    with pytest.raises(LongdocError) as err:
        parse_reference("dvc://https://bot:tok3n@git.example/acme/longdoc.git#data/corpus.jsonl")
    assert "tok3n" not in str(err.value) and "https://***@git.example" in str(err.value)


def test_a_failed_pull_names_the_reference_without_its_token(tmp_path):
    from longdoc.data.dvc_source import fetch

    ref = parse_reference("dvc://https://bot:tok3n@127.0.0.1:9/acme/longdoc.git?rev=v1#data/corpus.jsonl")
    with pytest.raises(LongdocError, match="cannot be reached") as err:
        fetch(ref, tmp_path / "pulled")
    assert "tok3n" not in str(err.value) and str(ref) in str(err.value)


@pytest.mark.parametrize(("text", "fragment"), [
    ("dvc://https://git.example/r.git?rev=v1", "names no file"),
    ("dvc://https://git.example/r.git#data/c.jsonl", "names no version"),
    ("dvc://?rev=v1#data/c.jsonl", "names no repository"),
    ("dvc://r?rev=v1&branch=x#data/c.jsonl", "the query may set rev"),
    ("dvc://r?rev=#data/c.jsonl", "the query may set rev"),
    ("dvc://r?rev=v1#/etc/passwd", "relative to the repository root"),
    ("dvc://r?rev=v1#data/../../x", "relative to the repository root"),
])
def test_a_malformed_reference_says_what_is_missing(text, fragment):
    with pytest.raises(LongdocError, match=fragment):
        parse_reference(text)
    with pytest.raises(LongdocError, match=f"data.corpus: .*{fragment}"):  # caught when params load, before compute
        load_params(ROOT / "params.yaml", {"data.corpus": text})


@pytest.mark.parametrize(("override", "fragment"), [
    ({"pipeline.cluster.corpus": "data/corpus.jsonl"}, "is not a DVC reference"),
    ({"pipeline.cluster.secret_keys": ["MLFLOW_TRACKING_PASSWORD"]}, "must include MLFLOW_TRACKING_URI"),
    ({"pipeline.cluster.secret_keys": ["MLFLOW_TRACKING_URI", "not-an-env"]}, "not an environment variable"),
    ({"pipeline.cluster.mount_path": "mnt/longdoc"}, "absolute path inside the pod"),
    ({"pipeline.cluster.pvc": "Longdoc_Cache"}, "pipeline.cluster.pvc"),
])
def test_cluster_settings_are_validated(override, fragment):
    with pytest.raises(LongdocError, match=fragment):
        load_params(ROOT / "params.yaml", override)
