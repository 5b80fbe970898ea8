"""validate -> chunk -> train -> evaluate -> register -> package, as a kfp v2 pipeline."""


from typing import NamedTuple

from kfp import dsl

from components.factory import build_components


def make_pipeline(image: str, name: str = "longdoc"):
    """Build the pipeline function for a container image (the project's, from params.yaml)."""
    c = build_components(image)

    @dsl.pipeline(name=name, description="Long-document classifier: validate, chunk, train, evaluate, "
                                         "register in MLflow, package the champion as a Bento.")
    def longdoc_pipeline(corpus_path: str, params: dict, variant: str = "head", data_version: str = "untracked",
                         git_commit: str = "unknown") -> NamedTuple(
            "Outputs", [("model_version", str), ("bento_tag", str)]):
        validated = c.validate(corpus_path=corpus_path, params=params).set_display_name("validate corpus (GX)")
        chunked = c.chunk(params=params, corpus=validated.outputs["corpus"]).set_display_name("chunk")
        trained = c.train(params=params, variant=variant, chunks=chunked.outputs["chunks"])
        trained.set_display_name("train").set_accelerator_type("nvidia.com/gpu").set_accelerator_limit(1)
        evaluated = c.evaluate(params=params, corpus=validated.outputs["corpus"], model=trained.outputs["model"])
        registered = c.register(params=params, data_version=data_version, git_commit=git_commit,
                                pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                                corpus=validated.outputs["corpus"], model=trained.outputs["model"],
                                evaluation=evaluated.outputs["evaluation"])
        packaged = c.package(params=params, registered_version=registered.outputs["version"])
        for task in (validated, chunked, trained, evaluated, registered, packaged):
            task.set_caching_options(False)
        outputs = NamedTuple("Outputs", [("model_version", str), ("bento_tag", str)])
        return outputs(registered.outputs["version"], packaged.outputs["bento_tag"])

    return longdoc_pipeline
