"""The reference every transformer must beat: TF-IDF + logistic regression (scikit-learn).

It reads the whole document as a bag of words, so it is blind to paragraph order: its inverted and
shuffled gaps are zero by construction, which makes it the floor for robustness and the bar for
accuracy.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

BASELINE_NAME = "tfidf_logreg"


class TfidfBaseline:
    def __init__(self, seed: int = 13) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(TfidfVectorizer(sublinear_tf=True, min_df=2, ngram_range=(1, 2)),
                                      LogisticRegression(C=10.0, max_iter=2000, random_state=seed))
        self.labels: list[str] = []

    def fit(self, texts: list[str], labels: list[str]) -> TfidfBaseline:
        self.pipeline.fit(texts, labels)
        self.labels = [str(c) for c in self.pipeline.classes_]
        return self

    def predict_proba(self, texts: list[str], batch_size: int = 8) -> tuple[np.ndarray, list[int]]:
        return self.pipeline.predict_proba(texts), [0] * len(texts)


def train_and_evaluate(corpus: pd.DataFrame, params, out_dir: Path) -> dict:
    from longdoc.evaluation import evaluate

    train = corpus[corpus["split"] == "train"]
    model = TfidfBaseline(params.data.seed).fit(train["text"].tolist(), train["label"].tolist())
    return evaluate(model, BASELINE_NAME, corpus, params, out_dir)
