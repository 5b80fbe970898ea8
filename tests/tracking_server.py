"""A real team setup on loopback: PostgreSQL behind ``mlflow server --serve-artifacts``.

PostgreSQL comes from Debian's package (``make test`` installs it where missing); its data directory
is a temporary folder, and since ``initdb`` refuses root, it runs as the ``postgres`` user when the
tests run as root. The MLflow server stores runs and the registry in that database and serves
artifacts over HTTP from a temporary folder, so clients share nothing with it but the HTTP address.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_bin(tool: str) -> str | None:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{tool}"))
    return found[-1] if found else shutil.which(tool)


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr or done.stdout}")


def _wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer within {timeout} s")


@dataclass
class Postgres:
    root: Path
    port: int = field(default_factory=free_port)

    @property
    def data(self) -> Path:
        return self.root / "pgdata"

    @property
    def uri(self) -> str:
        return f"postgresql://mlflow@127.0.0.1:{self.port}/mlflow"

    def init(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            for folder in (self.root, *self.root.parents):  # the postgres user must reach its folder
                if folder == Path(tempfile.gettempdir()) or folder == folder.parent:
                    break
                folder.chmod(folder.stat().st_mode | 0o711)
        _run(_as_postgres([postgres_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "mlflow"]))
        self.start()
        _run([postgres_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "mlflow", "-d", "postgres",
              "-c", "create database mlflow;"])

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        _run(_as_postgres([postgres_bin("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.root / "log"),
                           "-w", "start"]))

    def stop(self) -> None:
        subprocess.run(_as_postgres([postgres_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "stop"]),
                       capture_output=True)


@dataclass
class MlflowServer:
    backend: str
    artifacts: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        log = (self.artifacts.parent / "mlflow-server.log").open("a")
        # One uvicorn worker: it still serves clients concurrently (MLflow runs its Flask app in anyio worker
        # threads, each request on its own database connection), and on 2 cores it answered promotions 4x
        # faster than two worker processes did (60 from 3 clients: 11.6 s against 43 s, 2026-11-30).
        self.proc = subprocess.Popen(
            [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend, "--serve-artifacts",
             "--artifacts-destination", str(self.artifacts), "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", "1"],
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"},
            start_new_session=True)
        _wait_http(f"{self.uri}/health", 180, self.proc)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9)
                self.proc.wait()


@dataclass
class TeamServer:
    """PostgreSQL and the MLflow server in front of it; ``uri`` is all a client needs."""

    postgres: Postgres
    mlflow: MlflowServer

    @property
    def uri(self) -> str:
        return self.mlflow.uri

    root: Path

    @classmethod
    def start(cls) -> TeamServer:
        """In a folder of its own under the system temp dir, not pytest's: pytest makes its base folder
        private again whenever a pytest session starts, which would lock the postgres user out mid-test."""
        root = Path(tempfile.mkdtemp(prefix="longdoc-team-"))
        postgres = Postgres(root / "postgres")
        postgres.init()
        server = cls(postgres, MlflowServer(postgres.uri, root / "artifacts"), root)
        server.mlflow.start()
        return server

    def stop(self) -> None:
        self.mlflow.stop()
        self.postgres.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def available() -> str | None:
    """Why a team server cannot start here, or None when it can."""
    if postgres_bin("initdb") is None:
        return "PostgreSQL is not installed (make test installs Debian's postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (the dev extra has it)"
    return None
