"""Writing records from inside the Bento, through BentoML's monitoring API, without ever failing a request.

A record that cannot be written (an unwritable or full disk, a broken sink) is dropped and counted: the service
answers the request all the same, and ``/metadata`` shows the count and the last error.
"""

from __future__ import annotations

import os
import random
from pathlib import Path

from longdoc.monitoring.records import DOCUMENTS

FEATURE_ROLES = {"label": ("prediction", "categorical"), "confidence": ("prediction", "numerical"),
                 "true_label": ("target", "categorical"), "sketch": ("feature", "numerical_sequence")}
CATEGORICAL = ("document_id", "model", "version", "text")


def default_log_path() -> str:
    """Beside the BentoML store, which every BentoML deployment has writable (a container's /home/bentoml)."""
    return str(Path(os.environ.get("BENTOML_HOME") or Path.home() / "bentoml") / "monitoring")


class Recorder:
    def __init__(self, stream: str = DOCUMENTS, log_path: str = "", sample: float = 1.0) -> None:
        self.stream, self.log_path, self.sample = stream, log_path or default_log_path(), sample
        self.written = self.dropped = 0
        self.error = ""
        self._random = random.Random()
        try:  # the sink is checked once here, so a broken one costs a request nothing later
            folder = Path(self.log_path) / stream / "data"
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"{folder} is not writable")
        except OSError as err:
            self.error = f"cannot write records under {self.log_path}: {err}"

    @property
    def enabled(self) -> bool:
        return self.sample > 0 and not self.error

    def sampled(self, n: int) -> list[bool]:
        """Which of ``n`` documents to record (monitor.sample of them, at random)."""
        return [self.enabled and self._random.random() < self.sample for _ in range(n)]

    def write(self, rows: list[dict]) -> None:
        """The rows as records, in one pass through BentoML's monitor (a batch costs little more than a row);
        never raises: rows that cannot be written are counted as dropped."""
        if not rows:
            return
        if not self.enabled:
            self.dropped += len(rows)
            return
        try:
            self._write(rows)
            self.written += len(rows)
        except Exception as err:  # noqa: BLE001 - whatever the sink does, the request must not fail
            self.failed(f"{type(err).__name__}: {err}", len(rows))
            _forget_open_record()

    def failed(self, error: str, records: int) -> None:
        """``records`` not written, and why (the latest reason is what /metadata shows)."""
        self.dropped += records
        self.error = error[:300]

    def _write(self, rows: list[dict]) -> None:
        import bentoml

        columns = dict.fromkeys(name for row in rows for name in row)  # in the order the rows give them
        with bentoml.monitor(self.stream, monitor_class="default", monitor_options={"log_path": self.log_path}) as m:
            for name in columns:
                role, kind = FEATURE_ROLES.get(name, ("feature", "categorical" if name in CATEGORICAL else "numerical"))
                m.log_batch([row.get(name) for row in rows], name, role, kind)

    def status(self) -> dict:
        return {"stream": self.stream, "log_path": self.log_path, "sample": self.sample, "enabled": self.enabled,
                "written": self.written, "dropped": self.dropped, "error": self.error}


def _forget_open_record() -> None:
    """A record that failed half-way leaves BentoML's per-context record open, and every later one would then fail
    its assertion that none is; close it."""
    try:
        from bentoml._internal.monitoring.base import MON_COLUMN_VAR, MON_DATAS_VAR
    except ImportError:  # a BentoML that moved them: nothing left open to close that we know of
        return
    MON_DATAS_VAR.set(None)
    MON_COLUMN_VAR.set(None)
