"""One trial: the configured variants trained with one set of sampled params, scored on validation macro-F1.

The same function runs a trial for ``longdoc tune`` on this machine and for a trial task of the kfp
sweep on a cluster, and it knows nothing of Optuna: pruning comes in as a callable that answers
"stop?" after each validation.

What a trial can share with others is kept in a workspace by the hash of the settings that make it:
the validated corpus, the chunks, and the stage-1 encoder of two-stage training. Chunks and stage 1 are
keyed on the corpus's data version (its content), not its path: after ``dvc pull`` or ``data import``
the same path holds other documents, and the next session validates them again and builds anew. A trial whose
sampled values only reach the layers above the encoder (``train.overrides.<variant>.*``) reuses the
stage-1 folder, and its training reads every chunk vector from the embedding cache: no chunk goes
through the encoder. The cache's own hit and miss counters say so, per trial.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from longdoc.config.params import STAGE1_VARIANT, Params
from longdoc.errors import LongdocError

Report = Callable[[int, float], bool]  # (step, value so far) -> prune?


class Pruned(Exception):
    """The trial was stopped by its report callable; the value it had reached is kept."""

    def __init__(self, step: int, value: float, result: TrialResult) -> None:
        super().__init__(f"pruned at step {step} (validation macro-F1 so far {value:.4f})")
        self.step, self.value, self.result = step, value, result


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def data_key(params: Params) -> str:
    return digest("validated", params.data.model_dump())


def chunks_key(params: Params, data_version: str) -> str:
    return digest("chunks", data_version, params.encoder.model_dump(), params.chunking.model_dump())


def stage1_key(params: Params, data_version: str) -> str | None:
    """What shapes the stage-1 encoder (the same fingerprint its checkpoints carry); None without two-stage."""
    if not params.train.two_stage:
        return None
    from longdoc.training.loop import training_fingerprint

    return digest("stage1", chunks_key(params, data_version),
                  training_fingerprint(params, STAGE1_VARIANT, params.train.for_stage1(), "pretrained",
                                       data_version=data_version))


def _build_once(folder: Path, done_file: str, build: Callable[[Path], object]) -> bool:
    """Build ``folder`` unless it is already complete; False when it was reused.

    Built in a private folder and renamed into place, so trial tasks running at once on a shared volume
    never read a half-written one; when two build the same folder, the second one's copy is dropped.
    """
    if (folder / done_file).is_file():
        return False
    folder.parent.mkdir(parents=True, exist_ok=True)
    scratch = folder.with_name(f"{folder.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        build(scratch)
        if folder.exists() and not (folder / done_file).is_file():
            shutil.rmtree(folder)  # a leftover without its completion marker
        try:
            scratch.rename(folder)
        except OSError:
            if not (folder / done_file).is_file():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return True


@dataclass
class Workspace:
    """Folders trials share, named by the hash of what made them (see the module docstring)."""

    root: Path
    _validated: dict[str, Path] = field(default_factory=dict, init=False, repr=False)

    def validated(self, params: Params) -> Path:
        """The corpus validated once per session (a path is no version: read it again each session), kept under
        its data version so sessions over the same documents share what was built from them."""
        from longdoc.stages import validate

        key = data_key(params)
        if key not in self._validated:
            scratch = self.root / "validated" / f"{key}.tmp-{uuid.uuid4().hex[:8]}"
            try:
                version = validate(params, params.data.corpus, scratch)["data_version"]
                folder = self.root / "validated" / digest(key, version)
                _build_once(folder, "summary.json", scratch.rename)
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            self._validated[key] = folder
        return self._validated[key]

    def chunks(self, params: Params, corpus_dir: Path) -> Path:
        from longdoc.stages import chunk, data_version

        folder = self.root / "chunks" / chunks_key(params, data_version(corpus_dir))
        _build_once(folder, "chunk_stats.json", lambda out: chunk(params, corpus_dir, out))
        return folder

    def stage1(self, params: Params, chunk_dir: Path) -> tuple[Path | None, dict | None]:
        """The stage-1 folder and, when this trial trained it, its embedding-cache fill record."""
        from longdoc.stages import train_encoder
        from longdoc.training.loop import chunks_data_version

        key = stage1_key(params, chunks_data_version(chunk_dir))
        if key is None:
            return None, None
        folder = self.root / "stage1" / key
        built: dict = {}
        _build_once(folder, "train_summary.json",
                    lambda out: built.update(train_encoder(params, chunk_dir, out)))
        return folder, built.get("embedding_cache")

    def prepare(self, params: Params, corpus_dir: Path | None = None) -> tuple[Path, Path | None, dict | None]:
        """Validated corpus (unless given), chunks and stage-1 encoder for ``params``."""
        corpus_dir = corpus_dir or self.validated(params)
        chunk_dir = self.chunks(params, corpus_dir)
        stage1_dir, fill = self.stage1(params, chunk_dir)
        return chunk_dir, stage1_dir, fill


@dataclass
class TrialResult:
    value: float
    variants: dict[str, float]
    stage1: str  # "reused", "trained" or "none" (one-stage training)
    cache_hits: int = 0
    cache_misses: int = 0
    seconds: float = 0.0
    summaries: dict[str, dict] = field(default_factory=dict)

    @property
    def hit_cache(self) -> bool:
        """No chunk went through the encoder in this trial: every vector came from the embedding cache."""
        return self.stage1 != "trained" and self.cache_hits > 0 and self.cache_misses == 0

    def record(self) -> dict:
        return {"value": self.value, "variants": self.variants, "stage1": self.stage1, "cache_hits": self.cache_hits,
                "cache_misses": self.cache_misses, "hit_cache": self.hit_cache, "seconds": round(self.seconds, 1)}


class _Reporter:
    """Turns each variant's validations into one curve for the pruner: at global step (steps of the variants
    already trained + this step), the mean of every variant's best validation macro-F1 so far."""

    def __init__(self, report: Report | None) -> None:
        self.report, self.offset, self.best = report, 0, []
        self.stopped: tuple[int, float] | None = None

    def hook(self, index: int):
        self.best.append(-1.0)

        def on_validation(step: int, score: float) -> bool:
            self.best[index] = max(self.best[index], score)
            value, at = sum(self.best) / len(self.best), self.offset + step
            if self.report is not None and self.report(at, value):
                self.stopped = (at, value)
                return True
            return False

        return on_validation


