"""validate -> chunk -> train encoder (stage 1) -> baseline + per variant (train -> evaluate -> register) -> gate
-> compare -> package.

Two-stage training: the encoder is fine-tuned once (the GPU task) and every variant starts from it,
most of them training only a head on its cached chunk vectors; with train.two_stage off the encoder
task records that and each variant fine-tunes from the pretrained encoder, in the same DAG.

The package step runs only when the gate promoted a new champion (dsl.If).
The gate is one task after every candidate is registered: one writer of the champion alias per run,
so parallel variants on a cluster cannot race each other for it.
"""

from kfp import dsl, kubernetes

from components.factory import build_components
from longdoc.config import GpuParams


def request_gpu(task: dsl.PipelineTask, gpu: GpuParams) -> dsl.PipelineTask:
    """GPU, node selector and tolerations for a training task (the local runner ignores them)."""
    if gpu.count == 0:
        return task
    task.set_accelerator_type(gpu.accelerator).set_accelerator_limit(gpu.count)
    for key, value in gpu.node_selector.items():
        kubernetes.add_node_selector(task, label_key=key, label_value=value)
    for toleration in gpu.tolerations:
        kubernetes.add_toleration(task, **toleration.model_dump(exclude_none=True))
    return task


def make_pipeline(image: str, gpu: GpuParams, name: str = "longdoc", parallelism: int = 0):
    """Build the pipeline function for a container image (the project's, from params.yaml).

    ``parallelism`` bounds how many variants train at once (0: no bound); the local runner on a
    laptop wants 1, since parallel CPU trainings only fight over the same cores.
    """
    c = build_components(image)

    @dsl.pipeline(name=name, description="Long-document classifiers: validate, chunk, train every variant, "
                                         "evaluate, register in MLflow through the promotion gate, compare "
                                         "against a TF-IDF baseline, package a new champion as a Bento.")
    def longdoc_pipeline(corpus_path: str, params: str, variants: list, git_commit: str = "unknown") -> str:
        validated = c.validate(corpus_path=corpus_path, params=params).set_display_name("validate corpus (GX)")
        corpus = validated.outputs["corpus"]
        chunked = c.chunk(params=params, corpus=corpus).set_display_name("chunk")
        base = c.baseline(params=params, git_commit=git_commit, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                          corpus=corpus)
        base.set_display_name("TF-IDF baseline (register)").set_caching_options(False)
        encoder = request_gpu(c.train_encoder(params=params, chunks=chunked.outputs["chunks"]), gpu)
        encoder.set_display_name("train encoder (stage 1)")
        with dsl.ParallelFor(items=variants, name="variants", parallelism=parallelism) as variant:
            trained = request_gpu(c.train(params=params, variant=variant, chunks=chunked.outputs["chunks"],
                                          encoder=encoder.outputs["encoder"]), gpu)
            evaluated = c.evaluate(params=params, corpus=corpus, model=trained.outputs["model"])
            registered = c.register(params=params, git_commit=git_commit,
                                    pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, corpus=corpus,
                                    model=trained.outputs["model"], evaluation=evaluated.outputs["evaluation"])
            registered.set_display_name("register candidate").set_caching_options(False)
        task_model = base.outputs["model_name"]
        gated = c.gate(params=params, model_name=task_model, versions=dsl.Collected(registered.outputs["version"]),
                       baseline_version=base.outputs["version"], corpus=corpus)
        gated.set_display_name("gate: one decision per run").set_caching_options(False)
        compared = c.compare(params=params, model_name=task_model, run_ids=dsl.Collected(registered.outputs["run_id"]),
                             baseline_run_id=base.outputs["run_id"]).after(gated)
        compared.set_display_name("compare variants").set_caching_options(False)
        with dsl.If(gated.outputs["Output"] == "package", name="new-champion"):
            packaged = c.package(params=params, model_name=task_model).after(compared)
            packaged.set_display_name("package champion (Bento)").set_caching_options(False)
        return gated.outputs["Output"]

    return longdoc_pipeline
