"""The BentoML service: a thin adapter over the champion MLflow model.

All prediction logic is in the model (``longdoc.registry.pyfunc`` -> ``longdoc.models.inference``); this file only
declares the HTTP surface and validates input, so a client's mistake is a 4xx with a reason and a
huge document is refused before it reaches the model.

Two BentoML services, one Bento: ``LongdocService`` is the front door (routes, limits, pages) and
``ModelRunner`` holds the model. Every /classify and /classify_batch request becomes a call of the runner's
batchable ``classify``, so concurrent requests share one encoder call (BentoML's adaptive batching) instead of
fighting for the cores one by one.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import aiohttp
import bentoml
from bentoml.exceptions import InvalidArgument
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import Field

from longdoc.models.prediction import predictions_of
from longdoc.monitoring.collect import Recorder
from longdoc.monitoring.profile import document_id as document_id_of
from longdoc.monitoring.profile import rows as profile_rows
from longdoc.monitoring.records import DOCUMENTS, FEEDBACK

# Settings travel inside the Bento as build arguments (`longdoc package` passes the task's model tag
# and serving.* from params.yaml), so `bentoml serve longdoc:<tag>` or a container runs with the
# packaged values; an environment variable set at serve time overrides them (`longdoc serve` does).
BUILT = vars(bentoml.use_arguments())


def _setting(env: str, arg: str, default: str) -> str:
    return os.environ.get(env) or str(BUILT.get(arg) or default)


MODEL_TAG = _setting("LONGDOC_BENTO_MODEL", "model_tag", "longdoc-classifier:latest")
MAX_CHARS = int(_setting("LONGDOC_MAX_CHARS", "max_chars", "200000"))
MAX_BATCH_DOCS = int(_setting("LONGDOC_MAX_BATCH_DOCS", "max_batch_docs", "64"))
MAX_BODY_BYTES = int(_setting("LONGDOC_MAX_BODY_BYTES", "max_body_bytes", "8000000"))
QUANTIZE = _setting("LONGDOC_QUANTIZE", "quantize", "0").lower() in ("1", "true", "yes")
# serving.runtime, as `longdoc package` checked it: what runs the model, why, and the BentoML model holding the ONNX
# encoder when that is what runs
ONNX_TAG = str(BUILT.get("onnx_model_tag") or "")
RUNTIME = {"runtime": str(BUILT.get("runtime") or "torch"), "precision": str(BUILT.get("runtime_precision") or "fp32"),
           "reason": str(BUILT.get("runtime_reason") or "serving.runtime: torch")}
# serving.monitor: where and how often the runner records what it classified (and the front door the labels sent to
# /feedback); `longdoc monitor` reads them
MONITOR_LOG_PATH = _setting("LONGDOC_MONITOR_LOG_PATH", "monitor_log_path", "")
MONITOR_SAMPLE = float(_setting("LONGDOC_MONITOR_SAMPLE", "monitor_sample", "1.0"))
LOG_TEXT = _setting("LONGDOC_MONITOR_LOG_TEXT", "monitor_log_text", "0").lower() in ("1", "true", "yes")
TIMEOUT_S = 120  # what a request may take in all (traffic.timeout)
# serving.max_latency_ms: how long the runner's adaptive batcher lets a request wait before it answers 503.
# auto is the request timeout: the batcher then refuses only a request it estimates cannot be answered in time (from
# the batch durations it measures while serving, on this machine), not one that merely waits behind a slow CPU batch.
_LATENCY = _setting("LONGDOC_MAX_LATENCY_MS", "max_latency_ms", "auto")
MAX_LATENCY_MS = TIMEOUT_S * 1000 if _LATENCY == "auto" else min(int(_LATENCY), TIMEOUT_S * 1000)
# A refused body is read and dropped, up to this much for this long, before the 413 (RFC 9112 9.6): a client that
# writes its whole body before it reads (urllib) would otherwise have its connection reset and never see the 413.
DRAIN_BYTES = 64 * 2**20
DRAIN_SECONDS = 10.0
PAGE = Path(__file__).with_name("static") / "index.html"

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS, pattern=r"\S",
                            description="The document's raw text; paragraphs separated by blank lines.")]

Texts = Annotated[list[Text], Field(min_length=1, max_length=MAX_BATCH_DOCS,
                                     description=f"At most {MAX_BATCH_DOCS} documents per request.")]

web = FastAPI(title="longdoc pages")


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 before it is parsed or reaches a model.

    A declared Content-Length is checked first; a body without one (chunked) is read up to the limit
    and refused as soon as it passes it, so a client cannot make the server buffer an unbounded body.
    The rest of a refused body is drained (read and dropped, bounded) before the 413 is sent, unless the
    client asked to wait for 100-continue and has sent nothing yet.
    """

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            # a client waiting for 100-continue sends no body: refuse it before asking for one
            return await self._refuse(receive, send, drain=headers.get(b"expect", b"").lower() != b"100-continue")
        messages, size = [], 0
        while True:  # buffer up to the limit, then replay to the app
            message = await receive()
            messages.append(message)
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(receive, send, drain=bool(message.get("more_body")))
            if message["type"] != "http.request" or not message.get("more_body"):
                break

        async def replay():
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, receive, send, drain: bool) -> None:
        if drain:
            await self._drain(receive)
        body = json.dumps({"error": f"request body is larger than the limit of {self.max_bytes} bytes "
                                    "(serving.max_body_bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    @staticmethod
    async def _drain(receive) -> None:
        """Read and drop what is left of the body, at most DRAIN_BYTES within DRAIN_SECONDS.

        The server can only answer once (ASGI gives no body after the response), so the linger comes first:
        a client past the bound is refused anyway, and may then see its connection closed.
        """
        loop = asyncio.get_running_loop()
        deadline, dropped = loop.time() + DRAIN_SECONDS, 0
        while dropped < DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), deadline - loop.time())
            except TimeoutError:
                return
            if message["type"] != "http.request" or not message.get("more_body"):
                return
            dropped += len(message.get("body", b""))


