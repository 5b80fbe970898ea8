"""The variant names a user can write in ``train.variants`` and the class each names.

Entries are import strings, so validating a config does not import torch; ``longdoc.models.variant_class``
imports the class. Adding a method is one new module in ``longdoc/models`` and one line here.
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
