"""`dvc repro` runs the same stages over params.yaml, on a small slice, in a scratch repository."""

import os
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import BIN, ROOT, SMALL

pytestmark = pytest.mark.slow


def _dvc(*args, cwd, env):
    return subprocess.run([sys.executable, "-m", "dvc", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=900)


def test_dvc_repro_small_slice(tmp_path, small_corpus):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy(ROOT / "dvc.yaml", repo)
    shutil.copytree(ROOT / "serving", repo / "serving")
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for dotted, value in SMALL.items():
        *path, key = dotted.split(".")
        node = params
        for part in path:
            node = node[part]
        node[key] = value
    params["train"]["variants"] = ["head"]
    params["train"]["overrides"] = {}
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    (repo / "data").mkdir()
    shutil.copy(small_corpus, repo / "data" / "corpus.jsonl")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "BENTOML_HOME": str(tmp_path / "bentoml")}
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    assert _dvc("init", "-q", cwd=repo, env=env).returncode == 0

    first = _dvc("repro", cwd=repo, env=env)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    metrics = yaml.safe_load((repo / "outputs" / "eval" / "head" / "metrics.json").read_text())
    assert metrics["normal_macro_f1_lo"] <= metrics["normal_macro_f1"] <= metrics["normal_macro_f1_hi"]
    head = yaml.safe_load((repo / "outputs" / "registration" / "head.json").read_text())
    base = yaml.safe_load((repo / "outputs" / "baseline" / "run.json").read_text())
    assert {head["version"], base["version"]} == {"1", "2"} and head["model_name"] == base["model_name"]
    decision = yaml.safe_load((repo / "outputs" / "gate.json").read_text())
    assert decision["promoted"] and decision["version"] in ("1", "2")  # one gate for both candidates
    assert (repo / "outputs" / "bento.json").is_file()

    again = _dvc("repro", cwd=repo, env=env)
    assert again.returncode == 0 and "didn't change" in again.stdout

    shown = _dvc("metrics", "show", "--json", cwd=repo, env=env)
    assert "normal_macro_f1" in shown.stdout