@bentoml.service(name="longdoc-model", workers=1, traffic={"timeout": TIMEOUT_S, "max_concurrency": 256})
class ModelRunner:
    """The one process that does model work; the front door calls it."""

    bento_model = bentoml.models.BentoModel(MODEL_TAG)
    if ONNX_TAG:
        onnx_model = bentoml.models.BentoModel(ONNX_TAG)

    def __init__(self) -> None:
        model = bentoml.mlflow.load_model(self.bento_model)
        self.predictor = model.unwrap_python_model().predictor
        self.runtime = dict(RUNTIME)
        if ONNX_TAG:
            from longdoc.models.onnx.runtime import ENCODER_FILE

            self.predictor.use_onnx(Path(self.onnx_model.path) / ENCODER_FILE)
            self.runtime.update({k: self.onnx_model.info.labels.get(k, "") for k in ("checked_docs", "disagreement")})
        elif self.runtime["runtime"] == "torch" and self.runtime["precision"] == "bf16":
            self.predictor.use_bf16()  # checked at packaging: it agreed with fp32 and was faster
        elif QUANTIZE and self.runtime["runtime"] == "torch":
            self.predictor.quantize()
            self.runtime["precision"] = "int8-dynamic"
        self.info = dict(self.bento_model.info.labels)
        self.recorder = Recorder(DOCUMENTS, MONITOR_LOG_PATH, MONITOR_SAMPLE)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_DOCS, max_latency_ms=MAX_LATENCY_MS)
    def classify(self, texts: list[str]) -> list[dict]:
        """Documents from any number of concurrent requests, classified in one call; the sampled ones recorded."""
        keep = self.recorder.sampled(len(texts))
        try:
            probs, seen = self.predictor.observe(texts, batch_size=16) if any(keep) else (None, None)
        except Exception as err:  # noqa: BLE001 - what is measured only for monitoring never costs an answer
            self.recorder.failed(f"{type(err).__name__}: {err}", sum(keep))
            keep, seen = [False] * len(texts), None
        if seen is None:
            probs, n_chunks = self.predictor.predict_proba(texts, batch_size=16)
        else:
            n_chunks = [o.chunks for o in seen]
        self._record(texts, probs, seen, keep)
        ids = [document_id_of(t) for t in texts]
        answers = predictions_of(probs, n_chunks, self.predictor.labels)
        return [{**asdict(a), "document_id": i} for a, i in zip(answers, ids, strict=True)]

    def _record(self, texts: list[str], probs, seen, keep: list[bool]) -> None:
        if not any(keep):
            return
        try:
            kept = [i for i, k in enumerate(keep) if k]
            rows = profile_rows([texts[i] for i in kept], probs[kept], [seen[i] for i in kept], self.predictor.labels)
            stamp = {"model": self.info.get("model_name", ""), "version": self.info.get("model_version", "")}
            self.recorder.write([{**stamp, **row, **({"text": texts[i]} if LOG_TEXT else {})}
                                 for i, row in zip(kept, rows, strict=True)])
        except Exception as err:  # noqa: BLE001 - a record is never worth a failed request
            self.recorder.failed(f"{type(err).__name__}: {err}", sum(keep))

    @bentoml.api
    def monitoring(self) -> dict:
        return self.recorder.status()

    @bentoml.api
    def explain(self, text: str) -> dict:
        return self.predictor.explain(text)

    @bentoml.api
    def describe(self) -> dict:
        card = self.predictor.card
        return {"info": self.info, "variant": card.variant, "labels": card.labels,
                "chunk_tokens": card.chunking.chunk_tokens if card.chunking else None,
                "temperature": self.predictor.temperature, "runtime": self.runtime,
                "bento_model": str(self.bento_model.tag)}


