"""Which runtime a Bento serves its model with, decided at packaging and checked, not assumed.

The candidates: the chunk encoder exported to ONNX and fused (fp32), quantised to int8 two ways (dynamic, and
static with ranges calibrated on validation chunks), and, with ``serving.runtime: auto``, the torch model under
bf16 autocast (what pays on CPUs with AMX matrix units). Each candidate classifies validation and test documents
beside the torch fp32 model; one whose labels differ on more than ``serving.max_disagreement`` of them is
refused. The Bento serves the fastest candidate that passes and beats torch fp32, else torch fp32; its build
output and ``/metadata`` say which, and why.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from longdoc.errors import LongdocError

CHECK_DOCS = 200  # documents each candidate is compared with torch on (about a minute on 2 cores)
CALIBRATION_DOCS = 48  # validation documents whose chunks set the static ranges


@dataclass
class Candidate:
    """One way to run the model, as the check saw it."""

    engine: str  # onnx | torch
    precision: str  # fp32 | int8-static | int8-dynamic | bf16 | supplied
    path: str | None = None  # the ONNX graph
    disagreement: float | None = None  # share of check documents labelled differently from torch fp32
    differing: int | None = None
    docs_per_s: float | None = None
    max_prob_diff: float | None = None  # largest change of any class probability
    error: str | None = None  # why it could not be built, loaded or run

    @property
    def name(self) -> str:
        return f"{self.engine} {self.precision}"

    def passes(self, limit: float) -> bool:
        return self.error is None and self.disagreement is not None and self.disagreement <= limit


@dataclass
class RuntimeChoice:
    """What the Bento serves with, and the evidence: written into the Bento and shown by ``/metadata``."""

    runtime: str  # onnx | torch | sklearn
    precision: str  # what runs: fp32, bf16, int8-static, int8-dynamic, supplied
    reason: str
    path: str | None = None
    checked_docs: int = 0
    torch_docs_per_s: float | None = None
    candidates: list[Candidate] = field(default_factory=list)
    max_disagreement: float | None = None

    def labels(self) -> dict[str, str]:
        """BentoML model labels are strings."""
        chosen = next((c for c in self.candidates if (c.engine, c.precision) == (self.runtime, self.precision)), None)
        return {"runtime": self.runtime, "precision": self.precision, "reason": self.reason[:500],
                "checked_docs": str(self.checked_docs),
                "disagreement": "" if chosen is None else f"{chosen.disagreement:.4f}"}

    def to_dict(self) -> dict:
        return asdict(self)


def _timed_proba(predictor, texts: list[str]) -> tuple[np.ndarray, float]:
    predictor.predict_proba(texts[:2])  # warm-up: first-call allocations, ONNX Runtime's graph rewrite
    started = time.perf_counter()
    probs, _ = predictor.predict_proba(texts)
    return probs, len(texts) / max(time.perf_counter() - started, 1e-9)


@contextmanager
def running(predictor, candidate: Candidate):
    """``predictor`` set up to run as ``candidate`` within the block."""
    if candidate.engine == "onnx":
        with predictor.onnx_encoder(Path(candidate.path)):
            yield predictor
    else:
        with predictor.bf16():
            yield predictor


def check(predictor, candidate: Candidate, texts: list[str], reference: np.ndarray) -> Candidate:
    """Classify ``texts`` as the candidate and compare with torch fp32's probabilities."""
    try:
        with running(predictor, candidate):
            probs, candidate.docs_per_s = _timed_proba(predictor, texts)
    except LongdocError as err:
        candidate.error = str(err)
        return candidate
    except RuntimeError as err:  # an operator the engine lacks (bf16 on an old CPU, a kernel ONNX Runtime misses)
        candidate.error = f"failed to run: {str(err).strip().splitlines()[0][:300]}"
        return candidate
    differing = int((probs.argmax(1) != reference.argmax(1)).sum())
    candidate.differing, candidate.disagreement = differing, differing / len(texts)
    candidate.max_prob_diff = float(np.abs(probs - reference).max())
    return candidate


def _calibration(predictor, texts: list[str]):
    """Batches of (input_ids, attention_mask) made the way serving makes them, from validation documents."""
    from longdoc.models.batching import collate

    for start in range(0, min(len(texts), CALIBRATION_DOCS), 8):
        segments = [predictor.segments_of(t) for t in texts[start : start + 8]]
        batch = collate(segments, predictor.special)
        yield batch.input_ids.numpy(), batch.attention_mask.numpy()


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:300]


GRAPHS = ("int8-dynamic", "int8-static", "fp32")


def build_candidates(predictor, texts: list[str], work: Path, graphs: tuple[str, ...] = GRAPHS) -> list[Candidate]:
    """Export, fuse and quantise the encoder into ``graphs``; a step that fails becomes a candidate with its error."""
    from longdoc.models.onnx import export as onnx

    work.mkdir(parents=True, exist_ok=True)
    encoder = predictor.model.encoder
    raw, fused = work / "exported.onnx", work / "fp32.onnx"
    try:
        onnx.export_encoder(encoder, raw)
        onnx.optimize(raw, fused, encoder)
    except Exception as err:  # the exporter and optimiser raise many types; each is a reason to stay in torch
        return [Candidate("onnx", "fp32", error=f"export failed: {_first_line(err)}")]
    candidates = [Candidate("onnx", "fp32", str(fused))] if "fp32" in graphs else []
    steps = {"int8-dynamic": lambda path: onnx.quantize_dynamic(fused, path),
             "int8-static": lambda path: onnx.quantize_static(raw, path, _calibration(predictor, texts))}
    for precision, make in steps.items():
        if precision not in graphs:
            continue
        path = work / f"{precision}.onnx"
        try:
            candidates.append(Candidate("onnx", precision, str(make(path))))
        except Exception as err:
            candidates.append(Candidate("onnx", precision, error=f"quantisation failed: {_first_line(err)}"))
    return candidates


def pick(candidates: list[Candidate], limit: float, floor: float = 0.0) -> Candidate | None:
    """The fastest candidate within the disagreement limit, if it reads more than ``floor`` docs/s (torch fp32's,
    when torch fp32 is a contender too)."""
    passing = sorted((c for c in candidates if c.passes(limit)), key=lambda c: -(c.docs_per_s or 0))
    return passing[0] if passing and (passing[0].docs_per_s or 0) > floor else None


def _refusals(candidates: list[Candidate], limit: float) -> str:
    return "; ".join(f"{c.name}: {c.error}" if c.error else
                     f"{c.name}: labels {c.differing} of the check documents differently ({c.disagreement:.1%} > "
                     f"{limit:.1%})" for c in candidates if not c.passes(limit))


def choose_runtime(predictor, texts: list[str], work: Path, max_disagreement: float, supplied: Path | None = None,
                   bf16: bool = False, graphs: tuple[str, ...] = GRAPHS, beat_torch: bool = False) -> RuntimeChoice:
    """The runtime for ``predictor``'s Bento. ``supplied`` checks an ONNX graph exported elsewhere instead of
    exporting one; ``bf16`` adds torch under bf16 autocast to the candidates; ``beat_torch`` makes torch fp32 a
    contender (``serving.runtime: auto``), where otherwise an ONNX graph that agrees serves even if slower."""
    from longdoc.models.onnx.export import why_not_exportable

    encoder = getattr(getattr(predictor, "model", None), "encoder", None)
    if encoder is None:
        return RuntimeChoice("sklearn", "tf-idf", "the TF-IDF baseline has no encoder: it serves in scikit-learn")
    if not texts:  # nothing to check a faster runtime on: the one the model was evaluated with
        return RuntimeChoice("torch", "fp32", "no validation or test documents to check a faster runtime on: serves in "
                                              "torch fp32")
    reason = why_not_exportable(encoder)
    candidates = [Candidate("onnx", "supplied", str(supplied))] if supplied else [] if reason else \
        build_candidates(predictor, texts, work, graphs)
    if bf16:
        candidates.append(Candidate("torch", "bf16"))
    if not candidates:
        return RuntimeChoice("torch", "fp32", f"serves in torch: {reason}")
    reference, torch_speed = _timed_proba(predictor, texts)
    for candidate in candidates:
        if candidate.error is None:
            check(predictor, candidate, texts, reference)
    common = {"checked_docs": len(texts), "torch_docs_per_s": torch_speed, "candidates": candidates,
              "max_disagreement": max_disagreement}
    chosen = pick(candidates, max_disagreement, torch_speed if beat_torch else 0.0)
    refused = _refusals(candidates, max_disagreement)
    if chosen is None:
        slower = [c.name for c in candidates if c.passes(max_disagreement)]
        why = "; ".join([*([refused] if refused else []), *([f"{', '.join(slower)}: not faster than torch fp32"]
                                                            if slower else [])])
        return RuntimeChoice("torch", "fp32", f"fell back to torch fp32: {why}" + (f"; {reason}" if reason else ""),
                             **common)
    why = (f"{chosen.name} labels {chosen.differing} of {len(texts)} check documents differently from torch "
           f"fp32 (limit {max_disagreement:.1%}) and reads {chosen.docs_per_s:.1f} docs/s against torch fp32's "
           f"{torch_speed:.1f}" + (f"; refused {refused}" if refused else ""))
    return RuntimeChoice(chosen.engine, chosen.precision, why, chosen.path, **common)
