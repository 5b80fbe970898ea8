"""Compile the pipeline, run it locally with kfp's SubprocessRunner, or submit it to Kubeflow.

Two targets share one pipeline definition and differ in the arguments baked into it:

- ``local``: this machine's absolute paths and resolved tracking URI, for kfp's local runner. A tracking
  URI with credentials stays in the environment (``env:MLFLOW_TRACKING_URI``, inherited by the steps).
- ``cluster``: nothing of this machine. The corpus is a DVC reference, the tracking URI and its
  credentials come from a Kubernetes Secret (``registry.tracking_uri`` is ``env:MLFLOW_TRACKING_URI``),
  caches and checkpoints live on a PVC, and paths are those of the image. :func:`check_portable`
  refuses to compile when a path of this machine, a SQLite store or a password is left anywhere.

No compiled or submitted pipeline holds a credential of any form (:mod:`longdoc.redaction`): the YAML is a
file anyone may read, and a submitted run's arguments live in the Kubeflow server's database.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path, PurePosixPath
from typing import Literal

from longdoc.config.dvc_reference import is_reference
from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.redaction import has_credential
from longdoc.registry.lineage import git_commit
from longdoc.registry.tracking import FROM_ENVIRONMENT, resolve_tracking_uri

Target = Literal["local", "cluster"]
TARGETS: tuple[Target, ...] = ("local", "cluster")
# Roots of user and scratch files on developer machines, on top of this machine's own (repo, home, temp).
LOCAL_ROOTS = ("/tmp", "/var/tmp", "/home", "/root", "/Users", "/private/var/folders")
CREDENTIAL = "a URL with a password or other credential (user:password@, token@ or a token in its query)"


def pipeline_arguments(params: Params, target: Target = "local") -> dict:
    """The pipeline's arguments for ``target`` (compiled in as defaults, or passed to a run)."""
    return cluster_arguments(params) if target == "cluster" else local_arguments(params)


def local_arguments(params: Params) -> dict:
    """Arguments resolved on the submitting machine: absolute paths and the commit.

    The data version is not an argument: the validate step hashes the corpus it actually read.
    """
    resolved = params.model_copy(deep=True)
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    # credentials stay in the environment, which the local run's steps inherit (see run_local)
    resolved.registry.tracking_uri = FROM_ENVIRONMENT if has_credential(uri) else uri
    resolved.serving.service_dir = str(Path(params.serving.service_dir).resolve())
    resolved.train.cache_dir = str(params.cache_root.resolve())  # one cache for every task of the run
    corpus = params.data.corpus
    return {"corpus_path": corpus if is_reference(corpus) else str(Path(corpus).resolve()),
            "params": resolved.model_dump_json(),
            "variants": params.train.variants, "git_commit": git_commit()}


def cluster_params(params: Params) -> Params:
    """The params as the pods see them: the DVC corpus, MLflow from the environment, the PVC, the image's paths."""
    cluster = params.pipeline.cluster
    if cluster.corpus is None:
        raise LongdocError("pipeline.cluster.corpus is not set: a pod cannot read this machine's files. Set it in "
                           "params.yaml or pass --corpus 'dvc://<git url>?rev=<tag or commit>#data/corpus.jsonl' "
                           "(the repository's DVC remote must hold that revision's data: `dvc push`)")
    mount = PurePosixPath(cluster.mount_path)
    resolved = params.model_copy(deep=True)
    resolved.data.corpus = cluster.corpus
    resolved.registry.tracking_uri = FROM_ENVIRONMENT
    resolved.serving.service_dir = str(PurePosixPath(cluster.workdir) / params.serving.service_dir)
    resolved.train.cache_dir = str(mount / "embedding_cache")
    resolved.pipeline.pipeline_root = str(mount / "kfp")
    resolved.pipeline.work_dir = str(mount / "work")
    return resolved


def cluster_arguments(params: Params) -> dict:
    resolved = cluster_params(params)
    arguments = {"corpus_path": resolved.data.corpus, "params": resolved.model_dump_json(),
                 "variants": params.train.variants, "git_commit": git_commit()}
    cluster = resolved.pipeline.cluster
    check_portable(resolved.model_dump(mode="json") | {"corpus_path": resolved.data.corpus},
                   allowed=(cluster.workdir, cluster.mount_path))
    return arguments


