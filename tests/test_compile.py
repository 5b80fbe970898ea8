"""The compiled IR YAML: the six tasks, on the project's image, training asking for a GPU."""

import pytest
import yaml

from tests.conftest import cli

TASKS = {"validate", "chunk", "train", "evaluate", "register", "package"}


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    out = tmp_path_factory.mktemp("ir") / "pipeline.yaml"
    done = cli("pipeline", "compile", "--out", str(out), "--set", "pipeline.image=registry.example/longdoc:test")
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(out.read_text())


def test_tasks_and_order(compiled):
    tasks = compiled["root"]["dag"]["tasks"]
    assert set(tasks) == TASKS
    assert tasks["chunk"]["dependentTasks"] == ["validate"]
    assert set(tasks["register"]["dependentTasks"]) == {"validate", "train", "evaluate"}
    assert tasks["package"]["dependentTasks"] == ["register"]


def test_every_task_runs_the_project_image_without_pip(compiled):
    executors = compiled["deploymentSpec"]["executors"]
    assert len(executors) == len(TASKS)
    for spec in executors.values():
        container = spec["container"]
        assert container["image"] == "registry.example/longdoc:test"
        assert "pip install" not in " ".join(container["command"])


def test_training_requests_a_gpu(compiled):
    train = compiled["deploymentSpec"]["executors"]["exec-train"]["container"]
    assert train["resources"]["accelerator"]["resourceType"] == "nvidia.com/gpu"
    assert str(train["resources"]["accelerator"]["resourceCount"]) == "1"


def test_params_file_is_the_default_argument(compiled):
    defaults = compiled["root"]["inputDefinitions"]["parameters"]
    assert defaults["params"]["defaultValue"]["train"]["variant"] == "head"
    assert defaults["corpus_path"]["defaultValue"].endswith("data/corpus.jsonl")
