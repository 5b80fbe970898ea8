"""Compile the pipeline, run it locally with kfp's SubprocessRunner, or submit it to Kubeflow."""

from __future__ import annotations

from pathlib import Path

from longdoc.config import Params
from longdoc.errors import LongdocError
from longdoc.lineage import git_commit
from longdoc.tracking import resolve_tracking_uri


def pipeline_arguments(params: Params) -> dict:
    """Arguments resolved on the submitting machine: absolute paths and the commit.

    The data version is not an argument: the validate step hashes the corpus it actually read.
    """
    resolved = params.model_copy(deep=True)
    resolved.registry.tracking_uri = resolve_tracking_uri(params.registry.tracking_uri)
    resolved.serving.service_dir = str(Path(params.serving.service_dir).resolve())
    resolved.train.cache_dir = str(params.cache_root.resolve())  # one cache for every task of the run
    return {"corpus_path": str(Path(params.data.corpus).resolve()),
            "params": resolved.model_dump_json(),
            "variants": params.train.variants, "git_commit": git_commit()}


def pipeline_function(params: Params, parallelism: int | None = None):
    from pipelines.longdoc_pipeline import make_pipeline

    limit = params.pipeline.parallelism if parallelism is None else parallelism
    return make_pipeline(params.pipeline.image, params.pipeline.gpu, params.pipeline.name, limit)


def compile_pipeline(params: Params, out: Path) -> Path:
    from kfp import compiler

    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(pipeline_function(params), str(out), pipeline_parameters=pipeline_arguments(params))
    return out


def run_local(params: Params) -> dict[str, str]:
    """Run every component in this Python environment (the embedded default behind ``make run``)."""
    from kfp import local

    root = Path(params.pipeline.pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root), raise_on_error=True)
    try:
        task = pipeline_function(params, params.pipeline.local_parallelism)(**pipeline_arguments(params))
    except RuntimeError as err:
        raise LongdocError(_failure(params, str(err))) from None
    return {"decision": str(task.output)}


def _failure(params: Params, message: str) -> str:
    """kfp's "inner task failed" as one line; a tracking server that stopped answering is named first."""
    import re

    from longdoc.tracking import check_tracking_uri, redact

    plain = re.sub(r"\x1b\[[0-9;]*m", "", message)
    uri = resolve_tracking_uri(params.registry.tracking_uri)
    try:
        check_tracking_uri(uri)
    except LongdocError as err:
        return f"{err}: the pipeline stopped ({plain}); nothing half-registered, re-run once it is back"
    return f"{plain} (the failing task's error is above; tracking at {redact(uri)})"


def submit(params: Params, host: str, experiment: str | None = None) -> str:
    """Send the pipeline to a Kubeflow Pipelines endpoint; returns the run id."""
    import kfp

    client = kfp.Client(host=host)
    run = client.create_run_from_pipeline_func(pipeline_function(params), arguments=pipeline_arguments(params),
                                               experiment_name=experiment or params.pipeline.name)
    return run.run_id
