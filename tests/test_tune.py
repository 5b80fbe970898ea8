"""`longdoc tune`: an Optuna study over params.yaml on the tiny two-stage config, with real MLflow (SQLite),
a real Optuna storage and the packaged encoder.

Four trials, enqueued so that what happens does not hang on the sampler's luck: a good one, one whose
sampled chunk length the encoder cannot take (the training stage's own check raises), another good one,
and one whose head learning rate is too small to move the randomly initialised attention head (its
validation macro-F1 at the first validation is far below the median of the two good ones: pruned).
The free dimension (``hidden``) is still sampled by the seeded TPE sampler in every trial.
"""

from __future__ import annotations

import json
import re
import sqlite3

import pytest
import yaml

from longdoc.errors import LongdocError
from tests.conftest import ROOT, cli, set_args, write_changed_corpus

# The shipped two-stage path, small: stage 1 fine-tunes the encoder once, attention trains on its cached vectors.
TUNE = {"data.sample_per_label": 12, "train.max_steps": 6, "train.batch_size": 8,
        "train.stage1": {"max_steps": 4, "batch_size": 8, "max_chunks": 4}, "train.docs_per_label": None,
        "train.variants": ["attention"], "train.overrides": {}, "train.max_chunks": 4, "train.two_stage": True,
        "train.freeze_encoder": True, "chunking.chunk_tokens": 64, "chunking.overlap": 8,
        "chunking.sentence_slack": 16, "train.val_docs_per_label": None, "train.device": "cpu"}
HEAD_LR, HIDDEN = "train.overrides.attention.head_lr", "train.overrides.attention.hidden"
SPACE = {"study": "tiny", "sampler": {"seed": 13}, "pruner": {"n_startup_trials": 2, "n_warmup_steps": 0},
         "space": {HEAD_LR: {"type": "float", "low": 1.0e-6, "high": 0.1, "log": True},
                   HIDDEN: {"type": "int", "low": 16, "high": 64, "step": 16},
                   "chunking.chunk_tokens": {"type": "categorical", "choices": [64, 1024]}},
         "enqueue": [{"chunking.chunk_tokens": 64, HEAD_LR: 0.01},
                     {"chunking.chunk_tokens": 1024},  # the encoder has 512 positions: the trial crashes
                     {"chunking.chunk_tokens": 64, HEAD_LR: 0.03},
                     {"chunking.chunk_tokens": 64, HEAD_LR: 1.0e-6}]}  # learns nothing: pruned


def _settings(tmp, corpus) -> list[str]:
    return set_args({**TUNE, "data.corpus": str(corpus), "train.cache_dir": str(tmp / "cache"),
                     "registry.tracking_uri": f"sqlite:///{tmp / 'mlruns.db'}"})


def _tune(tmp, corpus, *extra: str):
    return cli("tune", *_settings(tmp, corpus), "--space", str(tmp / "space.yaml"), "--out", str(tmp / "out"),
               *extra, env={"MLFLOW_TRACKING_URI": ""})


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, small_corpus):
    tmp = tmp_path_factory.mktemp("tune")
    (tmp / "space.yaml").write_text(yaml.safe_dump(SPACE))
    done = _tune(tmp, small_corpus, "--trials", "4", "--write-best", str(tmp / "params.best.yaml"))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return tmp, done


def _study(tmp):
    import optuna

    return optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp / 'mlruns.optuna.db'}")


def _runs(tmp):
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp / 'mlruns.db'}")
    runs = client.search_runs([client.get_experiment_by_name("longdoc").experiment_id])
    parent = [r for r in runs if r.data.tags.get("longdoc.kind") == "tune"]
    children = {r.data.tags["optuna.trial"]: r for r in runs if r.data.tags.get("longdoc.kind") == "tune-trial"}
    return parent, children


