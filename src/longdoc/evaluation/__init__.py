"""Judging a saved model: the test split and its robustness views (``evaluate``, ``views``), metrics
with bootstrap intervals (``metrics``), pictures (``plots``) and the run's comparison table
(``comparison``).

Above ``models``; it reads MLflow runs through a client it is given and logs nothing itself.
"""
