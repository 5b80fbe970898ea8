"""Training budgets in optimizer steps, the learning check, safe resume and profiles, on real runs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
import yaml

from longdoc.config.params import load_params
from longdoc.errors import LongdocError
from longdoc.training.loop import plan_budget
from tests.conftest import BIN, ROOT, cli, set_args, train_command


def test_max_steps_means_what_it_says_whatever_the_corpus_size():
    shipped = load_params(ROOT / "params.yaml")
    for variant in ("head", "attention", "longformer", "stage 1"):
        cfg = shipped.train.for_stage1() if variant == "stage 1" else shipped.train.for_variant(variant)
        assert cfg.max_steps > 0
        small, large = plan_budget(60, cfg), plan_budget(1595, cfg)
        assert small.steps == large.steps == cfg.max_steps  # 127 documents get as many updates as 1,600
        assert small.epochs > large.epochs and small.epochs > 1
        assert small.eval_every <= small.steps_per_epoch and small.steps // small.eval_every >= 2
        assert small.warmup == int(cfg.warmup_ratio * small.steps)
    # chunk_mean is the stage-1 model itself: 0 further steps, whatever the corpus size
    assert plan_budget(60, shipped.train.for_variant("chunk_mean")).steps == 0
    by_epochs = load_params(ROOT / "params.yaml", {"train.max_steps": None, "train.epochs": 3}).train
    assert plan_budget(60, by_epochs.for_variant("head")).steps == 3 * 2  # 60 documents, batches of 32


def test_narrowing_the_variants_works_as_typed():
    narrowed = load_params(ROOT / "params.yaml", {"train.variants": ["head", "chunk_mean"]})
    assert narrowed.train.variants == ["head", "chunk_mean"] and "longformer" in narrowed.train.overrides
    with pytest.raises(LongdocError, match="overrides for 'atention', which is not a variant"):
        load_params(ROOT / "params.yaml", {"train.overrides": {"atention": {"max_steps": 5}}})


def test_both_profiles_validate_and_the_gpu_one_carries_the_gpu_settings(tmp_path):
    cpu = load_params(ROOT / "params.yaml")
    gpu = load_params(ROOT / "params.yaml", profile="gpu")
    assert (cpu.chunking.chunk_tokens, cpu.longformer.max_tokens) == (128, 1024)
    assert (gpu.chunking.chunk_tokens, gpu.longformer.max_tokens, gpu.longformer.attention_window) == (510, 4096, 512)
    # the profile's overrides replace the CPU caps, they are not merged with them
    assert gpu.train.device == "cuda" and gpu.train.for_variant("longformer").max_steps == 1000
    assert cpu.train.for_variant("longformer").max_steps == 30 and gpu.train.for_stage1().max_steps == 1000
    assert gpu.train.for_variant("chunk_mean").freeze_layers == 0 and gpu.evaluate.docs_per_label is None
    with pytest.raises(LongdocError, match="profile 'tpu' not found"):
        load_params(ROOT / "params.yaml", profile="tpu")
    done = cli("--profile", "gpu", "pipeline", "compile", "--out", str(tmp_path / "gpu.yaml"))
    assert done.returncode == 0, done.stderr
    compiled = yaml.safe_load((tmp_path / "gpu.yaml").read_text())
    default = json.loads(compiled["root"]["inputDefinitions"]["parameters"]["params"]["defaultValue"])
    assert default["longformer"]["max_tokens"] == 4096  # the profile is compiled in
    wrong = cli("pipeline", "compile", "--out", str(tmp_path / "gpu.txt"))
    assert wrong.returncode == 2 and "must end with .yaml" in wrong.stderr and "Traceback" not in wrong.stderr


def test_a_budget_too_small_to_learn_is_marked_undertrained_and_refused(tiny_chunks, tmp_path, monkeypatch):
    """Two steps at a negligible learning rate: the model answers like chance, the run says so, the gate refuses."""
    from longdoc.registry.promotion import decide
    from longdoc.registry.register import Lineage, register
    from longdoc.stages import package

    out = tmp_path / "frozen"
    command = [*train_command(tiny_chunks, out, "head"),
               *set_args({"train.max_steps": 2, "train.lr": 1e-9, "train.head_lr": 1e-9, "train.freeze_layers": 6})]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["undertrained"] and "not above the majority-class rate" in summary["undertrained_reason"]
    assert "training loss stayed near ln(5)" in summary["undertrained_reason"]
    assert "raise train.max_steps (now 2)" in summary["undertrained_reason"]
    assert "is undertrained" in done.stdout + done.stderr

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    params = load_params(ROOT / "params.yaml")
    eval_dir = tmp_path / "eval"
    eval_dir.mkdir()
    (eval_dir / "metrics.json").write_text(json.dumps({"normal_macro_f1": 0.2, "normal_accuracy": 0.2}))
    reg = register(params, out / "model", eval_dir, "head", summary["labels"], Lineage("d1", "sha", "c"),
                   train_dir=out)
    import mlflow

    client = mlflow.MlflowClient(uri, uri)
    assert client.get_model_version(reg.model_name, reg.version).tags["undertrained"] == "true"
    decision = decide(client, reg.model_name, [reg.version], "champion", "d1", params.registry.gate)
    assert not decision.promoted and "undertrained: validation macro-F1" in decision.reason
    with pytest.raises(LongdocError, match="@champion in the registry"):
        package(params, reg.model_name)  # nothing to package


def test_a_checkpoint_of_another_variant_or_other_settings_is_refused(tiny_chunks, tmp_path):
    out = tmp_path / "shared"
    first = subprocess.run([*train_command(tiny_chunks, out, "chunk_mean"), *set_args({"train.max_steps": 2})],
                           cwd=ROOT, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr[-2000:]
    assert list(out.glob("checkpoints/step-*/checkpoint.json"))
    other_variant = subprocess.run([*train_command(tiny_chunks, out, "head"), *set_args({"train.max_steps": 2})],
                                   cwd=ROOT, capture_output=True, text=True)
    assert other_variant.returncode == 2 and "is of variant 'chunk_mean', not 'head'" in other_variant.stderr
    other_lr = subprocess.run([*train_command(tiny_chunks, out, "chunk_mean"),
                               *set_args({"train.max_steps": 2, "train.lr": 3e-4})], cwd=ROOT, capture_output=True,
                              text=True)
    assert other_lr.returncode == 2 and "written with other training settings" in other_lr.stderr
    assert "Traceback" not in other_variant.stderr + other_lr.stderr


def test_a_run_killed_after_its_last_checkpoint_still_writes_its_model(tiny_chunks, tmp_path):
    out = tmp_path / "last"
    command = [*train_command(tiny_chunks, out, "chunk_mean"), *set_args({"train.max_steps": 4})]
    assert subprocess.run(command, cwd=ROOT, capture_output=True, text=True).returncode == 0
    assert (out / "checkpoints" / "step-000004" / "trainer_state.pt").is_file()  # checkpoint_every 2: step 4 = last
    shutil.rmtree(out / "model")  # as if killed after the last checkpoint, before model/ was written
    (out / "train_summary.json").unlink()
    resumed = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming chunk_mean from" in resumed.stdout + resumed.stderr
    assert (out / "model" / "model.safetensors").is_file()
    assert json.loads((out / "train_summary.json").read_text())["steps"] == 4


def test_no_training_state_is_unpickled():
    sources = "\n".join(p.read_text() for p in (ROOT / "src" / "longdoc").rglob("*.py"))
    assert "weights_only=False" not in sources and "weights_only=True" in sources


@pytest.mark.slow
def test_a_small_corpus_gets_the_configured_steps_with_the_shipped_settings(tmp_path, demo_corpus):
    """40 demo articles in each of two classes, params.yaml as shipped (stage 1 narrowed to two chunks a
    document to keep the test short), trained by the stages the pipeline runs. What the registry and the
    run's summary make of these costs is checked on the pipeline's own run (test_pipeline.py)."""
    from longdoc.data.corpus import read_corpus, write_jsonl
    from longdoc.data.splits import sample_per_label

    frame = read_corpus(demo_corpus)
    frame = sample_per_label(frame[frame["label"].isin(["business", "sports"])], 40, 13)
    corpus = tmp_path / "corpus.jsonl"
    write_jsonl(frame, corpus)
    shipped = load_params(ROOT / "params.yaml").train
    args = set_args({"data.corpus": str(corpus), "train.stage1": {**shipped.stage1, "max_chunks": 2},
                     "train.cache_dir": str(tmp_path / "cache")})
    for stage in (["validate", "--out", str(tmp_path / "v")], ["chunk", "--corpus", str(tmp_path / "v"), "--out",
                                                               str(tmp_path / "c")],
                  ["train-encoder", "--chunks", str(tmp_path / "c"), "--out", str(tmp_path / "encoder")]):
        done = cli(stage[0], *args, *stage[1:])
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    encoder = json.loads((tmp_path / "encoder" / "train_summary.json").read_text())
    assert encoder["steps"] == shipped.for_stage1().max_steps and encoder["epochs"] > 1  # not one epoch of 60
    for variant in ("head", "attention"):
        done = cli("train", *args, "--variant", variant, "--chunks", str(tmp_path / "c"), "--encoder-from",
                   str(tmp_path / "encoder"), "--out", str(tmp_path / variant))
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        summary = json.loads((tmp_path / variant / "train_summary.json").read_text())
        assert summary["steps"] == shipped.for_variant(variant).max_steps and summary["epochs"] > 1
        assert summary["encoder_tokens"] == 0 and summary["stage1_encoder_tokens"] == encoder["encoder_tokens"]


def test_env_profile_reaches_every_command():
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "LONGDOC_PROFILE": "nope"}
    done = subprocess.run([str(BIN / "longdoc"), "validate"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert done.returncode == 2 and "profile 'nope' not found" in done.stderr


def test_early_stopping_is_opt_in_and_counts_validations(tiny_chunks, tmp_path):
    """patience 1 with a validation every step stops at the first validation without a gain; null trains it all."""
    out = tmp_path / "patient"
    done = subprocess.run([*train_command(tiny_chunks, out, "head"),
                           *set_args({"train.max_steps": 12, "train.eval_every": 1, "train.patience": 1,
                                      "train.lr": 1e-9, "train.head_lr": 1e-9})], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads((out / "train_summary.json").read_text())["steps"] < 12
    assert load_params(ROOT / "params.yaml").train.patience is None