@bentoml.service(name="longdoc", traffic={"timeout": TIMEOUT_S, "max_concurrency": 256})
@bentoml.asgi_app(web, path="/")
class LongdocService:
    model = bentoml.depends(ModelRunner)

    def __init__(self) -> None:
        self._described: dict | None = None
        self.feedback_recorder = Recorder(FEEDBACK, MONITOR_LOG_PATH, 1.0)  # every label sent back is kept

    async def _runner(self, method: str, *args):
        """Call the model runner, once more if it closed the kept-alive connection just as the call reused it.

        BentoML's client pools connections to a dependency for longer than its server keeps them open, so under
        load a call now and then meets a connection closed at that instant (aiohttp's ServerDisconnectedError, or
        "Can not write request body"; BentoML issues 3669 and 4238). Classifying is idempotent, so a second call
        is safe whether or not the first reached the model.
        """
        try:
            return await getattr(self.model.to_async, method)(*args)
        except aiohttp.ClientConnectionError:
            return await getattr(self.model.to_async, method)(*args)

    async def _describe(self) -> dict:
        if self._described is None:
            self._described = await self._runner("describe")
        return self._described

    async def _reply(self, answer: dict, started: float) -> dict:
        """The runner's answer (a prediction or an explanation) with the model, version and latency."""
        info = (await self._describe())["info"]
        return {**answer, "model": info.get("model_name"), "version": info.get("model_version"),
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    @bentoml.api(route="/classify")
    async def classify(self, text: Text) -> dict:
        """One document: label, class probabilities, chunks read, model version, latency."""
        started = time.perf_counter()
        [prediction] = await self._runner("classify", [text])
        return await self._reply(prediction, started)

    @bentoml.api(route="/classify_batch")
    async def classify_batch(self, texts: Texts) -> list[dict]:
        """Many documents; they join the runner's batch with every other request's."""
        started = time.perf_counter()
        return [await self._reply(p, started) for p in await self._runner("classify", texts)]

    @bentoml.api(route="/feedback")
    async def feedback(self, label: Annotated[str, Field(min_length=1, description="The document's true label.")],
                       document_id: Annotated[str | None, Field(pattern=r"^[0-9a-f]{20}$", description=(
                           "The document_id /classify answered"))] = None,
                       text: Annotated[str | None, Field(min_length=1, max_length=MAX_CHARS, description=(
                           "The document itself, when its id was not kept"))] = None) -> dict:
        """The true label of a served document, for `longdoc monitor`'s served accuracy."""
        labels = (await self._describe())["labels"]
        if label not in labels:
            raise InvalidArgument(f"unknown label {label!r}; the model's labels are {', '.join(labels)}")
        if (document_id is None) == (text is None):
            raise InvalidArgument("send exactly one of document_id (as /classify answered it) and text")
        found = document_id or document_id_of(text)
        self.feedback_recorder.write([{"document_id": found, "true_label": label}])
        status = self.feedback_recorder.status()
        return {"document_id": found, "recorded": status["enabled"], "error": status["error"]}

    @bentoml.api(route="/explain")
    async def explain(self, text: Text) -> dict:
        """Per-chunk scores and weights (attention where the variant has it), with character offsets."""
        started = time.perf_counter()
        return await self._reply(await self._runner("explain", text), started)

    @web.get("/metadata")
    async def metadata(self) -> dict:
        """What is being served and where it came from."""
        described = await self._describe()
        info = described["info"]
        return {"model": info.get("model_name"), "version": info.get("model_version"),
                "alias": info.get("alias"), "variant": described["variant"], "data_version": info.get("data_version"),
                "task": info.get("task"), "labels": described["labels"],
                "chunk_tokens": described["chunk_tokens"], "max_chars": MAX_CHARS,
                "limits": {"max_chars": MAX_CHARS, "max_batch_docs": MAX_BATCH_DOCS, "max_body_bytes": MAX_BODY_BYTES,
                           "max_latency_ms": MAX_LATENCY_MS},
                "temperature": described["temperature"],
                # how the figures it was promoted on were measured: cross-fitted (every document, out of fold) or
                # on the held-out test split, over how many documents
                "evaluation": {"method": info.get("evaluation") or "held-out",
                               "folds": int(info.get("folds") or 0),
                               "documents": int(info.get("decision_docs") or 0)},
                # what runs the encoder (serving.runtime, checked at packaging) and why
                "runtime": described["runtime"],
                "quantized": described["runtime"]["precision"].startswith("int8"),
                "bento_model": described["bento_model"],
                # what is recorded for `longdoc monitor`, and whether it can be
                "monitoring": {"documents": await self._runner("monitoring"),
                               "feedback": self.feedback_recorder.status(), "log_text": LOG_TEXT}}

    @web.get("/ui", response_class=HTMLResponse)
    def page(self) -> str:
        """Paste or upload a document; see the label and the chunks shaded by weight."""
        return PAGE.read_text()


LongdocService.add_asgi_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
