"""Mutual exclusion for changes of an alias, through the registry itself.

A promotion reads the champion, compares, then moves the alias; two of them at once can both read
the same champion. A file lock serialises them only on one machine, and an MLflow server has no
compare-and-set on aliases or tags. It has one atomic insert-if-absent: creating a registered model
whose name exists fails (a unique key in its database, SQLite or PostgreSQL alike). The lease is
such a model, ``_lease.<model>.<alias>``: whoever creates it holds the alias, whoever gets "already
exists" waits, and the holder deletes it when done. It works the same against a SQLite file and a
server shared by many pods, so there is one mechanism, tested on both.

What it assumes, and what it does not:

- **No clock agreement.** The holder renews the lease every ``LEASE_SECONDS / 3`` from a background
  thread by changing its ``beat`` tag. A waiter calls a lease dead only when it has itself seen the
  same token and beat for ``LEASE_SECONDS`` on its own monotonic clock, so a holder whose wall clock
  is off (or a waiter's) changes nothing. A waiter's clock that stops (it slept) only delays it.
- **One breaker per dead lease.** Breaking reads then deletes, which is not atomic; so a breaker first
  claims the dead token by creating ``_lease.<model>.<alias>.broken.<token>`` (insert-if-absent again):
  only the one that creates it deletes the lease, and only while it still holds that token. The claim
  stays behind (a dead token never comes back). A breaker that dies between its claim and the delete
  leaves the lease to be deleted by hand; the waiters' error names it.
- **Fencing.** The holder never deletes a lease without reading that its token is still there, and
  right before it moves the alias it checks the same (:func:`check`), so a holder that slept through
  its lease (a suspended laptop) neither releases the next holder's lease nor moves the alias. What
  remains is the time between that check and the write: one request.
- **Permissions.** Under MLflow's auth plugin only a model's creator (or an admin) may delete it. A
  dead lease of another user then cannot be broken: the waiter says so at once, naming the lease and
  its holder, instead of waiting ``WAIT_SECONDS``.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from longdoc.errors import LongdocError
from longdoc.registry.mlflow_direct import registry

LEASE_PREFIX = "_lease."
LEASE_SECONDS = 90.0    # a lease seen unrenewed for this long belongs to a dead holder
WAIT_SECONDS = 900.0    # how long a writer waits for a live lease before giving up
POLL_SECONDS = (0.1, 1.0)  # a waiting writer's first and longest pause between attempts
_RETRY = {"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}
_DENIED = {"PERMISSION_DENIED", "UNAUTHENTICATED"}


def lease_name(name: str, alias: str) -> str:
    return f"{LEASE_PREFIX}{name}.{alias}"


def breaking_name(name: str, alias: str, token: str) -> str:
    """The claim of whoever breaks the dead lease with ``token``: created once, by one breaker."""
    return f"{lease_name(name, alias)}.broken.{token}"


def _contended(err: Exception) -> bool:
    """Another writer holds it (or just released it); SQLite's own write lock counts as contention too."""
    return getattr(err, "error_code", None) in _RETRY or "database is locked" in str(err)


