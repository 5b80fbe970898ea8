"""Everything about the corpus before a model sees it: reading and importing it (``corpus``, ``demo``),
pulling it by version (``dvc_source``), deterministic splits (``splits``), the data version
(``versioning``), the Great Expectations policy (``validation``) and token windows (``chunking``).

Above ``config`` only: no model, no MLflow.
"""
