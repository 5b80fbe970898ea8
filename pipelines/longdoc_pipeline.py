"""validate -> chunk -> cross-fit (per fold and family) -> train encoder (stage 1) -> baseline + per variant
(train -> evaluate -> register) -> gate -> compare -> package.

Cross-fitting (evaluate.folds, decided when the corpus is validated): one task per fold and candidate
family (a ParallelFor, so a cluster trains the folds side by side), then one task that audits them
for leaks and scores every candidate over its out-of-fold predictions; the evaluate and baseline
tasks attach those scores to the refit models. A run that holds out a test split instead has one
no-op fold task (kfp's local runner cannot loop over an empty list).

Two-stage training: the encoder is fine-tuned once (the GPU task) and every variant starts from it,
most of them training only a head on its cached chunk vectors; with train.two_stage off the encoder
task records that and each variant fine-tunes from the pretrained encoder, in the same DAG.

The package step runs when the gate promoted a new champion, or when the champion has no Bento (its
packaging failed in an earlier run): the gate's output says which (dsl.If).
The gate is one task after every candidate is registered: one writer of the champion alias per run,
so parallel variants on a cluster cannot race each other for it.

One definition for both targets: compiled for a cluster (``cluster`` given), the tasks that talk to
MLflow get the tracking URI and credentials from a Kubernetes Secret, and the tasks that train or
read the embedding cache mount the PVC (``use_mlflow_secret``, ``use_data_secret``, ``mount_volume``);
locally none is applied (kfp's local runner would ignore them anyway).
"""

from kfp import dsl, kubernetes

from components.factory import build_components
from longdoc.config.params import ClusterParams, GpuParams


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


def _secret_env(task: dsl.PipelineTask, cluster: ClusterParams | None, keys: list[str]) -> dsl.PipelineTask:
    """Keys of ``cluster.secret`` as environment variables of the same name.

    Only configured keys are mapped, each required: kfp's ``optional`` flag covers a whole
    ``use_secret_as_env`` call and older Kubeflow backends ignore it, refusing the pod when a key is
    missing; a key that is not listed is simply not mapped.
    """
    if cluster is None or not keys:
        return task
    return kubernetes.use_secret_as_env(task, secret_name=cluster.secret, secret_key_to_env={k: k for k in keys})


def use_mlflow_secret(task: dsl.PipelineTask, cluster: ClusterParams | None) -> dsl.PipelineTask:
    """MLflow's tracking URI (and credentials) from the Secret, for a task that talks to MLflow."""
    return _secret_env(task, cluster, cluster.secret_keys if cluster is not None else [])


def use_data_secret(task: dsl.PipelineTask, cluster: ClusterParams | None) -> dsl.PipelineTask:
    """Credentials of the DVC remote (``cluster.data_secret_keys``) for the task that pulls the corpus."""
    return _secret_env(task, cluster, cluster.data_secret_keys if cluster is not None else [])


def mount_volume(task: dsl.PipelineTask, cluster: ClusterParams | None) -> dsl.PipelineTask:
    """The PVC at ``cluster.mount_path``: the embedding cache and training checkpoints outlive the pod."""
    if cluster is None:
        return task
    return kubernetes.mount_pvc(task, pvc_name=cluster.pvc, mount_path=cluster.mount_path)


def on_training_node(task: dsl.PipelineTask, gpu: GpuParams, cluster: ClusterParams | None) -> dsl.PipelineTask:
    """A training task: the GPU, the volume for checkpoints and cache, and retries that resume from them."""
    if cluster is not None and cluster.train_retries:
        task.set_retry(num_retries=cluster.train_retries)
    return mount_volume(request_gpu(task, gpu), cluster)


def make_pipeline(image: str, gpu: GpuParams, name: str = "longdoc", parallelism: int = 0,
                  cluster: ClusterParams | None = None):
    """Build the pipeline function for a container image (the project's, from params.yaml).

    ``parallelism`` bounds how many variants train at once (0: no bound); the local runner on a
    laptop wants 1, since parallel CPU trainings only fight over the same cores. ``cluster``: the
    Secret, PVC and retries of a Kubeflow cluster (None: compiled for this machine).
    """
    c = build_components(image)

    def trains(task: dsl.PipelineTask) -> dsl.PipelineTask:
        return on_training_node(task, gpu, cluster)

    @dsl.pipeline(name=name, description="Long-document classifiers: validate, chunk, train every variant, "
                                         "evaluate, register in MLflow through the promotion gate, compare "
                                         "against a TF-IDF baseline, package a new champion as a Bento.")
    def longdoc_pipeline(corpus_path: str, params: str, variants: list, git_commit: str = "unknown") -> str:
        validated = use_data_secret(c.validate(corpus_path=corpus_path, params=params), cluster)
        validated.set_display_name("validate corpus (GX)")
        corpus = validated.outputs["corpus"]
        chunked = c.chunk(params=params, corpus=corpus).set_display_name("chunk")
        planned = c.crossfit_plan(corpus=corpus).set_display_name("plan folds")
        with dsl.ParallelFor(items=planned.output, name="folds", parallelism=parallelism) as item:
            fold = trains(c.crossfit_fold(params=params, item=item, corpus=corpus, chunks=chunked.outputs["chunks"]))
            fold.set_display_name("cross-fit: one fold, one family")
        collected = c.crossfit_collect(params=params, corpus=corpus, folds=dsl.Collected(fold.outputs["fold"]))
        collected.set_display_name("out-of-fold scores (leak audit)")
        oof = collected.outputs["oof"]
        base = c.baseline(params=params, git_commit=git_commit, pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                          corpus=corpus, oof=oof)
        use_mlflow_secret(base, cluster).set_display_name("TF-IDF baseline (register)").set_caching_options(False)
        encoder = trains(c.train_encoder(params=params, chunks=chunked.outputs["chunks"]))
        encoder.set_display_name("train encoder (stage 1)")
        with dsl.ParallelFor(items=variants, name="variants", parallelism=parallelism) as variant:
            trained = trains(c.train(params=params, variant=variant, chunks=chunked.outputs["chunks"],
                                     encoder=encoder.outputs["encoder"]))
            evaluated = mount_volume(c.evaluate(params=params, corpus=corpus, model=trained.outputs["model"], oof=oof),
                                     cluster)
            registered = c.register(params=params, git_commit=git_commit,
                                    pipeline_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER, corpus=corpus,
                                    model=trained.outputs["model"], evaluation=evaluated.outputs["evaluation"])
            use_mlflow_secret(registered, cluster).set_display_name("register candidate").set_caching_options(False)
        task_model = base.outputs["model_name"]
        gated = c.gate(params=params, model_name=task_model, versions=dsl.Collected(registered.outputs["version"]),
                       baseline_version=base.outputs["version"], corpus=corpus)
        use_mlflow_secret(gated, cluster).set_display_name("gate: one decision per run").set_caching_options(False)
        compared = c.compare(params=params, model_name=task_model, run_ids=dsl.Collected(registered.outputs["run_id"]),
                             baseline_run_id=base.outputs["run_id"]).after(gated)
        use_mlflow_secret(compared, cluster).set_display_name("compare variants").set_caching_options(False)
        with dsl.If(gated.outputs["Output"] == "package", name="new-champion"):
            packaged = c.package(params=params, model_name=task_model, corpus=corpus).after(compared)
            use_mlflow_secret(packaged, cluster).set_display_name("package champion (Bento)")
            packaged.set_caching_options(False)
        return gated.outputs["Output"]

    return longdoc_pipeline