def _tags(client, lease: str) -> dict[str, str] | None:
    """The lease's tags, or None when there is no lease."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(lease).tags
    except MlflowException as err:
        if err.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise


@dataclass
class _Watch:
    """What a waiter has seen of the lease: its token and beat, since when (this waiter's monotonic clock)."""

    seen: tuple[str | None, str | None] = (None, None)
    since: float = field(default_factory=time.monotonic)

    def silent_for(self, tags: dict[str, str], now: float) -> float:
        state = (tags.get("token"), tags.get("beat"))
        if state != self.seen:
            self.seen, self.since = state, now
        return now - self.since


def _break(client, name: str, alias: str, token: str, holder: str) -> None:
    """Delete the dead lease with ``token``, if this writer is the one that claims it."""
    from mlflow.exceptions import MlflowException

    lease = lease_name(name, alias)
    try:
        client.create_registered_model(breaking_name(name, alias, token),
                                       tags={"holder": holder, "taken": datetime.now(UTC).isoformat()})
    except MlflowException as err:
        if _contended(err):
            return  # another writer is breaking it (or broke it): its lease must not be deleted by this one
        raise
    try:
        if (_tags(client, lease) or {}).get("token") == token:
            registry(client).delete_registered_model(lease)
    except MlflowException as err:
        if err.error_code in _DENIED:
            raise LongdocError(f"{name}@{alias}: the lease {lease!r} of a dead holder ({holder}) cannot be deleted "
                               f"with your rights ({err.error_code}); its creator or an MLflow admin must delete the "
                               f"registered models {lease!r} and {breaking_name(name, alias, token)!r}") from None
        if err.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def check(client, name: str, alias: str, token: str) -> None:
    """Raise unless the lease on ``alias`` still holds ``token`` (call right before a write it guards)."""
    tags = _tags(client, lease_name(name, alias))
    if tags is None or tags.get("token") != token:
        other = f"to {tags.get('holder', '?')}" if tags is not None else "(nobody holds it now)"
        raise LongdocError(f"lost the lease on {name}@{alias} {other}: this writer was stalled past "
                           f"{LEASE_SECONDS:.0f} s without renewing it, so the change was not made; run it again")


def _release(client, lease: str, token: str) -> None:
    """Give the lease back, only if it is still ours (it may have been broken while we stalled)."""
    from mlflow.exceptions import MlflowException

    try:
        if (_tags(client, lease) or {}).get("token") == token:
            registry(client).delete_registered_model(lease)
    except MlflowException:
        pass  # the lease is gone, or the server is: a dead lease is broken by the next writer


def _holder(tags: dict[str, str] | None) -> str:
    if tags is None:
        return "nobody (just released)"
    return f"{tags.get('holder', '?')} since {tags.get('taken', '?')}"


def _renew(client, lease: str, token: str, lease_seconds: float, stop: threading.Event) -> None:
    """Change the beat while the body runs; stop quietly if the lease is gone or unreachable."""
    from mlflow.exceptions import MlflowException

    beat = 0
    while not stop.wait(lease_seconds / 3):
        try:
            if (_tags(client, lease) or {}).get("token") != token:
                return
            beat += 1
            registry(client).set_registered_model_tag(lease, "beat", str(beat))
        except MlflowException:
            return


@contextmanager
def alias_lease(client, name: str, alias: str, who: str, wait_seconds: float = WAIT_SECONDS,
                lease_seconds: float = LEASE_SECONDS):
    """Hold the lease on ``alias`` of model ``name`` for the body; wait while someone else holds it.

    Yields the lease's token, for :func:`check`.
    """
    from mlflow.exceptions import MlflowException

    lease, token = lease_name(name, alias), uuid.uuid4().hex
    started = time.monotonic()
    checked, pause, watch = started - lease_seconds, POLL_SECONDS[0], _Watch()
    tags: dict[str, str] | None = None
    while True:
        attempt = time.monotonic()
        try:
            client.create_registered_model(lease, tags={"token": token, "holder": who, "beat": "0",
                                                        "taken": datetime.now(UTC).isoformat()},
                                           description=f"lease on {name}@{alias}: a change of the alias is in "
                                                       "progress")
            break
        except MlflowException as err:
            if not _contended(err):
                raise
        # a lease lives for minutes: look at the holder now and then, not at every poll, and poll less often
        # the longer the wait, so that waiting writers do not crowd the server the holder is using
        if attempt - checked > lease_seconds / 10:
            checked = attempt
            tags = _tags(client, lease)
            if tags is not None and watch.silent_for(tags, attempt) >= lease_seconds:
                _break(client, name, alias, tags.get("token", ""), tags.get("holder", "?"))
                continue
        if attempt - started > wait_seconds:
            raise LongdocError(f"{name}@{alias} is being changed by {_holder(tags)}; gave up after "
                               f"{wait_seconds:.0f} s (a lease seen unrenewed for {lease_seconds:.0f} s is broken; "
                               f"if its holder is surely gone, delete the registered model {lease!r})")
        time.sleep(random.uniform(pause / 2, pause))
        pause = min(pause * 1.5, POLL_SECONDS[1])
    stop = threading.Event()
    renewer = threading.Thread(target=_renew, args=(client, lease, token, lease_seconds, stop), daemon=True)
    renewer.start()
    try:
        yield token
    finally:
        stop.set()
        renewer.join()
        _release(client, lease, token)
