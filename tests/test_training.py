"""The training loop for real: a small run learns, and a killed run resumes to the same weights."""

import signal
import subprocess
import time

import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import ROOT, TINY, cli, set_args, train_command, write_changed_corpus


def test_resume_after_kill_reaches_the_same_weights(tiny_chunks, tmp_path):
    straight = subprocess.run(train_command(tiny_chunks, tmp_path / "straight"), cwd=ROOT, capture_output=True,
                              text=True)
    assert straight.returncode == 0, straight.stderr[-2000:]

    proc = subprocess.Popen(train_command(tiny_chunks, tmp_path / "killed"), cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    for _ in range(6000):  # poll for the first checkpoint (at most 5 minutes)
        if list((tmp_path / "killed").glob("checkpoints/step-*/trainer_state.pt")):
            break
        assert proc.poll() is None, "training ended before its first checkpoint"
        time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("no checkpoint was written")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "train_summary.json").exists()

    resumed = subprocess.run(train_command(tiny_chunks, tmp_path / "killed"), cwd=ROOT, capture_output=True,
                             text=True)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming chunk_mean from" in resumed.stdout + resumed.stderr
    a = load_file(tmp_path / "straight" / "model" / "model.safetensors")
    b = load_file(tmp_path / "killed" / "model" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_stage1_does_not_resume_over_a_changed_corpus_at_the_same_path(tmp_path, small_corpus):
    """`dvc pull` or `data import` puts other documents at the same path: `train-encoder` into the same folder must
    not resume the old corpus's checkpoint (and keep its encoder), since the fingerprint holds the data version."""
    import shutil

    corpus = tmp_path / "corpus.jsonl"
    shutil.copy(small_corpus, corpus)
    args = set_args({**TINY, "data.corpus": str(corpus), "train.two_stage": True, "train.cache_dir":
                     str(tmp_path / "cache"), "train.stage1": {"max_steps": 2, "max_chunks": 2}})
    folders = {name: str(tmp_path / name) for name in ("validation", "chunks", "encoder")}

    def stage1():
        assert cli("validate", *args, "--out", folders["validation"]).returncode == 0
        assert cli("chunk", *args, "--corpus", folders["validation"], "--out", folders["chunks"]).returncode == 0
        return cli("train-encoder", *args, "--chunks", folders["chunks"], "--out", folders["encoder"])

    first = stage1()
    assert first.returncode == 0, first.stderr[-2000:]
    write_changed_corpus(small_corpus, corpus)
    again = stage1()
    assert "resuming chunk_mean from" not in again.stdout + again.stderr
    assert again.returncode == 2, again.stdout[-2000:] + again.stderr[-2000:]
    assert "data version" in again.stderr and "Traceback" not in again.stderr, again.stderr[-2000:]


def test_training_learns_and_reports_throughput(tiny_chunks, tmp_path):
    longer = [*train_command(tiny_chunks, tmp_path / "head", "head"),
              *set_args({"train.epochs": 3, "train.max_steps": 24, "train.lr": 2e-4, "train.patience": 3})]
    done = subprocess.run(longer, cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    history = json.loads((tmp_path / "head" / "history.json").read_text())
    summary = json.loads((tmp_path / "head" / "train_summary.json").read_text())
    assert summary["steps"] == len(history) == 24 and summary["train_tokens_per_second"] > 0
    first = [h["loss"] for h in history if h["epoch"] == 0]
    last = [h["loss"] for h in history if h["epoch"] == 2]
    assert sum(last) / len(last) < 0.8 * sum(first) / len(first)
    # the loss is the learning signal here (five validation documents say little); the summary keeps the best
    scores = [h["val_macro_f1"] for h in history if "val_macro_f1" in h]
    assert len(scores) >= 2 and summary["best_val_macro_f1"] == max(scores)


def test_zero_labels_is_refused_before_any_model_is_built(tmp_path):
    import pandas as pd

    from longdoc.errors import LongdocError
    from longdoc.training.loop import load_docs

    pd.DataFrame([{"id": "a", "label": "x", "split": "test", "input_ids": [1, 2]}]).to_parquet(
        tmp_path / "documents.parquet")
    pd.DataFrame([{"id": "a", "chunk": 0, "start": 0, "end": 2, "char_start": 0, "char_end": 3}]).to_parquet(
        tmp_path / "chunks.parquet")
    with pytest.raises(LongdocError, match="the train split has no labels"):
        load_docs(tmp_path)
