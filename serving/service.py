"""The BentoML service: a thin adapter over the champion MLflow model.

All prediction logic is in the model (``longdoc.pyfunc`` -> ``longdoc.inference``); this file only
declares the HTTP surface and validates input, so a client's mistake is a 4xx with a reason.
"""

from __future__ import annotations

import os
import time
from typing import Annotated

import bentoml
from pydantic import Field

MODEL_TAG = os.environ.get("LONGDOC_BENTO_MODEL", "longdoc-classifier:latest")
MAX_CHARS = int(os.environ.get("LONGDOC_MAX_CHARS", "200000"))

Text = Annotated[str, Field(min_length=1, max_length=MAX_CHARS, pattern=r"\S",
                            description="The document's raw text; paragraphs separated by blank lines.")]


@bentoml.service(name="longdoc", traffic={"timeout": 120})
class LongdocService:
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.model = bentoml.mlflow.load_model(self.bento_model)
        self.labels = dict(self.bento_model.info.labels)

    @bentoml.api(route="/classify")
    def classify(self, text: Text) -> dict:
        started = time.perf_counter()
        row = self.model.predict({"text": [text]}).iloc[0]
        probabilities = {k.removeprefix("prob_"): float(v) for k, v in row.items() if k.startswith("prob_")}
        return {"label": row["label"], "probabilities": probabilities, "n_chunks": int(row["n_chunks"]),
                "model": self.labels.get("model_name"), "version": self.labels.get("model_version"),
                "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
