"""A corpus by version: `dvc://<repo>?rev=<rev>#<path>` is pulled from the repository's DVC remote.

A scratch git + DVC repository with a local-directory remote holds two pushed versions of the corpus
and a third that was committed but never pushed; its local DVC cache is deleted, so whatever the
validate stage reads can only have come from the remote.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys

import pytest
import yaml

from longdoc.config.params import load_params
from longdoc.errors import LongdocError
from tests.conftest import ROOT, cli

pytestmark = pytest.mark.slow
ENV = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.org",
       "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.org"}


def _run(*args, cwd):
    done = subprocess.run(list(args), cwd=cwd, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
    return done.stdout.strip()


def _dvc(*args, cwd):
    return _run(sys.executable, "-m", "dvc", *args, cwd=cwd)


def _commit_version(repo, lines: list[str], tag: str, push: bool) -> str:
    (repo / "data" / "corpus.jsonl").write_text("".join(lines))
    _dvc("add", "-q", "data", cwd=repo)
    if push:
        _dvc("push", "-q", cwd=repo)
    _run("git", "add", "-A", cwd=repo)
    _run("git", "commit", "-q", "-m", tag, cwd=repo)
    _run("git", "tag", tag, cwd=repo)
    return "".join(lines)


@pytest.fixture(scope="module")
def data_repo(tmp_path_factory, small_corpus):
    """v1: the small corpus; v2: its first document removed; v3: committed, never pushed."""
    tmp = tmp_path_factory.mktemp("dvc_remote")
    repo = tmp / "repo"
    (repo / "data").mkdir(parents=True)
    _run("git", "init", "-q", cwd=repo)
    _dvc("init", "-q", cwd=repo)
    _dvc("remote", "add", "-d", "store", str(tmp / "store"), cwd=repo)
    lines = small_corpus.read_text().splitlines(keepends=True)
    texts = {"v1": _commit_version(repo, lines, "v1", push=True),
             "v2": _commit_version(repo, lines[1:], "v2", push=True),
             "v3": _commit_version(repo, lines[2:], "v3", push=False)}
    shutil.rmtree(repo / ".dvc" / "cache")  # from here on, data comes from the remote or not at all
    return repo, texts


def _ref(repo, rev: str, path: str = "data/corpus.jsonl") -> str:
    return f"dvc://{repo}?rev={rev}#{path}"


def _md5_at(repo, rev: str) -> str:
    return yaml.safe_load(_run("git", "show", f"{rev}:data.dvc", cwd=repo))["outs"][0]["md5"]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_validate_pulls_the_referenced_version_from_the_remote(data_repo, small_corpus, tmp_path):
    repo, texts = data_repo
    elsewhere = tmp_path / "elsewhere"  # not the data repository, not this project
    elsewhere.mkdir()
    done = cli("validate", "--params", str(ROOT / "params.yaml"), "--set", f"data.corpus={_ref(repo, 'v1')}",
               "--out", str(elsewhere / "v"), cwd=elsewhere)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((elsewhere / "v" / "summary.json").read_text())
    assert summary["corpus_sha256"] == _sha(texts["v1"]) == hashlib.sha256(small_corpus.read_bytes()).hexdigest()
    assert summary["dvc_md5"] == _md5_at(repo, "v1")
    assert summary["documents"] == len(texts["v1"].splitlines())
    commit = _run("git", "rev-parse", "v1^{commit}", cwd=repo)
    assert summary["data_source"] == {"repo": str(repo), "path": "data/corpus.jsonl", "rev": "v1", "remote": None,
                                      "commit": commit, "reference": _ref(repo, commit)}
    assert not (elsewhere / "v" / ".dvc-source").exists()  # the pulled copy is gone; the validated corpus stays
    assert f"pulled from {_ref(repo, commit)}" in done.stdout

    # the same bytes read from a local path give the same data version: the reference changes where, not what
    from longdoc.stages import _lineage, validate

    params = load_params(ROOT / "params.yaml")
    local = validate(params, small_corpus, tmp_path / "local")
    assert local["data_version"] == summary["data_version"]
    lineage = _lineage(elsewhere / "v", "abc123", "run-1")  # what every registered model is tagged with
    assert (lineage.dvc_md5, lineage.data_source) == (_md5_at(repo, "v1"), _ref(repo, commit))


def test_an_older_revision_gives_the_older_data_and_its_md5(data_repo, tmp_path):
    from longdoc.stages import validate

    repo, texts = data_repo
    params = load_params(ROOT / "params.yaml")
    first = validate(params, _ref(repo, "v1"), tmp_path / "v1")
    second = validate(params, _ref(repo, "v2"), tmp_path / "v2")
    assert _md5_at(repo, "v1") != _md5_at(repo, "v2")
    assert (first["dvc_md5"], first["corpus_sha256"]) == (_md5_at(repo, "v1"), _sha(texts["v1"]))
    assert (second["dvc_md5"], second["corpus_sha256"]) == (_md5_at(repo, "v2"), _sha(texts["v2"]))
    assert first["data_version"] != second["data_version"]
    assert second["documents"] == first["documents"] - 1


@pytest.mark.parametrize(("ref", "fragment"), [
    (lambda repo: _ref(repo, "v9"), "unknown git revision 'v9'"),
    (lambda repo: _ref(repo.parent / "no-such-repo", "v1"), "cannot be reached or is not a git repository"),
    (lambda repo: _ref(repo, "v1", "data/other.jsonl"), "no 'data/other.jsonl' in the repository at v1"),
    (lambda repo: _ref(repo, "v3"), "was `dvc push` run at commit"),  # committed, never pushed
])
def test_a_bad_reference_names_itself_and_what_failed(data_repo, tmp_path, ref, fragment):
    from longdoc.stages import validate

    repo, _ = data_repo
    text = ref(repo)
    with pytest.raises(LongdocError) as err:
        validate(load_params(ROOT / "params.yaml"), text, tmp_path / "v")
    assert str(err.value).startswith(f"DVC reference {text}: ") and fragment in str(err.value)
    assert not (tmp_path / "v" / "summary.json").exists() and not (tmp_path / "v" / ".dvc-source").exists()


def test_the_cli_reports_a_bad_reference_without_a_traceback(data_repo, tmp_path):
    repo, _ = data_repo
    text = _ref(repo, "no-such-tag")
    done = cli("validate", "--params", str(ROOT / "params.yaml"), "--set", f"data.corpus={text}",
               "--out", str(tmp_path / "v"), cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert text in done.stderr and "unknown git revision" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
