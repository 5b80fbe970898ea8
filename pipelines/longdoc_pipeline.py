"""validate -> chunk -> (train -> evaluate -> register) per variant -> package, as a kfp v2 pipeline."""

from typing import NamedTuple

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


def make_pipeline(image: str, gpu: GpuParams, name: str = "longdoc"):
    """Build the pipeline function for a container image (the project's, from params.yaml)."""
    c = build_components(image)

    @dsl.pipeline(name=name, description="Long-document classifiers: validate, chunk, train every variant, "
                                         "evaluate, register in MLflow, package the champion as a Bento.")
    def longdoc_pipeline(corpus_path: str, params: dict, variants: list, data_version: str = "untracked",
                         git_commit: str = "unknown") -> NamedTuple(
            "Outputs", [("model_version", str), ("bento_tag", str)]):
        validated = c.validate(corpus_path=corpus_path, params=params).set_display_name("validate corpus (GX)")
        chunked = c.chunk(params=params, corpus=validated.outputs["corpus"]).set_display_name("chunk")
        with dsl.ParallelFor(items=variants, name="variants") as variant:
            trained = request_gpu(c.train(params=params, variant=variant, chunks=chunked.outputs["chunks"]), gpu)
            evaluated = c.evaluate(params=params, corpus=validated.outputs["corpus"],
                                   model=trained.outputs["model"])
            registered = c.register(params=params, data_version=data_version, git_commit=git_commit,
                                    pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                    corpus=validated.outputs["corpus"], model=trained.outputs["model"],
                                    evaluation=evaluated.outputs["evaluation"])
            registered.set_caching_options(False)
        packaged = c.package(params=params, registered_versions=dsl.Collected(registered.outputs["version"]))
        packaged.set_caching_options(False)
        outputs = NamedTuple("Outputs", [("model_version", str), ("bento_tag", str)])
        return outputs(packaged.outputs["model_version"], packaged.outputs["bento_tag"])

    return longdoc_pipeline
