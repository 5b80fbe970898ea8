"""The reference every transformer must beat: TF-IDF + logistic regression (scikit-learn).

It reads the whole document as a bag of words, so it is blind to paragraph order: its inverted and
shuffled gaps are zero by construction, which makes it the floor for robustness and the bar for
accuracy. It is a candidate like any variant: registered as an MLflow model that takes raw text,
gated, and packaged and served when it wins. :class:`BaselinePredictor` answers the same calls as
:class:`longdoc.models.inference.Predictor`, so evaluation, the MLflow model and the service need no
special case.
"""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from longdoc.models.calibration import with_temperature
from longdoc.models.prediction import Observation, Prediction, predictions_of

BASELINE_NAME = "tfidf_logreg"
PIPELINE_FILE = "baseline.joblib"
CARD_FILE = "baseline.json"


@dataclass(frozen=True)
class BaselineCard:
    variant: str
    labels: list[str]
    chunking: None = None  # reads the whole text: no windows


class BaselinePredictor:
    def __init__(self, pipeline, labels: list[str]) -> None:
        self.pipeline = pipeline
        self.card = BaselineCard(BASELINE_NAME, labels)
        self.temperature = 1.0

    @classmethod
    def fit(cls, texts: list[str], labels: list[str], seed: int = 13, max_features: int | None = None
            ) -> BaselinePredictor:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        min_df = 2 if len(texts) >= 50 else 1  # a tiny corpus has few words seen twice
        pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=min_df, ngram_range=(1, 2),
                                                 max_features=max_features),
                                 LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
        pipeline.fit(texts, labels)
        return cls(pipeline, [str(c) for c in pipeline.classes_])

    @classmethod
    def load(cls, model_dir: str | Path) -> BaselinePredictor:
        import joblib

        card = json.loads((Path(model_dir) / CARD_FILE).read_text())
        return cls(joblib.load(Path(model_dir) / PIPELINE_FILE), card["labels"])

    def save(self, model_dir: Path) -> None:
        import joblib

        model_dir.mkdir(parents=True, exist_ok=True)
        joblib.dump(self.pipeline, model_dir / PIPELINE_FILE)
        (model_dir / CARD_FILE).write_text(json.dumps({"variant": BASELINE_NAME, "labels": self.labels}))

    @property
    def labels(self) -> list[str]:
        return self.card.labels

    @contextmanager
    def vector_cache(self, root: Path | None):
        """No chunk vectors: nothing to cache."""
        yield

    def quantize(self) -> BaselinePredictor:
        return self  # nothing to quantize: a sparse linear model

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[int]]:
        if not texts:  # scikit-learn refuses an empty input; an empty batch has an empty answer
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        probs = with_temperature(self.pipeline.predict_proba(texts), self.temperature)
        return probs.astype(np.float32), [1] * len(texts)

    def observe(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[Observation]]:
        """Probabilities, and what the model saw of each text: its words (the vectorizer's tokens), one segment (the
        whole text), and its TF-IDF row as the document's vector, all from the one transform that classified it."""
        if not texts:
            return np.zeros((0, len(self.labels)), dtype=np.float32), []
        vectorizer, classifier = self.pipeline[0], self.pipeline[-1]
        rows = vectorizer.transform(texts)
        probs = with_temperature(classifier.predict_proba(rows), self.temperature).astype(np.float32)
        words = vectorizer.build_tokenizer()  # its token pattern; lower-casing first would not change the count
        return probs, [Observation(len(t), len(words(t)), 1, 0, rows[i]) for i, t in enumerate(texts)]

    def predict(self, texts: list[str], batch_size: int = 32) -> list[Prediction]:
        return predictions_of(*self.predict_proba(texts), self.labels)

    def explain(self, text: str) -> dict:
        """One segment, the whole text: a bag of words has no chunk weights to show."""
        probs, _ = self.predict_proba([text])
        named = dict(zip(self.labels, map(float, probs[0]), strict=True))
        return {"label": self.labels[int(probs[0].argmax())], "variant": BASELINE_NAME, "weights_from": "none",
                "note": "TF-IDF + logistic regression reads the whole document as a bag of words: no chunk weights",
                "probabilities": named,
                "chunks": [{"index": 0, "char_spans": [[0, len(text)]], "weight": 1.0, "probabilities": named}]}


def is_baseline_dir(model_dir: str | Path) -> bool:
    return (Path(model_dir) / PIPELINE_FILE).is_file()
