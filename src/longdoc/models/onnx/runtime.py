"""An ONNX Runtime session in the chunk encoder's place: the same call, the same pooled vectors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from longdoc.errors import LongdocError
from longdoc.models.onnx.export import INPUTS, OUTPUT

ENCODER_FILE = "encoder.onnx"  # its name in the Bento's ONNX model folder


def open_session(path: Path, threads: int | None = None):
    """A CPU session with every graph optimisation; a file that is not a loadable ONNX model is a LongdocError
    naming it (the packaging check falls back to torch on it)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.intra_op_num_threads = threads or os.cpu_count() or 1
    options.log_severity_level = 3  # errors only: the optimiser's notes are not the user's business
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types (InvalidProtobuf, Fail, ...)
        raise LongdocError(f"ONNX Runtime cannot load {path}: {str(err).strip().splitlines()[0][:300]}") from None
    names = [i.name for i in session.get_inputs()]
    if names != list(INPUTS) or [o.name for o in session.get_outputs()] != [OUTPUT]:
        raise LongdocError(f"{path} is not a longdoc chunk encoder: inputs {names}, expected {list(INPUTS)}")
    return session


class OnnxEncoder(nn.Module):
    """Takes the place of :class:`~longdoc.models.encoder.ChunkEncoder` in a loaded classifier.

    No vector cache (``store``) and no gradients: it only serves.
    """

    def __init__(self, path: Path, threads: int | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.session = open_session(self.path, threads)
        self.store = None
        self.tokens_forward = 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **extra) -> torch.Tensor:
        if extra:
            raise LongdocError(f"the ONNX encoder takes no {sorted(extra)}: this variant must serve in torch")
        self.tokens_forward += int(attention_mask.sum())
        feed = {"input_ids": input_ids.cpu().numpy().astype(np.int64),
                "attention_mask": attention_mask.cpu().numpy().astype(np.int64)}
        return torch.from_numpy(self.session.run([OUTPUT], feed)[0])
