"""A bounded load test against a running longdoc service on loopback.

Sends ``requests`` POSTs to /classify at ``concurrency`` in flight, stops by itself, and reports
status counts, dropped requests (connection errors or timeouts), latency percentiles and throughput.

    python -m bench.load --url http://127.0.0.1:3000 --requests 500 --concurrency 8
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

RESULTS = Path(__file__).with_name("results")


def _one(session: requests.Session, url: str, text: str, timeout: float) -> tuple[int, float]:
    started = time.perf_counter()
    try:
        status = session.post(f"{url}/classify", json={"text": text}, timeout=timeout).status_code
    except requests.RequestException:
        status = 0  # dropped
    return status, time.perf_counter() - started


def run_load(url: str, texts: list[str], n_requests: int, concurrency: int, timeout: float = 60.0) -> dict:
    if not url.startswith(("http://127.", "http://localhost", "http://[::1]")):
        raise ValueError("the load test only targets loopback addresses")
    sessions = [requests.Session() for _ in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda i: _one(sessions[i % concurrency], url, texts[i % len(texts)], timeout),
                                range(n_requests)))
    wall = time.perf_counter() - started
    latencies = sorted(1000 * s for status, s in results if status == 200)
    q = statistics.quantiles(latencies, n=100) if len(latencies) >= 2 else [float("nan")] * 99
    return {
        "requests": n_requests, "concurrency": concurrency, "ok": sum(s == 200 for s, _ in results),
        "client_errors": sum(400 <= s < 500 for s, _ in results), "server_errors": sum(s >= 500 for s, _ in results),
        "dropped": sum(s == 0 for s, _ in results), "p50_ms": q[49], "p95_ms": q[94], "p99_ms": q[98],
        "throughput_rps": n_requests / wall, "wall_seconds": wall,
        "mean_chars": statistics.mean(len(texts[i % len(texts)]) for i in range(n_requests)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--corpus", default="data/corpus.jsonl")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--out", default=str(RESULTS / "load_test.json"))
    args = parser.parse_args()
    texts = [json.loads(line)["text"] for line in Path(args.corpus).read_text().splitlines()[:200]]
    report = {**run_load(args.url, texts, args.requests, args.concurrency), "machine": platform.platform(),
              "cpus": __import__("os").cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