def test_four_trials_one_pruned_one_crashed_each_a_nested_run_under_one_parent(tuned):
    tmp, done = tuned
    trials = _study(tmp).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "FAIL", "COMPLETE", "PRUNED"]
    assert "exceeds the encoder's 512 positions" in trials[1].user_attrs["error"]
    assert trials[3].params[HEAD_LR] == 1.0e-6 and list(trials[3].intermediate_values) == [3]  # stopped at step 3
    assert trials[3].intermediate_values[3] < min(trials[0].intermediate_values[3], trials[2].intermediate_values[3])
    assert all(t.params[HIDDEN] in (16, 32, 48, 64) for t in trials)  # sampled by TPE in every trial
    [parent], children = _runs(tmp)
    assert sorted(children) == ["0", "1", "2", "3"]
    assert {r.data.tags["mlflow.parentRunId"] for r in children.values()} == {parent.info.run_id}
    assert [children[n].info.status for n in "0123"] == ["FINISHED", "FAILED", "FINISHED", "KILLED"]
    assert "512 positions" in children["1"].data.tags["error"]
    assert children["2"].data.metrics["best_val_macro_f1"] == pytest.approx(trials[2].value)
    assert children["2"].data.params[HEAD_LR] == "0.03"
    assert parent.info.status == "FINISHED" and parent.data.metrics["best_val_macro_f1"] == _study(tmp).best_value
    assert "Traceback" not in done.stderr and "1 fail" in done.stdout and "1 pruned" in done.stdout


def test_trials_over_aggregator_params_read_every_vector_from_the_cache(tuned):
    tmp, done = tuned
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    by_number = {t["number"]: t for t in summary["trials"]}
    # trial 0 fine-tuned the encoder (stage 1) and encoded the chunks; trials 2 and 3 sample only the attention
    # head's settings, reuse that stage 1 and encode nothing: the embedding cache's own counters
    assert by_number[0]["stage1"] == "trained" and by_number[0]["cache_misses"] > 0 and not by_number[0]["hit_cache"]
    for n in (2, 3):
        assert by_number[n]["stage1"] == "reused" and by_number[n]["cache_misses"] == 0
        assert by_number[n]["cache_hits"] > 0 and by_number[n]["hit_cache"]
    assert summary["cache_hit_trials"] == 2
    assert "2 hit the embedding cache" in done.stdout


def test_the_best_params_file_reproduces_the_best_trial(tuned):
    """The written file is a params file like params.yaml (what `longdoc run --params` reads, through the same
    loader as `longdoc train`): training with it gives the best trial's validation macro-F1 again."""
    tmp, _ = tuned
    best = yaml.safe_load((tmp / "params.best.yaml").read_text())
    study = _study(tmp)
    assert best["train"]["overrides"]["attention"]["head_lr"] == study.best_params[HEAD_LR]
    workspace = tmp / "out" / "workspace"
    [chunks], [stage1] = list((workspace / "chunks").iterdir()), list((workspace / "stage1").iterdir())
    done = cli("train", "--params", str(tmp / "params.best.yaml"), "--variant", "attention", "--chunks", str(chunks),
               "--encoder-from", str(stage1), "--out", str(tmp / "again"))
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((tmp / "again" / "train_summary.json").read_text())
    assert summary["best_val_macro_f1"] == pytest.approx(study.best_value)
    # `longdoc run --params` takes it too: past the params and its config checks, it stops only at the
    # tracking server named here, which does not answer (a whole run would take minutes)
    run = cli("run", "--params", str(tmp / "params.best.yaml"), env={"MLFLOW_TRACKING_URI": "http://127.0.0.1:9"})
    assert run.returncode == 2 and "cannot be reached" in run.stderr and "Traceback" not in run.stderr, run.stderr


def test_running_again_resumes_the_study_under_the_same_parent(tuned, small_corpus):
    tmp, _ = tuned
    [parent], _ = _runs(tmp)
    done = _tune(tmp, small_corpus, "--trials", "1")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "(4 earlier trials)" in done.stdout
    assert len(_study(tmp).trials) == 5
    [again], children = _runs(tmp)
    assert again.info.run_id == parent.info.run_id and children["4"].data.tags["mlflow.parentRunId"] == \
        parent.info.run_id


