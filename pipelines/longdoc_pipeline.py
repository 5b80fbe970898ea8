"""validate -> chunk -> per variant (train -> evaluate -> register + gate) -> compare -> [if promoted] package."""

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
    def longdoc_pipeline(corpus_path: str, params: dict, variants: list, data_version: str = "untracked",
                         git_commit: str = "unknown") -> str:
        validated = c.validate(corpus_path=corpus_path, params=params).set_display_name("validate corpus (GX)")
        corpus = validated.outputs["corpus"]
        chunked = c.chunk(params=params, corpus=corpus).set_display_name("chunk")
        base = c.baseline(params=params, data_version=data_version, git_commit=git_commit,
                          pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, corpus=corpus)
        base.set_display_name("TF-IDF baseline").set_caching_options(False)
        with dsl.ParallelFor(items=variants, name="variants", parallelism=parallelism) as variant:
            trained = request_gpu(c.train(params=params, variant=variant, chunks=chunked.outputs["chunks"]), gpu)
            evaluated = c.evaluate(params=params, corpus=corpus, model=trained.outputs["model"])
            registered = c.register(params=params, data_version=data_version, git_commit=git_commit,
                                    pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, corpus=corpus,
                                    model=trained.outputs["model"], evaluation=evaluated.outputs["evaluation"])
            registered.set_display_name("register + gate").set_caching_options(False)
        compared = c.compare(params=params, run_ids=dsl.Collected(registered.outputs["run_id"]),
                             baseline_run_id=base.outputs["Output"],
                             promoted=dsl.Collected(registered.outputs["promoted"]))
        compared.set_display_name("compare variants").set_caching_options(False)
        with dsl.If(compared.outputs["Output"] == "package", name="new-champion"):
            packaged = c.package(params=params)
            packaged.set_display_name("package champion (Bento)").set_caching_options(False)
        return compared.outputs["Output"]

    return longdoc_pipeline
