"""Timing and reporting shared by the benchmarks: medians after a warm-up, the spread, the machine."""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

RESULTS = Path(__file__).with_name("results")


def machine() -> dict:
    import torch

    info = {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "versions": {p: _version(p) for p in ("torch", "transformers", "longdoc")}}
    return info


def _version(package: str) -> str | None:
    """None where the package is not installed (longdoc run from a source tree on a GPU machine)."""
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def timed(fn: Callable[[], object], repeats: int = 3, warmup: int = 1) -> dict:
    """Median and spread (min, max) of wall seconds over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return {"median_s": statistics.median(runs), "min_s": min(runs), "max_s": max(runs), "repeats": repeats}


class PeakRSS:
    """Peak resident memory above the level at entry, sampled every 2 ms (CPU; CUDA uses its own counter)."""

    def __enter__(self) -> PeakRSS:
        self.base = self._rss()
        self.peak = self.base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mb(self) -> float:
        return (self.peak - self.base) / 2**20

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def write(name: str, payload: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2))
    print(f"wrote {path}")
    return path