def test_the_workspace_follows_the_corpus_content_not_its_path(tmp_path, small_corpus):
    """After `dvc pull` or `data import` the same path holds other documents: the next session must chunk them and
    train stage 1 on them, not reuse what the old ones made (the workspace is keyed on the data version)."""
    import shutil

    import pandas as pd

    from longdoc.config.params import load_params
    from longdoc.tuning.trial import Workspace

    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(small_corpus, corpus)
    params = load_params(ROOT / "params.yaml", {**TUNE, "data.corpus": str(corpus), "train.cache_dir":
                                                str(tmp_path / "cache"), "train.stage1": {"max_steps": 1,
                                                                                          "batch_size": 8,
                                                                                          "max_chunks": 2}})
    chunks, stage1, _ = Workspace(tmp_path / "ws").prepare(params)
    write_changed_corpus(small_corpus, corpus)
    chunks_after, stage1_after, fill = Workspace(tmp_path / "ws").prepare(params)  # the next `longdoc tune`
    assert chunks_after != chunks and stage1_after != stage1 and fill is not None  # stage 1 trained again
    old, new = (pd.read_parquet(c / "documents.parquet").set_index("id")["input_ids"] for c in (chunks, chunks_after))
    assert sorted(old.index) == sorted(new.index) and all(list(old[i]) != list(new[i]) for i in old.index)


# --- bad input: one clear line, exit 2, before any trial ---


def _refused(done, fragment: str) -> None:
    assert done.returncode == 2, done.stdout + done.stderr
    assert fragment in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def _parse(space: dict):
    from longdoc.tuning.space import parse_space

    return parse_space({"space": space})


def test_an_unknown_key_is_named_with_close_names(tmp_path):
    with pytest.raises(LongdocError, match=r"'train\.learning_rate' is not a parameter of params.yaml; did you "
                                           r"mean .*'train\.head_lr'"):
        _parse({"train.learning_rate": {"type": "float", "low": 1e-5, "high": 1e-3}})
    with pytest.raises(LongdocError, match="'attnetion' is not a variant"):
        _parse({"train.overrides.attnetion.head_lr": {"type": "float", "low": 1e-5, "high": 1e-3}})
    with pytest.raises(LongdocError, match="the data section cannot be searched"):
        _parse({"data.seed": {"type": "int", "low": 1, "high": 3}})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"space": {"chunking.chunk_token": {
        "type": "categorical", "choices": [64, 128]}}}))
    _refused(cli("tune", "--space", str(tmp_path / "space.yaml")), "did you mean 'chunking.chunk_tokens'")


def test_empty_ranges_and_values_the_parameter_refuses(tmp_path):
    for dim, fragment in [({"type": "float", "low": 1e-3, "high": 1e-5}, "empty range: low (0.001) is above high"),
                          ({"type": "int", "low": 4, "high": 4}, "empty range: low equals high"),
                          ({"type": "categorical", "choices": []}, "empty choices"),
                          ({"type": "float", "low": 0.0, "high": 1e-3}, "0.0 is not a valid value"),
                          ({"type": "float", "low": 1e-5, "high": 1e-3, "log": True, "step": 1e-5}, "step and log")]:
        with pytest.raises(LongdocError, match=re.escape(fragment)):
            _parse({"train.lr": dim})
    with pytest.raises(LongdocError, match="not a valid value: Input should be a valid integer"):
        _parse({"train.hidden": {"type": "float", "low": 16.5, "high": 64}})
    (tmp_path / "space.yaml").write_text(yaml.safe_dump({"space": {"train.lr": {"type": "float", "low": 1e-3,
                                                                                 "high": 1e-5}}}))
    _refused(cli("tune", "--space", str(tmp_path / "space.yaml")), "space[train.lr]: empty range")


