"""Where MLflow lives: resolving and checking the tracking URI before any work is done.

A relative ``sqlite:///mlruns.db`` is made absolute so that pipeline steps running in other working
directories write to the same store; an unreachable server is reported in seconds instead of after
MLflow's minutes of retries.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlparse

from longdoc.errors import LongdocError
from longdoc.redaction import redact  # the one rule (callers import it from here too)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# ``registry.tracking_uri`` in a pipeline compiled for a cluster: the URI (and any credentials) come from
# the pod's environment, set from a Kubernetes Secret, so the compiled YAML holds neither.
FROM_ENVIRONMENT = "env:MLFLOW_TRACKING_URI"


def resolve_tracking_uri(configured: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
    if uri == FROM_ENVIRONMENT:
        raise LongdocError(f"registry.tracking_uri is {FROM_ENVIRONMENT!r} but MLFLOW_TRACKING_URI is not set: on "
                           "a cluster it comes from the Secret named by pipeline.cluster.secret (key "
                           "MLFLOW_TRACKING_URI); elsewhere export it or set registry.tracking_uri")
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        uri = "sqlite:///" + str(Path(uri.removeprefix("sqlite:///")).resolve())
    return uri


def artifact_root(uri: str) -> str | None:
    """Artifacts of a SQLite store go next to the database file, not into the current directory."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
    return None


def check_tracking_uri(uri: str, timeout: float = 5.0) -> None:
    """Raise a clear error if the tracking store cannot be used."""
    scheme = urlparse(uri).scheme
    if scheme == "sqlite":
        folder = Path(uri.removeprefix("sqlite:///")).parent
        if not folder.is_dir():
            raise LongdocError(f"MLflow tracking URI {redact(uri)}: folder {folder} does not exist")
        return
    if scheme in ("http", "https"):
        import requests

        try:
            # not /health, which answers without the database: a store call shows whether the server can work
            probe = requests.get(uri.rstrip("/") + "/api/2.0/mlflow/experiments/search",
                                 params={"max_results": 1}, timeout=timeout)
        except requests.RequestException as err:
            raise LongdocError(f"MLflow tracking server {redact(uri)} cannot be reached: "
                               f"{type(err).__name__}") from None
        if probe.status_code >= 500:
            raise LongdocError(f"MLflow tracking server {redact(uri)} answers with HTTP {probe.status_code} "
                               "(is its database up?)")
        return
    if scheme in ("", "file"):
        return
    if scheme.split("+")[0] not in ("databricks", "postgresql", "mysql", "mssql"):  # dialect+driver, as SQLAlchemy
        raise LongdocError(f"unsupported MLflow tracking URI scheme {scheme!r} in {redact(uri)}")
    if scheme != "databricks":
        _check_driver(uri)


def _check_driver(uri: str) -> None:
    """A database URI's driver must be installed: say which, instead of a traceback from deep inside MLflow."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError, ImportError) as err:
        raise LongdocError(f"MLflow tracking URI {redact(uri)}: its database driver cannot be loaded ({err}); "
                           "install it (psycopg2-binary for postgresql+psycopg2://, psycopg[binary] for "
                           "postgresql://)") from None


def use_tracking(configured: str):
    """Resolve, check and activate the tracking/registry URI; returns the ``mlflow`` module."""
    uri = resolve_tracking_uri(configured)
    check_tracking_uri(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow


def _server_failure(err: BaseException) -> str | None:
    """How a server failed (unreachable, or answering with errors), or None for any other error."""
    text = str(err)
    if "Connection refused" in text or "NewConnectionError" in text or "RemoteDisconnected" in text:
        return "cannot be reached"
    if "API request to" in text and "failed with exception" in text:
        return "answered with errors (is its database up?)" if "error responses" in text else "cannot be reached"
    if getattr(err, "error_code", None) in ("INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE"):
        return "answered with an internal error (is its database up?)"
    return None


@contextmanager
def server_errors(uri: str, doing: str):
    """Turn a tracking server that went away mid-step into one clear error naming it.

    MLflow retries first (MLFLOW_HTTP_REQUEST_MAX_RETRIES); what is left is the server's fault, not
    the user's, and a traceback through MLflow's REST client would only hide which server it was.
    """
    try:
        yield
    except LongdocError:
        raise
    except Exception as err:
        how = _server_failure(err) if urlparse(uri).scheme in ("http", "https") else None
        if how is None:
            raise
        raise LongdocError(f"MLflow tracking server {redact(uri)} {how} while {doing}") from None
