"""MLflow calls without the extra round trips that ``MlflowClient`` adds to each one.

On a tracking server every call is an HTTP request, and a promotion is a chain of them made under
the alias lease, so each one lengthens the time others wait. ``MlflowClient`` (3.x) adds requests of
its own: before every registry write (a version tag, an alias, a delete) it reads the registered
model again to refuse prompts, and ``set_terminated`` reads the whole run back to print its URL.
Measured against the PostgreSQL-backed test server, 20 promotions and rollbacks made 564 requests,
228 of them those reads. longdoc's models are never prompts, so the writes below go to the
registry and tracking clients that ``MlflowClient`` itself delegates to. They are private in MLflow
(pinned in constraints.txt); where they are gone, the public client is used, slower but the same.
"""

from __future__ import annotations

import time


def registry(client):
    """The client for registry writes: same method names and arguments as ``MlflowClient``'s."""
    inner = getattr(client, "_get_registry_client", None)
    return inner() if inner is not None else client


def end_run(client, run_id: str, status: str) -> None:
    """``client.set_terminated(run_id, status)`` without reading the run back to print its URL."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if store is None:
        client.set_terminated(run_id, status)
        return
    from mlflow.entities import RunStatus

    store.update_run_info(run_id, run_status=RunStatus.from_string(status), end_time=int(time.time() * 1000),
                          run_name=None)
