"""From a fine-tuned chunk encoder to ONNX files: exported, fused, and quantised to int8 two ways.

Why the TorchScript exporter with eager attention: ONNX Runtime's transformer optimiser recognises BERT's
attention, GELU and layer-norm subgraphs by their shape in that graph (6 ``Attention``, 6 ``BiasGelu``,
12 ``SkipLayerNormalization`` and one ``EmbedLayerNormalization`` for all-MiniLM-L6-v2); the SDPA graph that
transformers builds by default, or the dynamo exporter's, leave attention unfused.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections import Counter
from collections.abc import Iterable
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from torch import nn

from longdoc.errors import LongdocError
from longdoc.models.encoder import ChunkEncoder

INPUTS = ("input_ids", "attention_mask")
OUTPUT = "vectors"
OPSET = 17
# encoders whose graph ONNX Runtime's "bert" optimiser fuses; the Longformer's banded attention and the
# Reformer's hashing attention have no fused kernel there and stay in torch
BERT_LIKE = ("bert", "roberta", "xlm-roberta", "distilbert", "electra", "mpnet")


def why_not_exportable(encoder: nn.Module) -> str | None:
    """None when the encoder exports; otherwise what the build output says instead."""
    if not isinstance(encoder, ChunkEncoder):
        return f"the encoder is a {type(encoder).__name__}, not a chunk encoder"
    model_type = encoder.backbone.config.model_type
    if model_type not in BERT_LIKE:
        return f"a {model_type} encoder has no fused ONNX Runtime graph (only {', '.join(BERT_LIKE)} export)"
    return None


class _Vectors(nn.Module):
    """What the ONNX graph computes: token ids and mask in, one pooled vector per segment out."""

    def __init__(self, encoder: ChunkEncoder) -> None:
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.encoder.vectors(input_ids, attention_mask)


def export_encoder(encoder: ChunkEncoder, path: Path) -> Path:
    """The encoder as fp32 ONNX with a dynamic number of segments and tokens."""
    reason = why_not_exportable(encoder)
    if reason:
        raise LongdocError(f"cannot export to ONNX: {reason}")
    eager = copy.deepcopy(encoder).cpu().eval()
    eager.backbone.set_attn_implementation("eager")
    ids = torch.full((2, 16), 1000, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 8:] = 0  # padded rows in the example, so the mask is not folded into a constant
    dims = {0: "segments", 1: "tokens"}
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice, once per export
        torch.onnx.export(_Vectors(eager), (ids, mask), str(path), input_names=list(INPUTS), output_names=[OUTPUT],
                          dynamic_axes={"input_ids": dims, "attention_mask": dims, OUTPUT: {0: "segments"}},
                          opset_version=OPSET, dynamo=False)
    return path


def optimize(src: Path, dst: Path, encoder: ChunkEncoder) -> dict[str, int]:
    """Fuse attention, GELU and layer norms (ONNX Runtime's transformer optimiser); the fused operators counted."""
    from onnxruntime.transformers import optimizer

    config = encoder.backbone.config
    model = optimizer.optimize_model(str(src), model_type="bert", num_heads=int(config.num_attention_heads),
                                     hidden_size=int(config.hidden_size))
    model.save_model_to_file(str(dst))
    return {op: n for op, n in model.get_fused_operator_statistics().items() if n}


@contextmanager
def _quiet():
    """ONNX Runtime's quantiser warns on the root logger for every tensor of a fused operator it skips; the
    check against torch is what says whether that mattered."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def quantize_dynamic(src: Path, dst: Path) -> Path:
    """int8 weights, activations quantised per call from their own range (no calibration)."""
    import onnx
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    # the fused operators are in Microsoft's domain, where shape inference finds no type: say it is float
    with _quiet():
        ort_quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, per_channel=True,
                             extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    return dst


class _Calibration:
    """Batches of validation chunks, as ONNX Runtime's calibrator reads them."""

    def __init__(self, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> None:
        self._batches = iter(batches)

    def get_next(self) -> dict | None:
        batch = next(self._batches, None)
        return None if batch is None else dict(zip(INPUTS, batch, strict=True))


def quantize_static(src: Path, dst: Path, batches: Iterable[tuple[np.ndarray, np.ndarray]]) -> Path:
    """int8 weights and activations with ranges fixed from the calibration batches (validation chunks).

    ``src`` is the exported, unfused graph: there shape inference types every MatMul, which the fused
    operators hide. Fixed ranges also make a document's answer independent of the batch it is served in,
    where dynamic quantisation takes each call's range from every document in it.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = dst.with_name(f"{dst.stem}.prepared.onnx")
    with _quiet():
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        ort_quantize_static(str(prepared), str(dst), _Calibration(batches), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            op_types_to_quantize=["MatMul"], calibrate_method=CalibrationMethod.MinMax)
    prepared.unlink()
    return dst


def operator_counts(path: Path) -> dict[str, int]:
    import onnx

    return dict(Counter(node.op_type for node in onnx.load(str(path), load_external_data=False).graph.node))