def test_optuna_never_shares_mlflows_database(tmp_path, small_corpus):
    """Both keep their schema revision in `alembic_version`: sharing one file breaks one of them. The default is a
    sibling file; naming MLflow's own database is refused before Optuna touches it."""
    from longdoc.tuning.study import default_storage, resolve_storage

    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    assert default_storage(uri) == f"sqlite:///{tmp_path / 'mlruns.optuna.db'}"
    assert default_storage("postgresql://mlflow@db:5432/mlflow") == "postgresql://mlflow@db:5432/mlflow_optuna"
    with pytest.raises(LongdocError, match="pass --storage"):
        default_storage("http://mlflow.example:5000")
    with pytest.raises(LongdocError, match="alembic_version"):
        resolve_storage("postgresql+psycopg2://other@db:5432/mlflow", "postgresql://mlflow@db:5432/mlflow")
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    mlflow_db = tmp_path / "mlruns.db"
    done = cli("tune", *_settings(tmp_path, small_corpus), "--space", str(tmp_path / "space.yaml"),
               "--storage", f"sqlite:///{mlflow_db}", env={"MLFLOW_TRACKING_URI": ""})
    _refused(done, "alembic_version")
    if mlflow_db.exists():  # whatever else happened, Optuna's tables never went in
        tables = {r[0] for r in sqlite3.connect(mlflow_db).execute("select name from sqlite_master")}
        assert "studies" not in tables and "trials" not in tables


def test_the_cluster_sweep_samples_its_configurations_up_front():
    from longdoc.tuning.space import parse_space
    from longdoc.tuning.sweep import sample_configurations

    space = parse_space(SPACE)
    first, again = sample_configurations(space, 6), sample_configurations(space, 6)
    assert first == again  # seeded: the compiled sweep and a rerun train the same configurations
    assert [c["number"] for c in first] == list(range(6))
    assert first[1]["params"]["chunking.chunk_tokens"] == 1024 and first[3]["params"][HEAD_LR] == 1.0e-6  # enqueued
    assert all(space.space[k].holds(v) for c in first for k, v in c["params"].items())


def test_the_sweep_compiles_one_gpu_task_per_configuration(tmp_path):
    """`longdoc pipeline compile --tune --target cluster`: the trials fan out (ParallelFor over the configurations
    the open task samples), each on its own GPU with the volume and MLflow's Secret, after the shared prepare."""
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(SPACE))
    out = tmp_path / "sweep.yaml"
    done = cli("pipeline", "compile", "--tune", "--target", "cluster", "--space", str(tmp_path / "space.yaml"),
               "--trials", "6", "--corpus", "dvc://https://git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl",
               "--out", str(out), "--set", "pipeline.parallelism=3")
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    assert "sqlite" not in text  # MLflow's URI comes from the Secret, as in the main pipeline
    ir, platform = yaml.safe_load_all(text)
    tasks = ir["root"]["dag"]["tasks"]
    assert set(tasks) == {"validate", "tune-open", "tune-prepare", "for-loop-1", "tune-select"}
    loop = tasks["for-loop-1"]
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--tune-open-trials"
    assert set(loop["dependentTasks"]) == {"tune-open", "tune-prepare", "validate"}
    assert loop["iteratorPolicy"] == {"parallelismLimit": 3}  # pipeline.parallelism: trials at once
    assert list(ir["components"]["comp-for-loop-1"]["dag"]["tasks"]) == ["tune-trial"]
    assert set(tasks["tune-select"]["dependentTasks"]) == {"for-loop-1", "tune-open"}
    executors = ir["deploymentSpec"]["executors"]
    for task in ("exec-tune-trial", "exec-tune-prepare"):
        accelerator = executors[task]["container"]["resources"]["accelerator"]
        assert accelerator["resourceType"] == "nvidia.com/gpu" and str(accelerator["resourceCount"]) == "1"
    assert "resources" not in executors["exec-tune-select"]["container"]
    k8s = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    assert k8s["exec-tune-trial"]["pvcMount"][0]["mountPath"] == "/mnt/longdoc"
    assert k8s["exec-tune-trial"]["secretAsEnv"][0]["secretName"] == "longdoc-mlflow"
    defaults = ir["root"]["inputDefinitions"]["parameters"]
    assert int(defaults["n_trials"]["defaultValue"]) == 6 and defaults["study"]["defaultValue"] == "tiny"
    assert json.loads(defaults["space"]["defaultValue"])["space"][HEAD_LR]["log"] is True
    assert json.loads(defaults["params"]["defaultValue"])["train"]["cache_dir"] == "/mnt/longdoc/embedding_cache"
