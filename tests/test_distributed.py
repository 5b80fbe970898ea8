"""Several processes train like one: torchrun on CPU (gloo) against one process at the same global batch,
and the Kubeflow Trainer manifest that runs the same training on several nodes."""

import json
import subprocess

import pytest
import yaml
from safetensors.torch import load_file

from longdoc.errors import LongdocError
from tests.conftest import ROOT, cli, set_args, stop_group, train_command

# A head on the packaged encoder's frozen chunk vectors (mean_pool): real trainable parameters, seconds per
# run, and a per-document loss (a chunk-level loss is a mean per rank, which DDP's gradient average does not
# reproduce exactly). Dropout 0 and one seed make both runs deterministic; the head learns (validation
# macro-F1 0.23 -> 1.0), then stops early after 2 validations without a gain, well before max_steps.
HEAD = {"train.freeze_encoder": True, "train.dropout": 0.0, "train.head_lr": 0.01, "train.max_steps": 10,
        "train.eval_every": 1, "train.patience": 2, "train.checkpoint_every": 1}
TIMEOUT = 240  # a rank left waiting in a collective hangs (gloo waits 30 minutes): fail long before that


def _train(tiny_chunks, out, **settings) -> dict:
    cmd = [*train_command(tiny_chunks, out, "mean_pool"), *set_args({**HEAD, **settings})]
    log = out.with_suffix(".log")  # a file, not a pipe: a hung rank holding a pipe open would block the test
    with log.open("w") as sink:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            # SIGTERM to the group: torchrun's agent is in it and stops its ranks (they run in sessions of their own)
            stop_group(proc)
            pytest.fail(f"training with {settings} did not finish in {TIMEOUT} s (a rank waiting for the others?)")
    assert proc.returncode == 0, log.read_text()[-3000:]
    return json.loads((out / "train_summary.json").read_text())


def _final_head(out) -> dict:
    """The trainable part (everything but the frozen encoder) at the last step: the newest checkpoint."""
    last = sorted((out / "checkpoints").glob("step-*"))[-1]
    return {k: v for k, v in load_file(last / "model.safetensors").items() if not k.startswith("encoder.")}


def test_two_processes_train_like_one_at_the_same_global_batch(tiny_chunks, tmp_path):
    cache = {"train.cache_dir": str(tmp_path / "cache")}  # one store: both runs read the same chunk vectors
    one = _train(tiny_chunks, tmp_path / "one", **cache, **{"train.batch_size": 8})
    # batch_size is per process: 2 x 4 is the global batch of 8; the setting starts torchrun itself
    two = _train(tiny_chunks, tmp_path / "two", **cache, **{"train.batch_size": 4, "train.nproc_per_node": 2})

    assert (one["world_size"], two["world_size"]) == (1, 2)
    # both stopped early at the same validation: rank 1 stopped with rank 0 instead of waiting for it forever
    assert two["steps"] == one["steps"] < HEAD["train.max_steps"]
    assert two["best_val_macro_f1"] == one["best_val_macro_f1"] > 0.5
    ranks, alone = two["data_parallel"], one["data_parallel"]
    assert alone["docs_per_rank"] == [one["train_docs"]]  # a whole epoch of the 30 training documents
    assert ranks["docs_per_rank"] == [one["train_docs"] // 2] * 2 and ranks["docs_in_several_ranks"] == 0
    assert ranks["docs_sha256"] == alone["docs_sha256"]  # the two halves are the single process's documents
    assert len(set(ranks["weights_sha256_per_rank"])) == 1  # the replicas ended bit-identical

    a, b = _final_head(tmp_path / "one"), _final_head(tmp_path / "two")
    assert a and a.keys() == b.keys()
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"max abs difference of the trained head, 1 process vs 2: {diff:.1e}")
    assert diff < 1e-5


def test_a_failed_rank_is_a_longdoc_error_with_the_exit_code(tmp_path):
    from longdoc.training.distributed import run_torchrun

    with pytest.raises(LongdocError, match=r"2 processes failed with exit code 1: params file not found"):
        run_torchrun(2, ["train", "--params", str(tmp_path / "missing.yaml")])


def test_inside_torchrun_training_does_not_start_torchrun_again(monkeypatch):
    from longdoc.training.distributed import needs_launch

    monkeypatch.setenv("WORLD_SIZE", "8")  # set by torchrun (also the one a TrainJob's command starts)
    assert not needs_launch(4)
    monkeypatch.delenv("WORLD_SIZE")
    assert needs_launch(2) and not needs_launch(1)


def test_trainjob_runs_the_variant_under_torchrun_on_several_nodes(tmp_path):
    out = tmp_path / "trainjob.yaml"
    overrides = {"pipeline.image": "registry.example/longdoc:test", "train.batch_size": 8, "train.two_stage": True}
    done = cli("pipeline", "trainjob", "--variant", "attention", "--nodes", "3", "--nproc-per-node", "4",
               "--out", str(out), *set_args(overrides))
    assert done.returncode == 0, done.stderr
    job = yaml.safe_load(out.read_text())
    assert (job["apiVersion"], job["kind"]) == ("trainer.kubeflow.org/v1alpha1", "TrainJob")
    assert job["metadata"]["name"] == "longdoc-attention"
    assert job["spec"]["runtimeRef"] == {"name": "torch-distributed"}
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (3, 4)
    assert trainer["image"] == "registry.example/longdoc:test"
    assert trainer["resourcesPerNode"] == {"limits": {"nvidia.com/gpu": 4}}  # one GPU per process
    command = trainer["command"]
    # torchrun once, from the runtime's PET_* variables; inside it `longdoc train` sees WORLD_SIZE and trains
    assert command[:4] == ["torchrun", "--module", "longdoc", "train"] and command.count("torchrun") == 1
    flags = dict(zip(command[4::2], command[5::2], strict=False))
    assert flags["--variant"] == "attention" and flags["--out"] == "outputs/train/attention"
    assert flags["--encoder-from"] == "outputs/encoder"  # two-stage: the variant starts from stage 1
    # the pods train on the params the manifest was made from, read back the way the CLI reads --set
    from longdoc.cli.app import _params

    sent = _params(ROOT / "params.yaml", [command[i + 1] for i, arg in enumerate(command) if arg == "--set"])
    assert sent.train.batch_size == 8 and sent.pipeline.image == "registry.example/longdoc:test"


def test_trainjob_on_cpu_nodes_asks_for_no_gpu_and_refuses_a_bad_name():
    from longdoc.config.params import load_params
    from pipelines.cluster import trainjob

    params = load_params(ROOT / "params.yaml", {"pipeline.gpu.count": 0, "train.nproc_per_node": 2})
    trainer = trainjob(params, "head", nodes=2)["spec"]["trainer"]
    assert trainer["numProcPerNode"] == 2 and "resourcesPerNode" not in trainer
    with pytest.raises(LongdocError, match="must be a DNS label"):
        trainjob(params, "head", nodes=2, name="Longdoc_head")