def _leaves(value, key: str = ""):
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _leaves(v, f"{key}.{k}" if key else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{key}[{i}]")
    elif isinstance(value, str):
        yield key, value


def _related(a: str, b: str) -> bool:
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def _local_roots(allowed: tuple[str, ...]) -> list[str]:
    """This machine's roots (repository, home, temp) and the usual ones, less those holding the pod's own
    paths: compiling inside the image, its WORKDIR is the current directory and still the pod's."""
    roots = {str(Path.cwd()), str(Path.home()), tempfile.gettempdir(), *LOCAL_ROOTS}
    roots = {r.rstrip("/") for r in roots} - {""}
    return sorted((r for r in roots if not any(_related(r, a.rstrip("/")) for a in allowed)), key=len, reverse=True)


def check_portable(values: dict, allowed: tuple[str, ...] = ()) -> None:
    """Refuse what would leak this machine into a cluster's pipeline: its paths, a SQLite store, a password.

    Every string is checked, wherever it sits, so a new path-like setting cannot slip through; the
    message names the setting and never echoes a password. ``allowed``: the pod's own roots (the
    image's WORKDIR, the PVC's mount path).
    """
    roots = _local_roots(allowed)
    for key, text in _leaves(values):
        if has_credential(text):
            raise LongdocError(f"cannot compile for a cluster: {key} holds {CREDENTIAL}; put credentials in the "
                               "Kubernetes Secret (pipeline.cluster.secret_keys, data_secret_keys), not in params")
        if "sqlite:" in text:
            raise LongdocError(f"cannot compile for a cluster: {key} = {text!r} is a SQLite store on this machine; "
                               "the pods take MLflow's URI from the Secret")
        for root in roots:
            if re.search(rf"(?<![\w.-]){re.escape(root)}(?=$|[/?#\s\"'])", text):
                raise LongdocError(f"cannot compile for a cluster: {key} = {text!r} is a path of this machine "
                                   f"({root}); a pod cannot read it (use the image's paths, the PVC under "
                                   "pipeline.cluster.mount_path, or a DVC reference)")


def pipeline_function(params: Params, parallelism: int | None = None, target: Target = "local"):
    from pipelines.longdoc_pipeline import make_pipeline

    limit = params.pipeline.parallelism if parallelism is None else parallelism
    cluster = params.pipeline.cluster if target == "cluster" else None
    return make_pipeline(params.pipeline.image, params.pipeline.gpu, params.pipeline.name, limit, cluster)


def compile_pipeline(params: Params, out: Path, target: Target = "local") -> Path:
    arguments = pipeline_arguments(params, target)  # before anything is written: a refused compile leaves no file
    return _compile(pipeline_function(params, target=target), arguments, out)


def refuse_credentials(arguments: dict) -> None:
    """Refuse arguments that would write a credential into a compiled or submitted pipeline (either target)."""
    values = dict(arguments)
    if isinstance(values.get("params"), str):
        values["params"] = json.loads(values["params"])  # name the setting, not the whole params argument
    for key, text in _leaves(values):
        if has_credential(text):
            raise LongdocError(f"cannot compile: {key} holds {CREDENTIAL}, which the compiled pipeline would keep; "
                               "let the steps find it in their environment instead: MLFLOW_TRACKING_URI for MLflow, "
                               "a git credential helper for a dvc:// repository (`longdoc run` passes the corpus to "
                               "its local steps without writing it down)")


def _compile(function, arguments: dict, out: Path) -> Path:
    from kfp import compiler

    refuse_credentials(arguments)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(function, str(out), pipeline_parameters=arguments)
    return out


def tune_arguments(params: Params, space_json: str, n_trials: int, study: str, target: Target = "local") -> dict:
    """The sweep's arguments: the main pipeline's corpus and params for ``target``, the space and trial count."""
    base = pipeline_arguments(params, target)  # a cluster target is checked for local paths and secrets here
    arguments = {"corpus_path": base["corpus_path"], "params": base["params"], "space": space_json,
                 "n_trials": n_trials, "study": study}
    if target == "cluster":
        cluster = params.pipeline.cluster
        check_portable({"space": space_json, "study": study}, allowed=(cluster.workdir, cluster.mount_path))
    return arguments


def tune_function(params: Params, target: Target = "local"):
    from pipelines.tune_pipeline import make_tune_pipeline

    cluster = params.pipeline.cluster if target == "cluster" else None
    return make_tune_pipeline(params.pipeline.image, params.pipeline.gpu, params.pipeline.name,
                              params.pipeline.parallelism, cluster)


def compile_tune(params: Params, out: Path, space_json: str, n_trials: int, study: str,
                 target: Target = "local") -> Path:
    """Compile the sweep (``longdoc pipeline compile --tune``)."""
    arguments = tune_arguments(params, space_json, n_trials, study, target)
    return _compile(tune_function(params, target), arguments, out)


def monitor_arguments(params: Params, target: Target = "local") -> dict:
    """The monitor's params for ``target``: on a cluster its records are on the PVC unless monitor.log_path says."""
    if target != "cluster":
        return {"params": local_arguments(params)["params"]}
    resolved = cluster_params(params)
    if not resolved.monitor.log_path:
        resolved.monitor.log_path = str(PurePosixPath(resolved.pipeline.cluster.mount_path) / "monitoring")
    cluster = resolved.pipeline.cluster
    check_portable(resolved.model_dump(mode="json"), allowed=(cluster.workdir, cluster.mount_path))
    return {"params": resolved.model_dump_json()}


def monitor_function(params: Params, target: Target = "local"):
    from pipelines.monitor_pipeline import make_monitor_pipeline

    cluster = params.pipeline.cluster if target == "cluster" else None
    return make_monitor_pipeline(params.pipeline.image, params.pipeline.name, cluster)


def compile_monitor(params: Params, out: Path, target: Target = "local") -> Path:
    """Compile the monitor pipeline (``longdoc pipeline compile --monitor``)."""
    return _compile(monitor_function(params, target), monitor_arguments(params, target), out)


def schedule_monitor(params: Params, host: str, cron: str, hours: float, retrain_host: str = "") -> str:
    """A recurring run of the monitor pipeline on a Kubeflow Pipelines endpoint; its id."""
    import kfp

    client = kfp.Client(host=host)
    experiment = client.create_experiment(f"{params.pipeline.name}-monitor")
    with tempfile.TemporaryDirectory() as scratch:
        package = compile_monitor(params, Path(scratch) / "monitor.yaml", "cluster")
        job = client.create_recurring_run(experiment.experiment_id, f"{params.pipeline.name}-monitor",
                                          cron_expression=cron, pipeline_package_path=str(package),
                                          params={"hours": hours, "retrain_host": retrain_host}, max_concurrency=1)
    return job.recurring_run_id


def run_local(params: Params) -> dict[str, str]:
    """Run every component in this Python environment (the embedded default behind ``make run``)."""
    from kfp import local

    root = Path(params.pipeline.pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    if has_credential(uri):  # the steps inherit it: the params they get say env:MLFLOW_TRACKING_URI
        os.environ["MLFLOW_TRACKING_URI"] = uri
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    try:
        task = pipeline_function(params, params.pipeline.local_parallelism)(**pipeline_arguments(params))
    except RuntimeError as err:
        raise LongdocError(_failure(params, str(err))) from None
    return {"decision": str(task.output)}


def _failure(params: Params, message: str) -> str:
    """kfp's "inner task failed" as one line; a tracking server that stopped answering is named first."""
    import re

    from longdoc.registry.tracking import check_tracking_uri, redact

    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    try:
        check_tracking_uri(uri)
    except LongdocError as err:
        return f"{err}: the pipeline stopped ({plain}); nothing half-registered, re-run once it is back"
    return f"{plain} (the failing task's error is above; tracking at {redact(uri)})"


def submit(params: Params, host: str, experiment: str | None = None, target: Target = "cluster") -> str:
    """Send the pipeline to a Kubeflow Pipelines endpoint, compiled as ``compile --target`` does; the run id."""
    import kfp

    arguments = pipeline_arguments(params, target)
    refuse_credentials(arguments)  # the server keeps a run's arguments
    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(pipeline_function(params, target=target), arguments=arguments,
                                               experiment_name=experiment or params.pipeline.name)
    return run.run_id
