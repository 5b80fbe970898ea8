"""Mutual exclusion for changes of an alias, through the registry itself.

A promotion reads the champion, compares, then moves the alias; two of them at once can both read
the same champion. A file lock serialises them only on one machine, and an MLflow server has no
compare-and-set on aliases or tags. It has one atomic insert-if-absent: creating a registered model
whose name exists fails (a unique key in its database, SQLite or PostgreSQL alike). The lease is
such a model, ``_lease.<model>.<alias>``: whoever creates it holds the alias, whoever gets "already
exists" waits, and the holder deletes it when done. It works the same against a SQLite file and a
server shared by many pods, so there is one mechanism, tested on both.

The holder renews the lease every ``LEASE_SECONDS / 3`` from a background thread, so a long
re-scoring keeps it, while a holder that died (or lost the server) stops renewing and its lease is
broken by the next writer once it has expired. That is the one gap in the guarantee: a holder whose
process is alive but cannot reach the server for longer than ``LEASE_SECONDS`` can overlap with the
writer that broke its lease; the read-back after moving the alias (promotion.py) detects that and
fails the change loudly.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from longdoc.errors import LongdocError
from longdoc.mlflow_direct import registry

LEASE_PREFIX = "_lease."
LEASE_SECONDS = 90.0    # a lease not renewed for this long belongs to a dead holder
WAIT_SECONDS = 900.0    # how long a writer waits for a live lease before giving up
POLL_SECONDS = (0.1, 1.0)  # a waiting writer's first and longest pause between attempts
_RETRY = {"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}


def lease_name(name: str, alias: str) -> str:
    return f"{LEASE_PREFIX}{name}.{alias}"


def _contended(err: Exception) -> bool:
    """Another writer holds it (or just released it); SQLite's own write lock counts as contention too."""
    return getattr(err, "error_code", None) in _RETRY or "database is locked" in str(err)


def _expired(client, lease: str, now: datetime) -> str | None:
    """The holder's token when the lease is stale, so only that exact lease is broken."""
    from mlflow.exceptions import MlflowException

    try:
        held = client.get_registered_model(lease)
    except MlflowException:
        return None
    expires = held.tags.get("expires")
    if expires is None or datetime.fromisoformat(expires) > now:
        return None
    return held.tags.get("token")


def _break(client, lease: str, token: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        if client.get_registered_model(lease).tags.get("token") == token:
            registry(client).delete_registered_model(lease)
    except MlflowException:
        pass


def _release(client, lease: str, token: str, renewed: float, lease_seconds: float) -> None:
    """Give the lease back. Renewed within half its life, it cannot have been broken, so it is deleted
    without reading its token first (one round trip fewer per change); otherwise only if still ours."""
    from mlflow.exceptions import MlflowException

    if time.monotonic() - renewed < lease_seconds / 2:
        with contextlib.suppress(MlflowException):
            registry(client).delete_registered_model(lease)
    else:
        _break(client, lease, token)


def _holder(client, lease: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(lease).tags
    except MlflowException:
        return "nobody (just released)"
    return f"{tags.get('holder', '?')} since {tags.get('taken', '?')}"


def _expiry(lease_seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=lease_seconds)).isoformat()


def _renew(client, lease: str, token: str, lease_seconds: float, stop: threading.Event, renewed: list[float]) -> None:
    """Push the expiry forward while the body runs; stop quietly if the lease is gone or unreachable.

    ``renewed[0]`` is when the expiry was last pushed (monotonic clock), for ``_release``."""
    from mlflow.exceptions import MlflowException

    while not stop.wait(lease_seconds / 3):
        try:
            if client.get_registered_model(lease).tags.get("token") != token:
                return
            started = time.monotonic()
            registry(client).set_registered_model_tag(lease, "expires", _expiry(lease_seconds))
            renewed[0] = started
        except MlflowException:
            return


@contextmanager
def alias_lease(client, name: str, alias: str, who: str, wait_seconds: float = WAIT_SECONDS,
                lease_seconds: float = LEASE_SECONDS):
    """Hold the lease on ``alias`` of model ``name`` for the body; wait while someone else holds it."""
    from mlflow.exceptions import MlflowException

    lease, token = lease_name(name, alias), uuid.uuid4().hex
    started = time.monotonic()
    checked, pause = started - lease_seconds, POLL_SECONDS[0]  # the first refusal looks for a dead holder
    while True:
        now, attempt = datetime.now(UTC), time.monotonic()
        tags = {"token": token, "holder": who, "taken": now.isoformat(), "expires": _expiry(lease_seconds)}
        try:
            client.create_registered_model(lease, tags=tags, description=f"lease on {name}@{alias}: a change "
                                                                         "of the alias is in progress")
            break
        except MlflowException as err:
            if not _contended(err):
                raise
        # a lease lives for minutes: look for a dead holder now and then, not at every poll, and poll less
        # often the longer the wait, so that waiting writers do not crowd the server the holder is using
        if attempt - checked > lease_seconds / 10:
            checked = attempt
            stale = _expired(client, lease, now)
            if stale is not None:
                _break(client, lease, stale)
                continue
        if attempt - started > wait_seconds:
            raise LongdocError(f"{name}@{alias} is being changed by {_holder(client, lease)}; gave up after "
                               f"{wait_seconds:.0f} s (a dead holder's lease expires {lease_seconds:.0f} s after "
                               f"its last renewal; or delete the registered model {lease!r})")
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 1.5, POLL_SECONDS[1])
    renewed, stop = [attempt], threading.Event()
    renewer = threading.Thread(target=_renew, args=(client, lease, token, lease_seconds, stop, renewed), daemon=True)
    renewer.start()
    try:
        yield token
    finally:
        stop.set()
        renewer.join()
        _release(client, lease, token, renewed[0], lease_seconds)
