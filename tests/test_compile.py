"""The compiled IR YAML: the six tasks, on the project's image, training asking for a GPU."""

import json

import pytest
import yaml

from tests.conftest import cli

COMPONENTS = {"validate", "chunk", "crossfit-plan", "crossfit-fold", "crossfit-collect", "train-encoder", "train",
              "evaluate", "register", "baseline", "gate", "compare", "package"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    done = cli("pipeline", "compile", "--out", str(out), "--set", "pipeline.image=registry.example/longdoc:test")
    assert done.returncode == 0, done.stderr
    return next(yaml.safe_load_all(out.read_text()))


def test_tasks_and_order(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"validate", "chunk", "crossfit-plan", "for-loop-1", "crossfit-collect", "train-encoder",
                          "baseline", "for-loop-2", "gate", "compare", "condition-3"}
    assert tasks["chunk"]["dependentTasks"] == ["validate"]
    # two-stage training: the encoder is trained once, before the fan-out over variants that start from it
    assert tasks["train-encoder"]["dependentTasks"] == ["chunk"]
    assert "train-encoder" in tasks["for-loop-2"]["dependentTasks"]
    # one gate after every candidate (each variant and the baseline) is registered: one writer of the alias
    assert set(tasks["gate"]["dependentTasks"]) == {"baseline", "for-loop-2", "validate"}
    assert set(tasks["compare"]["dependentTasks"]) == {"baseline", "for-loop-2", "gate"}
    loop = tasks["for-loop-2"]
    assert loop["taskInfo"]["name"] == "variants"  # dsl.ParallelFor over train.variants
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--variants"
    inner = compiled["components"]["comp-for-loop-2"]["dag"]["tasks"]
    assert set(inner) == {"train", "evaluate", "register"}
    assert set(inner["register"]["dependentTasks"]) == {"train", "evaluate"}
    encoder_input = inner["train"]["inputs"]["artifacts"]["encoder"]
    assert encoder_input["componentInputArtifact"] == "pipelinechannel--train-encoder-encoder"


def test_folds_are_a_parallel_for_whose_scores_every_candidate_waits_for(compiled):
    """Cross-fitting: one task per fold and family over the plan's items, side by side on a cluster; every
    candidate's evaluation (and the baseline's) reads the collected out-of-fold scores."""
    tasks = compiled["root"]["dag"]["tasks"]
    folds = tasks["for-loop-1"]
    assert folds["taskInfo"]["name"] == "folds"
    assert folds["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--crossfit-plan-Output"
    assert set(folds["dependentTasks"]) == {"chunk", "crossfit-plan", "validate"}
    assert list(compiled["components"]["comp-for-loop-1"]["dag"]["tasks"]) == ["crossfit-fold"]
    assert set(tasks["crossfit-collect"]["dependentTasks"]) == {"for-loop-1", "validate"}
    assert "crossfit-collect" in tasks["baseline"]["dependentTasks"]
    assert "crossfit-collect" in tasks["for-loop-2"]["dependentTasks"]
    oof = compiled["components"]["comp-for-loop-2"]["dag"]["tasks"]["evaluate"]["inputs"]["artifacts"]["oof"]
    assert oof["componentInputArtifact"] == "pipelinechannel--crossfit-collect-oof"


def test_packaging_runs_only_when_the_gate_promoted(compiled):
    condition = compiled["root"]["dag"]["tasks"]["condition-3"]
    # validate: packaging checks a faster runtime on the validated corpus's validation and test documents
    assert set(condition["dependentTasks"]) == {"baseline", "compare", "gate", "validate"}
    assert condition["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--gate-Output'] == 'package'"
    assert list(compiled["components"]["comp-condition-3"]["dag"]["tasks"]) == ["package"]


def test_every_task_runs_the_project_image_without_pip(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    assert {name.removeprefix("exec-") for name in executors} == COMPONENTS
    for spec in executors.values():
        container = spec["container"]
        assert container["image"] == "registry.example/longdoc:test"
        assert "pip install" not in " ".join(container["command"])


def test_training_requests_a_gpu(compiled):
    for name in ("exec-train-encoder", "exec-train"):
        train = compiled["deploymentSpec"]["executors"][name]["container"]
        assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert str(train["resources"]["accelerator"]["resourceCount"]) == "1"
    assert "resources" not in compiled["deploymentSpec"]["executors"]["exec-evaluate"]["container"]


def test_gpu_node_selector_and_toleration_are_configurable(tmp_path):
    out = tmp_path / "p.yaml"
    done = cli("pipeline", "compile", "--out", str(out), "--set", "pipeline.gpu.count=2",
               "--set", 'pipeline.gpu.node_selector={"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}',
               "--set", 'pipeline.gpu.tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", '
                        '"effect": "NoSchedule"}]')
    assert done.returncode == 0, done.stderr
    docs = list(yaml.safe_load_all(out.read_text()))
    train = docs[0]["deploymentSpec"]["executors"]["exec-train"]["container"]["resources"]["accelerator"]
    assert str(train["resourceCount"]) == "2"
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-train"]
    assert k8s["nodeSelector"]["labels"] == {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
    assert k8s["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


def test_params_file_is_the_default_argument(compiled):
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    params = json.loads(defaults["params"]["defaultValue"])  # JSON text: it keeps the nulls a kfp dict cannot
    assert params["train"]["variants"][0] == "head" and params["train"]["stage1"]["docs_per_label"] is None
    assert defaults["variants"]["defaultValue"] == params["train"]["variants"]
    assert defaults["corpus_path"]["defaultValue"].endswith("data/corpus.jsonl")


# --- compiled for a Kubeflow cluster: nothing of this machine, MLflow from a Secret, caches on a PVC ---

REFERENCE = "dvc://https://git.example/acme/longdoc.git?rev=v1.0#data/corpus.jsonl"
PASSWORD = "s3cr3t-pw"
LEAKY_URI = f"http://user:{PASSWORD}@mlflow.example:5000"
MLFLOW_TASKS = {"register", "baseline", "gate", "compare", "package"}
# training writes checkpoints and the cache (a fold's encoder too); evaluation reads it
VOLUME_TASKS = {"train-encoder", "train", "evaluate", "crossfit-fold"}


@pytest.fixture(scope="module")
def cluster_compile(tmp_path_factory):
    """Compiled with every local value we could leak: a tracking URI with a password (in params and in the
    environment), a SQLite-free but local cache dir, and this repository as the working directory."""
    tmp = tmp_path_factory.mktemp("cluster")
    out = tmp / "pipeline.yaml"
    done = cli("pipeline", "compile", "--target", "cluster", "--corpus", REFERENCE, "--out", str(out),
               "--set", f"registry.tracking_uri={LEAKY_URI}", "--set", f"train.cache_dir={tmp / 'cache'}",
               env={"MLFLOW_TRACKING_URI": LEAKY_URI})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    return text, list(yaml.safe_load_all(text)), tmp


def _local_roots(tmp) -> list[str]:
    from tests.conftest import ROOT

    return [str(ROOT), str(tmp), "/tmp", "/home", "/root", "/work"]


def test_cluster_yaml_holds_no_credential_sqlite_or_local_path(cluster_compile):
    import re

    text, _, tmp = cluster_compile
    assert PASSWORD not in text and "mlflow.example" not in text
    assert "sqlite" not in text
    for root in _local_roots(tmp):  # a path *starting* with the root: /mnt/longdoc/work is the pod's own
        assert not re.search(rf"(?<![\w.-]){re.escape(root)}(?=$|[/\"'\s])", text), root


def test_the_pods_read_the_corpus_by_version_and_mlflow_from_the_environment(cluster_compile):
    _, docs, _ = cluster_compile
    defaults = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert defaults["corpus_path"]["defaultValue"] == REFERENCE
    params = json.loads(defaults["params"]["defaultValue"])
    assert params["registry"]["tracking_uri"] == "env:MLFLOW_TRACKING_URI"
    assert params["data"]["corpus"] == REFERENCE
    assert params["train"]["cache_dir"] == "/mnt/longdoc/embedding_cache"
    assert params["pipeline"]["work_dir"] == "/mnt/longdoc/work"  # checkpoints on the PVC
    assert params["serving"]["service_dir"] == "/app/serving"  # the image's WORKDIR


def test_mlflow_tasks_take_the_tracking_uri_from_the_secret(cluster_compile):
    _, docs, _ = cluster_compile
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for task in MLFLOW_TASKS:
        [secret] = k8s[f"exec-{task}"]["secretAsEnv"]
        assert secret["secretName"] == "longdoc-mlflow", task
        assert secret["keyToEnv"] == [{"secretKey": "MLFLOW_TRACKING_URI", "envVar": "MLFLOW_TRACKING_URI"}], task
    for task in ("validate", "chunk", "train-encoder", "train", "evaluate"):  # they never talk to MLflow
        assert "secretAsEnv" not in k8s.get(f"exec-{task}", {}), task


def test_training_tasks_mount_the_volume_request_a_gpu_and_retry(cluster_compile):
    _, docs, _ = cluster_compile
    k8s = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    executors = docs[0]["deploymentSpec"]["executors"]
    for task in VOLUME_TASKS:
        [mount] = k8s[f"exec-{task}"]["pvcMount"]
        assert mount["mountPath"] == "/mnt/longdoc" and mount["constant"] == "longdoc-cache", task
    for task in ("exec-train-encoder", "exec-train", "exec-crossfit-fold"):
        accelerator = executors[task]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu" and str(accelerator["resourceCount"]) == "1"
    for task in ("validate", "chunk", "baseline", "register", "gate", "compare", "package"):
        assert "pvcMount" not in k8s.get(f"exec-{task}", {}), task
    assert docs[0]["root"]["dag"]["tasks"]["train-encoder"]["retryPolicy"]["maxRetryCount"] == 1
    inner = docs[0]["components"]["comp-for-loop-2"]["dag"]["tasks"]
    assert inner["train"]["retryPolicy"]["maxRetryCount"] == 1 and "retryPolicy" not in inner["evaluate"]


def test_only_configured_secret_keys_are_mapped(tmp_path):
    out = tmp_path / "p.yaml"
    done = cli("pipeline", "compile", "--target", "cluster", "--corpus", REFERENCE, "--out", str(out),
               "--set", "pipeline.cluster.secret=team-mlflow",
               "--set", "pipeline.cluster.secret_keys=[MLFLOW_TRACKING_URI, MLFLOW_TRACKING_PASSWORD]",
               "--set", "pipeline.cluster.data_secret_keys=[AWS_ACCESS_KEY_ID]")
    assert done.returncode == 0, done.stderr
    assert "sqlite" not in out.read_text()  # params.yaml's own tracking URI (a SQLite file) stays home too
    k8s = list(yaml.safe_load_all(out.read_text()))[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    [gate] = k8s["exec-gate"]["secretAsEnv"]
    assert gate["secretName"] == "team-mlflow"
    assert [m["envVar"] for m in gate["keyToEnv"]] == ["MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"]
    [pull] = k8s["exec-validate"]["secretAsEnv"]  # the DVC remote's credentials, for the task that pulls
    assert [m["envVar"] for m in pull["keyToEnv"]] == ["AWS_ACCESS_KEY_ID"]


def test_the_local_target_is_untouched_by_the_cluster_settings(compiled):
    platform_free = compiled["deploymentSpec"]["executors"]["exec-register"]
    assert "env:MLFLOW_TRACKING_URI" not in json.dumps(compiled)
    assert "retryPolicy" not in compiled["root"]["dag"]["tasks"]["train-encoder"]
    assert platform_free["container"]["image"] == "registry.example/longdoc:test"


def _refused(done, fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert fragment in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_cluster_compile_needs_a_dvc_corpus(tmp_path):
    out = tmp_path / "p.yaml"
    _refused(cli("pipeline", "compile", "--target", "cluster", "--out", str(out)), "pipeline.cluster.corpus is not set")
    _refused(cli("pipeline", "compile", "--target", "cluster", "--corpus", str(tmp_path / "corpus.jsonl"),
                 "--out", str(out)), "is not a DVC reference")
    assert not out.exists()


def test_cluster_compile_refuses_a_local_path_or_a_password_left_in_params(tmp_path):
    out = tmp_path / "p.yaml"
    done = cli("pipeline", "compile", "--target", "cluster", "--corpus", REFERENCE, "--out", str(out),
               "--set", f"encoder.name_or_path={tmp_path / 'my-encoder'}")
    _refused(done, "encoder.name_or_path")
    assert "path of this machine" in done.stderr
    done = cli("pipeline", "compile", "--target", "cluster", "--out", str(out),
               "--corpus", f"dvc://https://bot:{PASSWORD}@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl")
    _refused(done, "a URL with a password")
    assert PASSWORD not in done.stderr
    assert not out.exists()


def test_the_monitor_pipeline_compiles_for_a_recurring_run_on_the_cluster(tmp_path):
    """One uncached task (a recurring run must judge fresh records each time) that reads the records from the PVC,
    talks to MLflow through the Secret, and may submit the training pipeline; nothing of this machine in it."""
    import re

    out = tmp_path / "monitor.yaml"
    done = cli("pipeline", "compile", "--monitor", "--target", "cluster", "--corpus", REFERENCE, "--out", str(out),
               "--set", f"registry.tracking_uri={LEAKY_URI}", env={"MLFLOW_TRACKING_URI": LEAKY_URI})
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert PASSWORD not in text and "sqlite" not in text
    for root in _local_roots(tmp_path):
        assert not re.search(rf"(?<![\w.-]){re.escape(root)}(?=$|[/\"'\s])", text), root
    docs = list(yaml.safe_load_all(text))
    assert set(docs[0]["root"]["dag"]["tasks"]) == {"monitor"}
    assert docs[0]["root"]["dag"]["tasks"]["monitor"]["cachingOptions"] == {}  # enableCache false is left out
    inputs = docs[0]["root"]["inputDefinitions"]["parameters"]
    assert set(inputs) == {"params", "hours", "retrain_host"} and inputs["hours"]["defaultValue"] == 24.0
    params = json.loads(inputs["params"]["defaultValue"])
    assert params["monitor"]["log_path"] == "/mnt/longdoc/monitoring"
    assert params["registry"]["tracking_uri"] == "env:MLFLOW_TRACKING_URI"
    executor = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-monitor"]
    assert executor["pvcMount"][0]["mountPath"] == "/mnt/longdoc"
    assert executor["secretAsEnv"][0]["secretName"] == "longdoc-mlflow"
    assert docs[0]["root"]["outputDefinitions"]["parameters"]["Output"]["parameterType"] == "BOOLEAN"


def test_the_local_monitor_pipeline_reads_this_machines_records(tmp_path):
    out = tmp_path / "monitor.yaml"
    done = cli("pipeline", "compile", "--monitor", "--out", str(out), "--set", f"monitor.log_path={tmp_path}")
    assert done.returncode == 0, done.stderr
    doc = next(yaml.safe_load_all(out.read_text()))
    assert json.loads(doc["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"])["monitor"][
        "log_path"] == str(tmp_path)
