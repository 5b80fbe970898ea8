"""Hyperparameter search over params.yaml (``longdoc tune`` and the kfp sweep).

- :mod:`longdoc.tuning.space`: the search-space file, validated like params.
- :mod:`longdoc.tuning.trial`: one trial (no Optuna in it), and the workspace trials share.
- :mod:`longdoc.tuning.study`: the Optuna study, its storage and the MLflow runs.
- :mod:`longdoc.tuning.sweep`: the same search as parallel kfp tasks on a cluster.
"""
