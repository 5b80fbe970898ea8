"""longdoc: long-document classification, from a versioned corpus to a served champion model.

Kept import-light on purpose: the CLI's ``--help`` must answer without importing torch, mlflow or
great_expectations, so submodules import their heavy dependencies themselves.
"""

__version__ = "0.1.0"
