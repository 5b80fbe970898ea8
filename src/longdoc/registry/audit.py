"""The audit trail of an alias: one record per change, as an MLflow run.

MLflow aliases keep no history. Appending to one JSON tag does not scale: a registered-model tag is a
5,000-character column in MLflow's database, about two dozen entries. Here every change (gate,
promote, rollback, refusal) is its own run in the experiment ``<model>.audit``: who, when, why,
previous and new version as tags, readable in the MLflow UI as a table and with
``longdoc models audit``, thousands of them.

A record is written *before* the alias moves, as a RUNNING run, and ended FINISHED once the alias
was read back at its new value (FAILED if the move failed). So a failure to write the record leaves
the alias untouched, and a change that died half-way is visible as a record that never finished.
Records are numbered by ``seq``: the counter is the registered model's ``audit.seq`` tag, only
advanced under the alias lease (lease.py), so numbers never repeat; a number whose record was never
written is a harmless gap.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
from datetime import UTC, datetime

from longdoc.registry.mlflow_direct import end_run, registry

FIELDS = ("action", "version", "alias", "previous", "who", "when", "why")
SEQ_TAG = "audit.seq"
LEGACY_TAG = "audit"      # before per-change records: one JSON list on the registered model
_PREFIX = "longdoc.registry.audit."
_MAX_VALUE = 5000         # MLflow stores a run tag value in at most this many characters (PostgreSQL)
_CLIPPED = " ... (clipped)"
_WHO_ROOM = 500           # JSON characters a name keeps in a version note before the reason has to give way
_EXPERIMENTS: dict[tuple[str, str], str] = {}


def who() -> str:
    """The user behind a change: LONGDOC_USER when set (a pipeline names its run), else the login."""
    explicit = os.environ.get("LONGDOC_USER")
    if explicit:
        return explicit
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry
        return f"uid {os.getuid()}"


def entry(action: str, version: str, alias: str, previous: str | None, why: str) -> dict:
    return {"action": action, "version": str(version), "alias": alias, "previous": previous, "who": who(),
            "when": datetime.now(UTC).isoformat(timespec="microseconds"), "why": why}


def experiment_name(name: str) -> str:
    return f"{name}.audit"


def _find_experiment(client, name: str) -> str | None:
    """The audit experiment's id, remembered per store: an experiment id never changes."""
    key = (client.tracking_uri, name)
    if key not in _EXPERIMENTS:
        found = client.get_experiment_by_name(experiment_name(name))
        if found is None:
            return None
        _EXPERIMENTS[key] = found.experiment_id
    return _EXPERIMENTS[key]


def _experiment_id(client, name: str) -> str:
    from mlflow.exceptions import MlflowException

    found = _find_experiment(client, name)
    if found is not None:
        return found
    with contextlib.suppress(MlflowException):  # created meanwhile by a change of another alias of the model
        client.create_experiment(experiment_name(name), tags={"longdoc.audit_of": name})
    return _find_experiment(client, name)


def _clip(value: str) -> str:
    return value if len(value) <= _MAX_VALUE else value[: _MAX_VALUE - len(_CLIPPED)] + _CLIPPED


def open_record(client, name: str, record: dict) -> str:
    """Write the record of a change about to happen (RUNNING); returns its run id."""
    seq = int(client.get_registered_model(name).tags.get(SEQ_TAG, "0")) + 1
    registry(client).set_registered_model_tag(name, SEQ_TAG, str(seq))
    tags = {f"{_PREFIX}{key}": _clip("" if record[key] is None else str(record[key])) for key in FIELDS}
    tags[f"{_PREFIX}seq"] = str(seq)
    tags[f"{_PREFIX}model"] = name
    run = client.create_run(_experiment_id(client, name), tags=tags,
                            run_name=f"{seq:06d} {record['action']} v{record['version']}")
    return run.info.run_id


def close_record(client, run_id: str, applied: bool, note: str | None = None) -> None:
    if note:
        client.set_tag(run_id, f"{_PREFIX}note", _clip(note))
    end_run(client, run_id, "FINISHED" if applied else "FAILED")


def version_note(record: dict, run_id: str) -> str:
    """The change that gave a version its alias, as one JSON tag on the version (``<alias>.change``).

    One tag rather than one per field: on a server each tag is a request made under the lease. ``record``
    is the audit run's id, where the full record is. The free texts (why, then who) give way when the
    JSON would not fit the tag: an outsized name first (to ``_WHO_ROOM``), then the reason; each is clipped
    once, by bisection, so it always ends, and keeps its start.
    """
    note = {key: record[key] for key in ("action", "who", "when")} | {"record": run_id, "why": record["why"]}
    excess = len(json.dumps(note, ensure_ascii=False)) - _MAX_VALUE
    beyond_room = len(json.dumps(note["who"], ensure_ascii=False)) - _WHO_ROOM
    if excess > 0 and beyond_room > 0:  # an outsized name gives way first, down to its room
        note["who"] = _shorten(str(note["who"]), min(excess, beyond_room))
    excess = len(json.dumps(note, ensure_ascii=False)) - _MAX_VALUE
    if excess > 0:
        note["why"] = _shorten(str(note["why"]), excess)
    return json.dumps(note, ensure_ascii=False)


def _shorten(value: str, excess: int) -> str:
    """The longest start of ``value`` (marked as clipped) whose JSON is at least ``excess`` characters shorter.

    Measured on the JSON, since escapes make a character cost up to six; found by bisection.
    """
    budget = len(json.dumps(value, ensure_ascii=False)) - excess
    fits = lambda n: len(json.dumps(value[:n] + _CLIPPED, ensure_ascii=False)) <= budget  # noqa: E731
    low, high = 0, len(value)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return value[:low] + _CLIPPED if fits(low) else ""


def write(client, name: str, record: dict) -> None:
    """A record of something that changes no alias (a refusal): written and finished at once."""
    close_record(client, open_record(client, name, record), applied=True)


def _from_run(run) -> dict:
    tags = run.data.tags
    record = {key: tags.get(f"{_PREFIX}{key}", "") for key in FIELDS}
    record["previous"] = record["previous"] or None
    record["seq"] = int(tags.get(f"{_PREFIX}seq", "0"))
    record["state"] = {"FINISHED": "applied", "FAILED": "failed"}.get(run.info.status, "unfinished")
    if f"{_PREFIX}note" in tags:
        record["note"] = tags[f"{_PREFIX}note"]
    return record


def _legacy(client, name: str) -> list[dict]:
    old = json.loads(client.get_registered_model(name).tags.get(LEGACY_TAG, "[]"))
    return [{**e, "seq": 0, "state": "applied"} for e in old]


def records(client, name: str, applied_only: bool = True) -> list[dict]:
    """Every record of the model in order (records from before per-change records first)."""
    found = _find_experiment(client, name)
    runs, token = [], None
    while found is not None:
        page = client.search_runs([found], max_results=1000, page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    trail = _legacy(client, name) + sorted((_from_run(r) for r in runs), key=lambda r: r["seq"])
    return [r for r in trail if r["state"] == "applied"] if applied_only else trail


def unfinished(client, name: str) -> list[tuple[str, dict]]:
    """(run id, record) of changes whose writer died between the record and the read-back."""
    found = _find_experiment(client, name)
    if found is None:
        return []
    runs = client.search_runs([found], filter_string="attributes.status = 'RUNNING'",
                              max_results=1000)
    return [(r.info.run_id, _from_run(r)) for r in runs]
