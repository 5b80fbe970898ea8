"""MLflow calls without the extra round trips that ``MlflowClient`` adds to each one.

On a tracking server every call is an HTTP request, and a promotion is a chain of them made under
the alias lease, so each one lengthens the time others wait. ``MlflowClient`` (3.x) adds requests of
its own: before every registry write (a version tag, an alias, a delete) it reads the registered
model again to refuse prompts, and ``set_terminated`` reads the whole run back to print its URL.
Measured against the PostgreSQL-backed test server, 20 promotions and rollbacks made 564 requests,
228 of them those reads. longdoc's models are never prompts, so the writes below go to the
registry and tracking clients that ``MlflowClient`` itself delegates to. They are private in MLflow
(pinned in constraints.txt); where they are gone, or their signatures are not the ones used here
(probed once per class, before any write), the public client is used, slower but the same. A
changed private API must never fail a write half-way, after the alias moved or in the lease's
renewal thread.
"""

from __future__ import annotations

import functools
import inspect
import time

# The private methods used, with the parameters they are called with (in this order, by position).
REGISTRY_WRITES = {"set_model_version_tag": ("name", "version", "key", "value"),
                   "set_registered_model_alias": ("name", "alias", "version"),
                   "set_registered_model_tag": ("name", "key", "value"),
                   "delete_registered_model": ("name",)}
STORE_WRITES = {"update_run_info": ("run_id", "run_status", "end_time", "run_name")}


@functools.cache
def fits(cls: type, methods: tuple[tuple[str, tuple[str, ...]], ...]) -> bool:
    """Whether ``cls`` has each method, taking exactly these parameters first and nothing else required."""
    for method, names in methods:
        function = getattr(cls, method, None)
        if not callable(function):
            return False
        try:
            parameters = list(inspect.signature(function).parameters.values())[1:]  # after self
        except (TypeError, ValueError):
            return False
        if [p.name for p in parameters[:len(names)]] != list(names):
            return False
        if any(p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
               for p in parameters[len(names):]):
            return False
    return True


def registry(client):
    """The client for registry writes: same method names and arguments as ``MlflowClient``'s."""
    inner = getattr(client, "_get_registry_client", None)
    if inner is None:
        return client
    try:
        fast = inner()
    except Exception:  # noqa: BLE001 - a private call that fails in any way means: use the public client
        return client
    return fast if fits(type(fast), tuple(REGISTRY_WRITES.items())) else client


def end_run(client, run_id: str, status: str) -> None:
    """``client.set_terminated(run_id, status)`` without reading the run back to print its URL."""
    store = getattr(getattr(client, "_tracking_client", None), "store", None)
    if store is None or not fits(type(store), tuple(STORE_WRITES.items())):
        client.set_terminated(run_id, status)
        return
    from mlflow.entities import RunStatus

    store.update_run_info(run_id, run_status=RunStatus.from_string(status), end_time=int(time.time() * 1000),
                          run_name=None)
