"""Team scale for real: PostgreSQL behind `mlflow server --serve-artifacts`, reached over HTTP only.

The pipeline runs against the server (registration, the gate, packaging from models:/NAME@champion,
serving the Bento), survives its database stopping mid-run, and promotions from several processes
at once leave one champion and one unbroken audit chain.
"""

from __future__ import annotations

import json
import os
import random
import re
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest
import requests

from longdoc.config.params import GateParams
from longdoc.errors import LongdocError
from longdoc.registry.lease import LEASE_PREFIX
from longdoc.registry.register import TAGGED_METRICS
from tests.conftest import BIN, ROOT, SMALL, cli, race_two_promotions, set_args, wait_ready
from tests.tracking_server import TeamServer, available, free_port

pytestmark = pytest.mark.slow

NAME = "longdoc-business-entertainment-politics-sports-tech"
# MLflow retries a failing server for minutes by default; here it gives up after one retry
FAST_FAILURE = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


@pytest.fixture(scope="module")
def team():
    missing = available()
    if missing:
        pytest.fail(missing)
    server = TeamServer.start()
    yield server
    server.stop()


def _client(uri: str):
    import mlflow

    return mlflow.MlflowClient(uri, uri)


def _run_env(tmp: Path, team: TeamServer) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": team.uri, "BENTOML_HOME": str(tmp / "bentoml"), "COLUMNS": "250",
            "LONGDOC_USER": "team-test", **FAST_FAILURE}


def _overrides(tmp: Path, corpus: Path) -> dict:
    return {**SMALL, "train.variants": ["head"], "data.corpus": str(corpus), "pipeline.pipeline_root": str(tmp / "kfp")}


