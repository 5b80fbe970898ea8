"""The compiled IR YAML: the six tasks, on the project's image, training asking for a GPU."""

import json

import pytest
import yaml

from tests.conftest import cli

COMPONENTS = {"validate", "chunk", "train-encoder", "train", "evaluate", "register", "baseline", "gate", "compare",
              "package"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    done = cli("pipeline", "compile", "--out", str(out), "--set", "pipeline.image=registry.example/longdoc:test")
    assert done.returncode == 0, done.stderr
    return next(yaml.safe_load_all(out.read_text()))


def test_tasks_and_order(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == {"validate", "chunk", "train-encoder", "baseline", "for-loop-1", "gate", "compare",
                          "condition-2"}
    assert tasks["chunk"]["dependentTasks"] == ["validate"]
    # two-stage training: the encoder is trained once, before the fan-out over variants that start from it
    assert tasks["train-encoder"]["dependentTasks"] == ["chunk"]
    assert "train-encoder" in tasks["for-loop-1"]["dependentTasks"]
    # one gate after every candidate (each variant and the baseline) is registered: one writer of the alias
    assert set(tasks["gate"]["dependentTasks"]) == {"baseline", "for-loop-1", "validate"}
    assert set(tasks["compare"]["dependentTasks"]) == {"baseline", "for-loop-1", "gate"}
    loop = tasks["for-loop-1"]
    assert loop["taskInfo"]["name"] == "variants"  # dsl.ParallelFor over train.variants
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--variants"
    inner = compiled["components"]["comp-for-loop-1"]["dag"]["tasks"]
    assert set(inner) == {"train", "evaluate", "register"}
    assert set(inner["register"]["dependentTasks"]) == {"train", "evaluate"}
    encoder_input = inner["train"]["inputs"]["artifacts"]["encoder"]
    assert encoder_input["componentInputArtifact"] == "pipelinechannel--train-encoder-encoder"


def test_packaging_runs_only_when_the_gate_promoted(compiled):
    condition = compiled["root"]["dag"]["tasks"]["condition-2"]
    assert set(condition["dependentTasks"]) == {"baseline", "compare", "gate"}
    assert condition["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--gate-Output'] == 'package'"
    assert list(compiled["components"]["comp-condition-2"]["dag"]["tasks"]) == ["package"]


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
