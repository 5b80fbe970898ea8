"""Model variants behind one interface: a document's token ids in, class logits out.

``VARIANTS`` maps a variant name (as written in params.yaml) to the class implementing it. Entries
are import strings so that validating a config does not import torch. Adding a method is one new
module and one line here.
"""

VARIANTS: dict[str, str] = {
    "head": "longdoc.models.truncation:HeadTruncation",
    "tail": "longdoc.models.truncation:TailTruncation",
    "head_tail": "longdoc.models.truncation:HeadTailTruncation",
}


def variant_class(name: str):
    """Import the class for a variant name; unknown names are a configuration error."""
    from importlib import import_module

    from longdoc.errors import LongdocError

    if name not in VARIANTS:
        raise LongdocError(f"unknown variant {name!r}; known variants: {', '.join(sorted(VARIANTS))}")
    module, _, attr = VARIANTS[name].partition(":")
    return getattr(import_module(module), attr)
