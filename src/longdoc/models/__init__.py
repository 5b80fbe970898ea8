"""Model variants behind one interface (a document's token ids in, class logits out) and what turns a
saved model back into answers: the predictor (``inference``), the TF-IDF baseline (``baseline``), the
chunk-vector cache (``embedding_cache``), temperature scaling (``calibration``), autocast
(``precision``) and the pre-flight check of params against the models (``preflight``).

``VARIANTS`` (kept in :mod:`longdoc.config.variants`, so the config layer checks names without
importing this package) maps a variant name to the class implementing it; ``variant_class`` imports it.
"""

from longdoc.config.variants import VARIANTS

__all__ = ["VARIANTS", "variant_class"]


def variant_class(name: str):
    """Import the class for a variant name; unknown names are a configuration error."""
    from importlib import import_module

    from longdoc.errors import LongdocError

    if name not in VARIANTS:
        raise LongdocError(f"unknown variant {name!r}; known variants: {', '.join(sorted(VARIANTS))}")
    module, _, attr = VARIANTS[name].partition(":")
    return getattr(import_module(module), attr)
