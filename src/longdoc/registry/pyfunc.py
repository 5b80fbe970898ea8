"""The MLflow model: raw text in, label and class probabilities out.

The model folder written by training travels as the pyfunc's artifact, and prediction is delegated
to :class:`longdoc.models.inference.Predictor`, so chunking and aggregation are inside the logged model.
"""

from __future__ import annotations

import mlflow.pyfunc
import pandas as pd

from longdoc.errors import LongdocError

TEXT_COLUMN = "text"


def _texts(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        if TEXT_COLUMN not in model_input.columns:
            raise LongdocError(f"input needs a {TEXT_COLUMN!r} column")
        return model_input[TEXT_COLUMN].astype(str).tolist()
    if isinstance(model_input, str):
        return [model_input]
    return [str(t) for t in model_input]


class LongdocModel(mlflow.pyfunc.PythonModel):
    """Any longdoc model (a transformer variant or the TF-IDF baseline) with its fitted temperature."""

    def load_context(self, context) -> None:
        import json
        from pathlib import Path

        from longdoc.models.inference import load_predictor

        self.predictor = load_predictor(context.artifacts["model"])
        calibration = context.artifacts.get("calibration")
        if calibration and Path(calibration).is_file():
            self.predictor.temperature = float(json.loads(Path(calibration).read_text())["temperature"])

    def predict(self, context, model_input, params=None) -> pd.DataFrame:
        preds = self.predictor.predict(_texts(model_input))
        rows = [{"label": p.label, "n_chunks": p.n_chunks,
                 **{f"prob_{k}": v for k, v in p.probabilities.items()}} for p in preds]
        return pd.DataFrame(rows, columns=["label", "n_chunks", *(f"prob_{k}" for k in self.predictor.labels)])