def check_trial_params(params: Params) -> None:
    """Refuse what a trial cannot run, before any compute (the training stage's own check, then ours)."""
    from longdoc.models.preflight import check_config

    check_config(params)
    many = [v for v in params.train.variants if params.train.for_variant(v).nproc_per_node > 1]
    if many:
        raise LongdocError(f"train.nproc_per_node > 1 for {many[0]}: a trial trains in one process (it must report "
                           "each validation to the pruner); on a cluster each trial is its own GPU task")


def run_trial(params: Params, workspace: Workspace, out_dir: Path, report: Report | None = None,
              corpus_dir: Path | None = None) -> TrialResult:
    """Train every variant of ``train.variants`` with ``params`` into ``out_dir``; the objective is the mean of
    their best validation macro-F1 (never the test split). Raises :class:`Pruned` when ``report`` said stop."""
    from longdoc.stages import train

    started = time.perf_counter()
    check_trial_params(params)
    chunk_dir, stage1_dir, fill = workspace.prepare(params, corpus_dir)
    result = TrialResult(0.0, {}, "none" if stage1_dir is None else ("trained" if fill is not None else "reused"))
    if fill is not None:
        result.cache_hits, result.cache_misses = fill["hits"], fill["misses"]
    reporter = _Reporter(report)
    for index, variant in enumerate(params.train.variants):
        summary = train(params, variant, chunk_dir, out_dir / variant, stage1_dir, on_validation=reporter.hook(index))
        result.summaries[variant] = summary
        result.variants[variant] = float(summary["best_val_macro_f1"])
        cache = summary.get("embedding_cache") or {}
        result.cache_hits += int(cache.get("hits", 0))
        result.cache_misses += int(cache.get("misses", 0))
        reporter.offset += int(summary["steps"])
        if reporter.stopped is not None:
            result.seconds = time.perf_counter() - started
            raise Pruned(*reporter.stopped, result)
    result.value = sum(result.variants.values()) / len(result.variants)
    result.seconds = time.perf_counter() - started
    return result
