"""The hyperparameter sweep on a cluster: validate -> open (MLflow parent run, sampled configurations) and
prepare (base chunks + stage-1 encoder on the volume) -> one GPU task per configuration (dsl.ParallelFor)
-> select (the best trial's params file).

The logic is longdoc.tuning.sweep's; this file only wires tasks, with the same GPU, Secret, volume and
retry settings as the main pipeline (pipelines/longdoc_pipeline.py), so the trials' nested MLflow runs go
to the same experiment and their caches to the same volume.
"""

from kfp import dsl

from components.factory import build_components
from longdoc.config.params import ClusterParams, GpuParams
from pipelines.longdoc_pipeline import on_training_node, use_data_secret, use_mlflow_secret


def make_tune_pipeline(image: str, gpu: GpuParams, name: str = "longdoc", parallelism: int = 0,
                       cluster: ClusterParams | None = None):
    """The sweep's pipeline function; ``parallelism`` bounds the trials running at once (0: all)."""
    c = build_components(image)

    def on_gpu(task: dsl.PipelineTask) -> dsl.PipelineTask:
        return on_training_node(task, gpu, cluster)

    @dsl.pipeline(name=f"{name}-tune", description="Hyperparameter sweep: sampled configurations of params.yaml "
                                                   "trained in parallel, each a nested MLflow run; the best "
                                                   "trial's params file as output.")
    def longdoc_tune(corpus_path: str, params: str, space: str, n_trials: int, study: str) -> str:
        validated = use_data_secret(c.validate(corpus_path=corpus_path, params=params), cluster)
        validated.set_display_name("validate corpus (GX)")
        corpus = validated.outputs["corpus"]
        opened = use_mlflow_secret(c.tune_open(params=params, space=space, n_trials=n_trials, study=study), cluster)
        opened.set_display_name("open study: parent run, sampled configurations").set_caching_options(False)
        prepared = on_gpu(c.tune_prepare(params=params, study=study, corpus=corpus))
        prepared.set_display_name("prepare: chunks and stage-1 encoder, shared")
        with dsl.ParallelFor(items=opened.outputs["trials"], name="trials", parallelism=parallelism) as config:
            ran = on_gpu(c.tune_trial(params=params, study=study, trial=config,
                                      parent_run_id=opened.outputs["parent_run_id"], corpus=corpus))
            use_mlflow_secret(ran, cluster).after(prepared).set_display_name("trial").set_caching_options(False)
        selected = c.tune_select(params=params, space=space, study=study,
                                 parent_run_id=opened.outputs["parent_run_id"], records=dsl.Collected(ran.output))
        use_mlflow_secret(selected, cluster).set_display_name("select best trial").set_caching_options(False)
        return selected.outputs["Output"]

    return longdoc_tune
