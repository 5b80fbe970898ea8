"""From a registered MLflow model to a Bento: import into the BentoML model store, then build.

The service definition lives in ``serving/``; this module only moves the model and runs the build,
so serving code never copies training code: the Bento's model is the MLflow pyfunc, which calls
:mod:`longdoc.models.inference`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from longdoc.config.params import Params
from longdoc.errors import LongdocError
from longdoc.models.baseline import BASELINE_NAME
from longdoc.registry.serving_runtime import RuntimeChoice, choose_runtime
from longdoc.registry.tracking import use_tracking

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
MODEL_TAG_ENV = "LONGDOC_BENTO_MODEL"
EVALUATION_TAGS = ("evaluation", "folds", "decision_docs")  # how its figures were measured, for /metadata


@dataclass
class Packaged:
    model_tag: str
    bento_tag: str
    model_version: str
    runtime: dict = field(default_factory=dict)  # the RuntimeChoice: what serves the encoder, why, the evidence


def store_name(name: str) -> str:
    """A BentoML model name (at most 63 characters); a longer one keeps its start and a hash of the whole."""
    import hashlib

    return name if len(name) <= 63 else f"{name[:54]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


@contextmanager
def _env(key: str, value: str):
    old = os.environ.get(key)
    os.environ[key] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def import_champion(params: Params, name: str, version: str | None = None):
    """Copy ``models:/NAME@champion`` (or a version) into the BentoML store, with its lineage as labels.

    Each task gets its own BentoML model name, so packaging one task's champion never replaces the
    model another task's Bento was built from.
    """
    import bentoml

    mlflow = use_tracking(params.registry.tracking_uri)
    client = mlflow.MlflowClient()
    alias = params.registry.champion_alias
    try:
        mv = client.get_model_version(name, version) if version else client.get_model_version_by_alias(name, alias)
    except mlflow.exceptions.MlflowException as err:
        raise LongdocError(f"no model {name} {'v' + version if version else '@' + alias} in the registry: "
                           f"{err.message}") from None
    task = mv.tags.get("task", "")
    labels = {"model_name": name, "model_version": str(mv.version), "alias": "" if version else alias,
              "variant": mv.tags.get("variant", ""), "data_version": mv.tags.get("data_version", ""),
              "task": task, **{k: mv.tags.get(k, "") for k in EVALUATION_TAGS}}
    bento_model = store_name(f"{params.serving.bento_model}-{task}" if task else params.serving.bento_model)
    return bentoml.mlflow.import_model(bento_model, model_uri=f"models:/{name}/{mv.version}",
                                       labels=labels), str(mv.version)


def decide_runtime(params: Params, model, texts: Callable[[], list[str]], supplied: Path | None = None
                   ) -> tuple[RuntimeChoice, str]:
    """The runtime the Bento serves with, and the BentoML model holding its ONNX encoder ("" when none).

    The check runs on the model as the Bento will load it (the MLflow pyfunc, with its temperature), on
    ``texts()``: read only when there is something to check.
    """
    import bentoml

    from longdoc.models.onnx.runtime import ENCODER_FILE

    if model.info.labels.get("variant") == BASELINE_NAME:
        return RuntimeChoice("sklearn", "tf-idf", "the TF-IDF baseline serves in scikit-learn"), ""
    if params.serving.runtime == "torch" and supplied is None:
        return RuntimeChoice("torch", "fp32", "serving.runtime: torch"), ""
    try:
        documents = texts()
    except LongdocError as err:  # no corpus here to check on: serve what the model was evaluated with
        return RuntimeChoice("torch", "fp32", f"no documents to check a faster runtime on ({err}): serves in "
                                              "torch fp32"), ""
    predictor = bentoml.mlflow.load_model(model).unwrap_python_model().predictor
    with tempfile.TemporaryDirectory(prefix="longdoc-onnx-") as work:
        auto = params.serving.runtime == "auto" and supplied is None
        choice = choose_runtime(predictor, documents, Path(work), params.serving.max_disagreement, supplied,
                                bf16=auto, graphs=tuple(params.serving.onnx_graphs), beat_torch=auto)
        if choice.runtime != "onnx":
            return choice, ""
        labels = {**model.info.labels, **choice.labels()}
        with bentoml.models.create(store_name(f"{model.tag.name}-onnx"), labels=labels,
                                   metadata={"source_model": str(model.tag)}) as onnx_model:
            shutil.copyfile(choice.path, Path(onnx_model.path) / ENCODER_FILE)
    return choice, str(onnx_model.tag)


def _service_dir(params: Params) -> Path:
    service_dir = Path(params.serving.service_dir).resolve()
    if not (service_dir / "bentofile.yaml").is_file():
        raise LongdocError(f"no bentofile.yaml in {service_dir}")
    return service_dir


def build_bento(params: Params, model_tag: str, choice: RuntimeChoice | None = None, onnx_tag: str = "") -> str:
    import bentoml

    service_dir = _service_dir(params)
    choice = choice or RuntimeChoice("torch", "fp32", "serving.runtime: torch")
    args = {"model_tag": model_tag, "max_chars": params.serving.max_chars,
            "max_batch_docs": params.serving.max_batch_docs, "max_body_bytes": params.serving.max_body_bytes,
            "max_latency_ms": str(params.serving.max_latency_ms),
            "quantize": "1" if params.serving.quantize else "0",
            "onnx_model_tag": onnx_tag, "runtime": choice.runtime, "runtime_precision": choice.precision,
            "runtime_reason": choice.reason[:500], "monitor_log_path": params.monitor.log_path,
            "monitor_sample": str(params.monitor.sample), "monitor_log_text": "1" if params.monitor.log_text else "0"}
    # the service lets an environment variable override its build arguments (for serve time); pin it here
    # so a stray LONGDOC_BENTO_MODEL in the builder's environment cannot pack another model
    with _env(MODEL_TAG_ENV, model_tag):
        bento = bentoml.bentos.build_bentofile(str(service_dir / "bentofile.yaml"), build_ctx=str(service_dir),
                                               args=args)
    return str(bento.tag)


BENTO_TAG = "bento"  # version tag: the Bento last built from this version


RUNTIME_TAG = "serving_runtime"  # version tag: what its last Bento serves the encoder with


def package(params: Params, name: str, version: str | None = None, texts: Callable[[], list[str]] = list,
            onnx: Path | None = None) -> Packaged:
    """Build the Bento of the champion (or a version) and record its tag and runtime on the version.

    ``texts`` gives the documents (validation, test, training) a faster runtime is checked on; ``onnx`` checks and
    packs a graph exported elsewhere instead of exporting one.
    """
    from longdoc.registry.mlflow_direct import registry

    _service_dir(params)  # before the runtime check's minute: a Bento that cannot be built fails at once
    model, mv = import_champion(params, name, version)
    choice, onnx_tag = decide_runtime(params, model, texts, onnx)
    packaged = Packaged(str(model.tag), build_bento(params, str(model.tag), choice, onnx_tag), mv, choice.to_dict())
    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    registry(client).set_model_version_tag(name, mv, BENTO_TAG, packaged.bento_tag)
    registry(client).set_model_version_tag(name, mv, RUNTIME_TAG, f"{choice.runtime} {choice.precision}")
    return packaged


def champion_without_bento(params: Params, name: str) -> str | None:
    """Why the champion must be packaged although no new one was promoted (its packaging failed, or its
    Bento left the store); None when its Bento is there or there is no champion."""
    import bentoml
    from bentoml.exceptions import NotFound

    from longdoc.registry.promotion import current_champion

    client = use_tracking(params.registry.tracking_uri).MlflowClient()
    champion = current_champion(client, name, params.registry.champion_alias)
    if champion is None:
        return None
    tag = champion.tags.get(BENTO_TAG)
    if not tag:
        return f"champion v{champion.version} has no Bento yet"
    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return f"champion v{champion.version}'s Bento {tag} is not in the Bento store"
    return None
