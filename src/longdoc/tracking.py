"""Where MLflow lives: resolving and checking the tracking URI before any work is done.

A relative ``sqlite:///mlruns.db`` is made absolute so that pipeline steps running in other working
directories write to the same store; an unreachable server is reported in seconds instead of after
MLflow's minutes of retries.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

from longdoc.errors import LongdocError

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def resolve_tracking_uri(configured: str) -> str:
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured
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
            raise LongdocError(f"MLflow tracking URI {uri}: folder {folder} does not exist")
        return
    if scheme in ("http", "https"):
        import requests

        try:
            requests.get(uri.rstrip("/") + "/health", timeout=timeout)
        except requests.RequestException as err:
            raise LongdocError(f"MLflow tracking server {uri} cannot be reached: {type(err).__name__}") from None
        return
    if scheme in ("", "file"):
        return
    if scheme not in ("databricks", "postgresql", "mysql", "mssql"):
        raise LongdocError(f"unsupported MLflow tracking URI scheme {scheme!r} in {uri}")


def use_tracking(configured: str):
    """Resolve, check and activate the tracking/registry URI; returns the ``mlflow`` module."""
    uri = resolve_tracking_uri(configured)
    check_tracking_uri(uri)
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow
