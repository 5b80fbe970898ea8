"""Raw text in, label and probabilities out: the one prediction path.

Evaluation, the MLflow pyfunc model and the BentoML service all call :class:`Predictor`, so a model
classifies a text the same way wherever it runs.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from longdoc.data.chunking import chunk_document
from longdoc.models.base import support_weights
from longdoc.models.batching import SpecialTokens, collate
from longdoc.models.io import load_classifier
from longdoc.models.precision import autocast
from longdoc.models.prediction import Observation, Prediction, predictions_of
from longdoc.models.segments import segment_mean


class Predictor:
    def __init__(self, model, tokenizer, card, device: str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.tokenizer = tokenizer
        self.card = card
        self.device = device
        self.special = SpecialTokens.of(tokenizer)
        self.temperature = 1.0  # set from the validation split by the evaluation (temperature scaling)
        self.cpu_bf16 = False  # bf16 autocast on CPU: a serving runtime, chosen at packaging when it agrees and pays

    @classmethod
    def load(cls, model_dir: str | Path, device: str = "cpu") -> Predictor:
        model, tokenizer, card = load_classifier(model_dir)
        return cls(model, tokenizer, card, device)

    def _softmax(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.float() / self.temperature, dim=-1)

    @contextmanager
    def vector_cache(self, root: Path | None):
        """Within the block, chunk vectors come from (and go to) the embedding cache under ``root``, keyed by
        this model's encoder weights; None computes every vector (what a speed figure must measure)."""
        from longdoc.models.embedding_cache import attach

        encoder = getattr(self.model, "encoder", None)
        if encoder is None or not hasattr(encoder, "store"):
            yield
            return
        saved = encoder.store
        store = attach(encoder, root) if root is not None else None
        encoder.store = store
        try:
            yield
        finally:
            if store is not None:
                store.flush()
            encoder.store = saved

    def quantize(self) -> Predictor:
        """int8 dynamic quantization of the Linear layers (CPU serving); its accuracy cost is in bench/."""
        from torch import nn

        self.model = torch.ao.quantization.quantize_dynamic(self.model.cpu(), {nn.Linear}, dtype=torch.qint8)
        self.device = "cpu"
        return self

    def use_onnx(self, path: Path, threads: int | None = None) -> Predictor:
        """Serve with the encoder as an ONNX Runtime graph (``serving.runtime: onnx``); the head stays in torch."""
        from longdoc.models.onnx.runtime import OnnxEncoder

        self.model = self.model.cpu()
        self.model.encoder = OnnxEncoder(path, threads)
        self.device = "cpu"
        return self

    @contextmanager
    def onnx_encoder(self, path: Path):
        """Within the block, the ONNX graph at ``path`` encodes; the torch encoder is back afterwards."""
        saved, device = self.model.encoder, self.device
        try:
            yield self.use_onnx(path)
        finally:
            self.model.encoder = saved
            self.model.to(device)
            self.device = device

    def use_bf16(self) -> Predictor:
        """Serve in bf16 on CPU: the encoder's weights in bf16 (no cast per call), the rest under bf16 autocast.

        Pays where the CPU multiplies bf16 matrices in hardware (AMX); packaging checks that it agrees and pays.
        """
        self.model.encoder.to(torch.bfloat16)
        self.cpu_bf16 = True
        return self

    @contextmanager
    def bf16(self):
        """Within the block, the model runs in bf16 (a bf16 copy of the encoder); fp32 afterwards, untouched."""
        import copy

        saved, flag = self.model.encoder, self.cpu_bf16
        self.model.encoder = copy.deepcopy(saved)
        try:
            yield self.use_bf16()
        finally:
            self.model.encoder, self.cpu_bf16 = saved, flag

    @property
    def runtime(self) -> str:
        return "onnx" if type(self.model.encoder).__name__ == "OnnxEncoder" else "torch"

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    def segments_of(self, text: str) -> list[list[int]]:
        """The token ids of each segment the model reads of ``text`` (what the encoder sees)."""
        return self._segments(text)[0]

    def _segments(self, text: str) -> tuple[list[list[int]], int]:
        chunked = chunk_document(text, self.tokenizer, self.card.chunking)
        return self.model.segments(chunked.input_ids, chunked.windows), len(chunked.windows)

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[int]]:
        """Class probabilities [len(texts), n_labels] and the number of chunks of each text."""
        probs, seen = self._classify(texts, batch_size, observe=False)
        return probs, [o.chunks for o in seen]

    def observe(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[Observation]]:
        """Class probabilities, and what the model saw of each text (for monitoring), from the same pass."""
        return self._classify(texts, batch_size, observe=True)

    @torch.inference_mode()
    def _classify(self, texts: list[str], batch_size: int, observe: bool) -> tuple[np.ndarray, list[Observation]]:
        """Documents are batched by length so that padding is small, and all chunks of a batch go through the
        encoder in one call. With ``observe``, the encoder's chunk vectors of that call are kept: the document's
        vector is their mean, and the chunk weights come from them without a second encoder pass."""
        chunked = [chunk_document(t, self.tokenizer, self.card.chunking) for t in texts]
        segments = [self.model.segments(c.input_ids, c.windows) for c in chunked]
        order = sorted(range(len(texts)), key=lambda i: sum(len(s) for s in segments[i]))
        probs = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        vectors: list[np.ndarray | None] = [None] * len(texts)
        top = [0] * len(texts)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            batch = collate([segments[i] for i in rows], self.special).to(self.device)
            with autocast(self.device, self.cpu_bf16), _outputs_of(self.model.encoder, observe) as encoded:
                logits = self.model(batch)
                if observe:
                    z = encoded[-1]
                    weights = self.model.chunk_weights(batch, z) or [[1.0]] * len(rows)
            probs[rows] = self._softmax(logits).cpu().numpy()
            if observe:
                mean = segment_mean(z.float(), batch.doc_index, batch.n_docs).cpu().numpy()
                for k, i in enumerate(rows):
                    vectors[i], top[i] = mean[k], int(np.argmax(weights[k]))
        seen = [Observation(len(t), len(c.input_ids), len(c.windows), top[i], vectors[i])
                for i, (t, c) in enumerate(zip(texts, chunked, strict=True))]
        return probs, seen

    @torch.inference_mode()
    def explain(self, text: str) -> dict:
        """Which parts of the text the model read, and how much each decided the prediction.

        For every segment: its character spans in ``text``, the class probabilities the model gives
        that segment read alone, and its weight: the attention weight for variants that have one
        (ATT), otherwise the segment's normalised support for the predicted class.
        """
        chunked = chunk_document(text, self.tokenizer, self.card.chunking)
        spans = self.model.segment_spans(len(chunked.input_ids), chunked.windows)
        segments = self.model.segments(chunked.input_ids, chunked.windows)
        whole = collate([segments], self.special).to(self.device)
        with autocast(self.device, self.cpu_bf16):
            probs = self._softmax(self.model(whole))[0]
            alone = self._softmax(self.model(collate([[s] for s in segments], self.special).to(self.device)))
            weights = self.model.chunk_weights(whole)
        predicted = int(probs.argmax())
        if weights is None:  # one segment read (truncation, Longformer): it decided alone
            weights = support_weights(alone.float(), probs.argmax(-1, keepdim=True), whole)
        chunks = []
        for index, (segment_spans, p, w) in enumerate(zip(spans, alone.cpu().numpy(), weights[0], strict=True)):
            char_spans = [list(chunked.char_span(s)) for s in segment_spans if s.end > s.start]
            chunks.append({"index": index, "char_spans": char_spans, "weight": float(w),
                           "probabilities": dict(zip(self.labels, map(float, p), strict=True))})
        weights_from = "attention" if self.card.variant == "attention" else "segment support"
        return {"label": self.labels[predicted], "variant": self.card.variant, "weights_from": weights_from,
                "probabilities": dict(zip(self.labels, map(float, probs), strict=True)), "chunks": chunks}

    def predict(self, texts: list[str], batch_size: int = 32) -> list[Prediction]:
        return predictions_of(*self.predict_proba(texts, batch_size), self.labels)


@contextmanager
def _outputs_of(module: torch.nn.Module, keep: bool):
    """Within the block, the outputs of ``module``'s calls from this thread (none kept unless ``keep``).

    The thread matters: a served model may classify two batches at once in two threads, and a hook sees both.
    """
    outputs: list[torch.Tensor] = []
    owner = threading.get_ident()

    def kept(_module, _inputs, out) -> None:
        if threading.get_ident() == owner:
            outputs.append(out)

    handle = module.register_forward_hook(kept) if keep else None
    try:
        yield outputs
    finally:
        if handle is not None:
            handle.remove()


def load_predictor(model_dir: str | Path, device: str = "cpu"):
    """The predictor for a model folder: a transformer variant or the TF-IDF baseline.

    Both answer ``predict``, ``predict_proba``, ``explain`` and carry ``labels``, ``card`` and
    ``temperature``, so evaluation, the MLflow model and the service treat them alike.
    """
    from longdoc.models.baseline import BaselinePredictor, is_baseline_dir

    if is_baseline_dir(model_dir):
        return BaselinePredictor.load(model_dir)
    return Predictor.load(model_dir, device)