@pytest.fixture(scope="module")
def interrupted(team, tmp_path_factory, small_corpus) -> dict:
    """A run whose PostgreSQL is stopped right after its first candidate registered, before the other does.

    Which candidate registers first (the baseline or the variant) is up to kfp's local runner; the
    other one must then fail to register, and the run with it.
    """
    tmp = tmp_path_factory.mktemp("interrupted")
    env = {**os.environ, **_run_env(tmp, team), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    log_path = tmp / "run.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(BIN / "longdoc"), "run", *set_args(_overrides(tmp, small_corpus))], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, text=True)
        while f"registered {NAME} v" not in log_path.read_text():
            assert proc.poll() is None, log_path.read_text()[-3000:]
            time.sleep(0.2)
        team.postgres.stop()
        try:
            proc.wait(timeout=900)
        finally:
            team.postgres.start()
    output = log_path.read_text()
    first = re.search(rf"registered {NAME} v\d+ \((\w+)\)", output).group(1)
    return {"returncode": proc.returncode, "output": output, "first": first}


def test_a_database_that_stops_mid_run_ends_it_with_an_error_naming_the_server(interrupted, team):
    assert interrupted["returncode"] == 2, interrupted["output"][-3000:]
    last = interrupted["output"].strip().splitlines()[-1]
    assert last.startswith(f"error: MLflow tracking server {team.uri} "), last
    step = "register" if interrupted["first"] == "tfidf_logreg" else "baseline"  # the other candidate's step
    assert "is its database up?" in last and f"Inner task failed: '{step}'" in last, last
    # the failed step printed its one-line error, not a traceback (LongdocError is a user-facing failure)
    assert "Traceback" not in interrupted["output"], interrupted["output"][-5000:]
    assert "error: MLflow tracking server" in interrupted["output"].split(last)[0]


def test_the_interrupted_run_left_no_half_registered_version(interrupted, team):
    import mlflow

    client = _client(team.uri)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert [v.tags["variant"] for v in versions] == [interrupted["first"]]  # the other never got a version
    for version in versions:  # complete: every metric tag, lineage, and a model that MLflow can resolve
        assert set(TAGGED_METRICS) <= set(version.tags) and version.tags["data_version"]
        files = mlflow.artifacts.list_artifacts(artifact_uri=client.get_model_version_download_uri(
            NAME, version.version), tracking_uri=team.uri)
        assert "MLmodel" in {Path(f.path).name for f in files}
    assert current_holder(client) is None  # no gate ran


def current_holder(client, name: str = NAME):
    from longdoc.registry.promotion import current_champion

    found = current_champion(client, name, "champion")
    return None if found is None else str(found.version)


@pytest.fixture(scope="module")
def team_run(interrupted, team, tmp_path_factory, small_corpus) -> dict:
    """The same run again once PostgreSQL is back: it must go through, over HTTP only."""
    tmp = tmp_path_factory.mktemp("team-run")
    env = _run_env(tmp, team)
    done = cli("run", *set_args(_overrides(tmp, small_corpus)), env=env)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return {"tmp": tmp, "env": env, "stdout": done.stdout}


def test_a_rerun_after_restart_registers_gates_and_packages_through_the_server(team_run, team, interrupted):
    client = _client(team.uri)
    versions = client.search_model_versions(f"name='{NAME}'")
    assert sorted(v.tags["variant"] for v in versions) == sorted(["head", "tfidf_logreg", interrupted["first"]])
    for version in versions:  # artifacts live with the server, reached over HTTP, not in a local folder
        assert client.get_run(version.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
    champion = client.get_model_version_by_alias(NAME, "champion")
    assert champion.tags["gate"] == "passed: no champion yet"
    assert json.loads(champion.tags["champion.change"])["who"] == "team-test"
    trail = _trail(client)
    assert [(r["action"], r["version"]) for r in trail if r["action"] != "refused"] == [("gate", champion.version)]
    assert not client.search_registered_models(f"name LIKE '{LEASE_PREFIX}%'")
    assert f"models:/{NAME}@champion" in team_run["stdout"] and "longdoc:" in team_run["stdout"]


def _trail(client, name: str = NAME) -> list[dict]:
    from longdoc.registry.promotion import audit_trail

    return audit_trail(client, name, applied_only=False)


def test_longdoc_serve_answers_with_the_champion_packaged_from_the_server(team_run, team, small_corpus):
    tag = next(w for w in team_run["stdout"].split("Bento", 1)[1].split() if w.startswith("longdoc:"))
    port = free_port()
    env = {**os.environ, **team_run["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with (team_run["tmp"] / "serve.log").open("w") as log:
        proc = subprocess.Popen([str(BIN / "longdoc"), "serve", "--bento", tag, "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, team_run["tmp"] / "serve.log")
        text = pd.read_json(small_corpus, lines=True)["text"].iloc[0]
        reply = requests.post(f"{url}/classify", json={"text": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        champion = _client(team.uri).get_model_version_by_alias(NAME, "champion")
        assert reply.json()["version"] == str(champion.version)
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


# --- promotions from several processes at once -------------------------------------------------------

def _cheap_versions(client, name: str, count: int) -> list[str]:
    """Versions trained on old data ("d0"): a forced promotion needs no predictions to read."""
    client.create_registered_model(name)
    experiment = client.create_experiment(f"{name}-runs")
    versions = []
    for _ in range(count):
        run = client.create_run(experiment)
        created = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id,
                                              tags={"data_version": "d0", "variant": "head", "kind": "model"})
        versions.append(str(created.version))
    return versions


def _churn(uri: str, name: str, versions: list[str], changes: int, seed: int) -> int:
    """``changes`` promotions and rollbacks in random order; returns how many changed the alias."""
    from longdoc.registry import promotion

    client, rng, done = _client(uri), random.Random(seed), 0
    for _ in range(changes):
        try:
            if rng.random() < 0.4:
                promotion.rollback(client, name, "champion", f"churn {seed}")
            else:
                promotion.promote(client, name, rng.choice(versions), "champion", f"churn {seed}", True, "d1",
                                  GateParams())
            done += 1
        except LongdocError as err:  # already champion, or nothing to roll back to: no change, no record
            assert "already champion" in str(err) or "to roll back" in str(err), err
    return done


def _assert_one_chain(client, name: str, changes: int) -> None:
    trail = _trail(client, name)
    assert all(r["state"] == "applied" for r in trail)
    assert len(trail) == changes and [r["seq"] for r in trail] == list(range(1, changes + 1))
    for before, after in zip(trail, trail[1:], strict=False):  # every change saw the one before it
        assert after["previous"] == before["version"], (before, after)
    holder = current_holder(client, name)
    assert trail[-1]["version"] == holder
    statuses = {v.version: v.tags.get("status") for v in client.search_model_versions(f"name='{name}'")}
    assert [v for v, s in statuses.items() if s == "champion"] == [holder]
    assert not client.search_registered_models(f"name LIKE '{LEASE_PREFIX}{name}%'")


def test_two_promotions_at_once_against_the_server_are_serialised(team):

    client, name = _client(team.uri), "longdoc-race"
    versions = _cheap_versions(client, name, 3)
    from longdoc.registry.promotion import promote

    promote(client, name, versions[2], "champion", "first", True, "d1", GateParams())
    assert race_two_promotions(team.uri, name, versions[:2], "d1") == [0, 0]
    _assert_one_chain(client, name, 3)


def test_300_promotions_and_rollbacks_from_three_processes_keep_one_chain(team):
    import multiprocessing

    client, name = _client(team.uri), "longdoc-churn"
    versions = _cheap_versions(client, name, 5)
    from longdoc.registry.promotion import promote

    promote(client, name, versions[0], "champion", "start", True, "d1", GateParams())
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        done = pool.starmap(_churn, [(team.uri, name, versions, 100, seed) for seed in range(3)])
    assert sum(done) > 200  # most attempts change the alias; the rest are refused with a reason, unrecorded
    _assert_one_chain(client, name, 1 + sum(done))
    audit = cli("models", "audit", name, "--last", "3", env={"MLFLOW_TRACKING_URI": team.uri, "COLUMNS": "250"})
    assert audit.returncode == 0 and f"{name}: {1 + sum(done)} records" in audit.stdout, audit.stderr


def test_a_stopped_server_is_named_by_the_cli_and_changes_nothing(team):
    client, name = _client(team.uri), "longdoc-stopped"
    versions = _cheap_versions(client, name, 2)
    env = {"MLFLOW_TRACKING_URI": team.uri, **FAST_FAILURE}
    assert cli("models", "promote", name, versions[0], "--force", "--reason", "up", env=env).returncode == 0
    team.mlflow.stop()
    try:
        done = cli("models", "promote", name, versions[1], "--force", "--reason", "down", env=env)
    finally:
        team.mlflow.start()
    assert done.returncode == 2 and f"MLflow tracking server {team.uri} cannot be reached" in done.stderr
    assert "Traceback" not in done.stderr
    assert current_holder(client, name) == versions[0] and len(_trail(client, name)) == 1
    assert _trail(client, name)[0]["why"].startswith("up (forced past: ")
