"""Model variants behind one interface: a document's token ids in, class logits out.

``VARIANTS`` maps a variant name (as written in params.yaml) to the class implementing it. Entries
are import strings so that validating a config does not import torch. Adding a method is one new
module and one line here.
"""

VARIANTS: dict[str, str] = {
    # truncation: one window of the document
    "head": "longdoc.models.truncation:HeadTruncation",
    "tail": "longdoc.models.truncation:TailTruncation",
    "head_tail": "longdoc.models.truncation:HeadTailTruncation",
    # chunk aggregation over chunk predictions (one chunk classifier, untrained combiners + stacker)
    "chunk_mean": "longdoc.models.chunk_votes:ChunkPrediction",
    "chunk_max": "longdoc.models.chunk_votes:ChunkMax",
    "chunk_vote": "longdoc.models.chunk_votes:ChunkVote",
    "chunk_weighted_vote": "longdoc.models.chunk_votes:ChunkWeightedVote",
    "chunk_stacked": "longdoc.models.chunk_votes:ChunkStacked",
    # learned aggregators over chunk vectors
    "mean_pool": "longdoc.models.pooling:MeanPool",
    "max_pool": "longdoc.models.pooling:MaxPool",
    "cat": "longdoc.models.cat:Cat",
    "rnn": "longdoc.models.rnn:RNN",
    "attention": "longdoc.models.attention:Attention",
    "hierarchical": "longdoc.models.hierarchical:Hierarchical",
    # long-context encoders: the whole document in one sequence
    "longformer": "longdoc.models.longformer:Longformer",
    "reformer": "longdoc.models.reformer:Reformer",
}


def variant_class(name: str):
    """Import the class for a variant name; unknown names are a configuration error."""
    from importlib import import_module

    from longdoc.errors import LongdocError

    if name not in VARIANTS:
        raise LongdocError(f"unknown variant {name!r}; known variants: {', '.join(sorted(VARIANTS))}")
    module, _, attr = VARIANTS[name].partition(":")
    return getattr(import_module(module), attr)
