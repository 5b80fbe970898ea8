"""Who is champion, and why: the promotion gate, manual promotion, rollback and their audit trail.

MLflow aliases keep no history, so every change of champion appends an entry to the registered
model's ``audit`` tag (a JSON list: action, version, previous champion, who, when, why) and writes
the same facts onto the version. The previous champion is what ``rollback`` restores.

Concurrency: the read-compare-set of a promotion runs under an exclusive lock. For a SQLite store
it is a file lock beside the database, so two promotions at once (two pipeline branches, two users)
serialise and the second one sees the first one's champion. An MLflow server offers no
compare-and-set; against one, run promotions from a single place (the pipeline's gate step).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from longdoc.config import GateParams
from longdoc.errors import LongdocError

PROMOTION_METRIC = "normal_macro_f1"
GAP_METRIC = "inverted_gap_macro_f1"
AUDIT_TAG = "audit"


@dataclass
class Decision:
    version: str
    promoted: bool
    reasons: list[str] = field(default_factory=list)
    previous: str | None = None

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@contextmanager
def registry_lock(tracking_uri: str):
    """Exclusive lock for read-compare-set on the registry (a file lock for SQLite stores)."""
    if not tracking_uri.startswith("sqlite:///"):
        yield
        return
    lock_path = Path(tracking_uri.removeprefix("sqlite:///") + ".promotion.lock")
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def current_champion(client, name: str, alias: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None


def gate(candidate, champion, current_data: str, rules: GateParams) -> list[str]:
    """Reasons the candidate may not become champion; empty means it passes."""
    reasons = []
    score = float(candidate.tags[PROMOTION_METRIC])
    gap = float(candidate.tags.get(GAP_METRIC, "nan"))
    if gap > rules.max_inverted_gap:
        reasons.append(f"inverted gap {gap:.4f} exceeds max_inverted_gap {rules.max_inverted_gap}")
    if rules.require_current_data and candidate.tags.get("data_version") != current_data:
        reasons.append(f"trained on data {candidate.tags.get('data_version')}, current data is {current_data}")
    if champion is not None and str(champion.version) != str(candidate.version):
        best = float(champion.tags.get(PROMOTION_METRIC, "-1"))
        if score < best + rules.min_gain:
            reasons.append(f"{PROMOTION_METRIC} {score:.4f} does not beat champion v{champion.version} "
                           f"({best:.4f}) by min_gain {rules.min_gain}")
    return reasons


def _append_audit(client, name: str, entry: dict) -> None:
    model = client.get_registered_model(name)
    trail = json.loads(model.tags.get(AUDIT_TAG, "[]"))
    trail.append(entry)
    client.set_registered_model_tag(name, AUDIT_TAG, json.dumps(trail))


def audit_trail(client, name: str) -> list[dict]:
    return json.loads(client.get_registered_model(name).tags.get(AUDIT_TAG, "[]"))


def _entry(action: str, version: str, alias: str, previous: str | None, why: str) -> dict:
    return {"action": action, "version": str(version), "alias": alias, "previous": previous,
            "who": os.environ.get("LONGDOC_USER") or getpass.getuser(),
            "when": datetime.now(UTC).isoformat(timespec="microseconds"), "why": why}


def _record(client, name: str, version: str, action: str, alias: str, previous: str | None, why: str) -> None:
    """Audit entry on the model, and who/when/why on the version.

    ``<alias>.previous`` on a version is the champion it replaced; a rollback keeps the restored
    version's own value, so rolling back again walks further back instead of toggling.
    """
    entry = _entry(action, version, alias, previous, why)
    _append_audit(client, name, entry)
    keys = ("action", "who", "when", "why") if action == "rollback" else ("action", "who", "when", "why", "previous")
    for key in keys:
        client.set_model_version_tag(name, str(version), f"{alias}.{key}", str(entry[key] or ""))


def apply_gate(client, tracking_uri: str, name: str, version: str, alias: str, current_data: str,
               rules: GateParams) -> Decision:
    """Promote ``version`` if it passes the gate, else tag it challenger with the reasons."""
    with registry_lock(tracking_uri):
        candidate = client.get_model_version(name, version)
        champion = current_champion(client, name, alias)
        reasons = gate(candidate, champion, current_data, rules)
        previous = str(champion.version) if champion is not None else None
        if reasons:
            client.set_model_version_tag(name, version, "status", "challenger")
            client.set_model_version_tag(name, version, "gate", "refused: " + "; ".join(reasons))
            _append_audit(client, name, _entry("refused", version, alias, previous, "; ".join(reasons)))
            return Decision(str(version), False, reasons, previous)
        why = "no champion yet" if champion is None else (
            f"{PROMOTION_METRIC} {float(candidate.tags[PROMOTION_METRIC]):.4f} beats champion v{previous} "
            f"({float(champion.tags.get(PROMOTION_METRIC, '-1')):.4f}) by at least {rules.min_gain}")
        client.set_registered_model_alias(name, alias, str(version))
        client.set_model_version_tag(name, version, "status", alias)
        client.set_model_version_tag(name, version, "gate", "passed: " + why)
        _record(client, name, version, "gate", alias, previous, why)
        return Decision(str(version), True, [why], previous)


def require_model(client, name: str):
    from mlflow.exceptions import MlflowException

    try:
        return client.get_registered_model(name)
    except MlflowException:
        raise LongdocError(f"no registered model named {name!r}") from None


def require_version(client, name: str, version: str):
    """The version, or a clear error: not a number, no such model, or a version of another model."""
    from mlflow.exceptions import MlflowException

    if not str(version).isdigit():
        raise LongdocError(f"version must be a number, got {version!r}")
    require_model(client, name)
    try:
        return client.get_model_version(name, str(version))
    except MlflowException:
        raise LongdocError(f"model {name!r} has no version {version}") from None


def promote(client, tracking_uri: str, name: str, version: str, alias: str, reason: str, force: bool,
            current_data: str, rules: GateParams) -> Decision:
    """Manual promotion: through the gate, or past it with ``force`` and a reason."""
    require_version(client, name, version)
    if force and not reason:
        raise LongdocError("--force needs --reason: the audit trail must say why the gate was bypassed")
    with registry_lock(tracking_uri):
        candidate = client.get_model_version(name, str(version))
        champion = current_champion(client, name, alias)
        previous = str(champion.version) if champion is not None else None
        if previous == str(version):
            raise LongdocError(f"{name} v{version} is already {alias}")
        reasons = gate(candidate, champion, current_data, rules)
        if reasons and not force:
            raise LongdocError(f"{name} v{version} does not pass the gate: {'; '.join(reasons)} "
                               "(use --force --reason '...' to promote anyway)")
        why = reason or "passed the gate"
        if reasons:
            why += f" (forced past: {'; '.join(reasons)})"
        client.set_registered_model_alias(name, alias, str(version))
        client.set_model_version_tag(name, str(version), "status", alias)
        _record(client, name, str(version), "promote", alias, previous, why)
        return Decision(str(version), True, [why], previous)


def rollback(client, tracking_uri: str, name: str, alias: str, reason: str) -> Decision:
    """Give the alias back to the champion before the current one."""
    with registry_lock(tracking_uri):
        champion = current_champion(client, name, alias)
        if champion is None:
            raise LongdocError(f"{name} has no {alias} to roll back")
        previous = champion.tags.get(f"{alias}.previous", "")
        if not previous:
            raise LongdocError(f"{name} v{champion.version} has no previous {alias} to roll back to")
        client.set_registered_model_alias(name, alias, previous)
        client.set_model_version_tag(name, str(champion.version), "status", f"rolled back from {alias}")
        client.set_model_version_tag(name, previous, "status", alias)
        _record(client, name, previous, "rollback", alias, str(champion.version), reason or "rollback")
        return Decision(previous, True, [reason or "rollback"], str(champion.version))
