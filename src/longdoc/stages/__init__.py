"""The pipeline's stages as plain functions over folders, one module per stage of the pipeline.

The CLI, the DVC stages and the kfp components all call these, so a stage behaves the same whether
``dvc repro``, ``longdoc run`` (kfp local) or a Kubeflow cluster runs it. Each stage reads its inputs
from folders and writes its outputs into one folder. A stage composes the packages below it (data,
models, training, evaluation, registry); none of those calls back up.
"""

from longdoc.stages.data import CORPUS_FILE, chunk, current_data, data_version, read_validated, validate
from longdoc.stages.evaluation import compare, evaluate
from longdoc.stages.monitoring import link_retrain, monitor, retrain
from longdoc.stages.registry import _lineage, baseline, champion_without_bento, check_texts, gate, package, register
from longdoc.stages.training import on_work_volume, train, train_encoder, work_folder

__all__ = ["CORPUS_FILE", "_lineage", "baseline", "champion_without_bento", "check_texts", "chunk", "compare",
           "current_data", "data_version", "evaluate", "gate", "on_work_volume", "package", "read_validated",
           "link_retrain", "monitor", "register", "retrain", "train", "train_encoder", "validate", "work_folder"]
