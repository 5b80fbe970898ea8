"""Fitting a variant: the loop with its budgets, checkpoints and two-stage training (``loop``) and
several processes under torchrun (``distributed``).

Above ``models`` and ``evaluation`` (validation during training uses the evaluation's metrics); the
registry and serving never import it.
"""
