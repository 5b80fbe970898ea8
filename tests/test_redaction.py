"""No credential leaves the machine it was given on: one redaction rule for every URL form, at every boundary.

A credential rides in a URL as its userinfo (``user:password@``, a token alone ``token@``, ``:password@``)
or in its query (``token=``, ``access_token=``, ``sig=``, ``X-Amz-Signature=``...). Whatever the run writes
(model-version tags, run params and tags, summaries, logs, error messages, compiled YAML) shows the URL with
``***`` in their place, scheme, host and path still readable; a compiled pipeline never holds one at all.

The end-to-end check pulls a corpus from a real git + DVC repository served over HTTP (dulwich's smart-HTTP
server) by a ``dvc://`` reference carrying a token in both places, registers the baseline in a SQLite MLflow
store and reads every byte the run wrote.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from longdoc.config.params import load_params
from longdoc.errors import LongdocError
from longdoc.registry.tracking import FROM_ENVIRONMENT, check_tracking_uri, redact
from tests.conftest import ROOT, cli, set_args
from tests.test_dvc_remote import data_repo  # noqa: F401  (the fixture: a git + DVC repository, pushed)

LOWER = "abcdefghijklmnopqrstuvwxyz0123456789"
SCHEMES = ["https", "http", "git", "s3", "postgresql", "postgresql+psycopg2", "mysql+pymysql", "mssql+pyodbc",
           "redis", "ftp"]
# Characters a userinfo may hold (RFC 3986 unreserved, sub-delims, ':', percent-escapes) and an unescaped '@'.
USERINFO_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~!$&'()*+,;=%:@"
QUERY_VALUE_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~%+/=:,;!$()*@"
SECRET_KEYS = ["token", "access_token", "Token", "private_token", "password", "passwd", "sig", "signature",
               "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token", "X-Goog-Signature", "api_key",
               "apikey", "key", "client_secret", "auth", "refresh_token"]

hosts = st.one_of(st.lists(st.text(LOWER, min_size=1, max_size=8), min_size=1, max_size=3).map(".".join),
                  st.tuples(*[st.integers(0, 255)] * 4).map(lambda ip: ".".join(map(str, ip))))
ports = st.one_of(st.just(""), st.integers(1, 65535).map(lambda port: f":{port}"))
paths = st.lists(st.text(LOWER + "-._~", min_size=1, max_size=8), max_size=3).map(
    lambda parts: "".join(f"/{p}" for p in parts))
# A secret starts with an upper-case marker that no scheme, host, path or kept query value holds.
secrets_in_userinfo = st.text(USERINFO_CHARS, min_size=1, max_size=20).map(lambda s: f"ZQ{s}")
secrets_in_query = st.text(QUERY_VALUE_CHARS, min_size=1, max_size=20).map(lambda s: f"ZQ{s}")
userinfos = st.one_of(
    secrets_in_userinfo.map(lambda s: (s, s)),  # a token alone: https://TOKEN@host
    st.tuples(st.text(LOWER, min_size=1, max_size=8), secrets_in_userinfo).map(lambda u: (f"{u[0]}:{u[1]}", u[1])),
    secrets_in_userinfo.map(lambda s: (f":{s}", s)),  # a password without a user
    secrets_in_userinfo.map(lambda s: (f"{s}:x-oauth-basic", s)),  # the token as the user
)
kept_query = st.lists(st.tuples(st.sampled_from(["rev", "remote", "region", "sv", "X-Amz-Date"]),
                                st.text(LOWER, min_size=1, max_size=6)), max_size=2).map(
    lambda pairs: [f"{k}={v}" for k, v in pairs])
wrappers = st.sampled_from(["{}", "dvc://{}?rev=v1#data/corpus.jsonl", "DVC reference dvc://{}#x: cannot be reached",
                            "error: MLflow tracking server {} answers with HTTP 503", "'{}'", '{{"uri": "{}"}}',
                            "corpus {} (DVC md5 abc)"])


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(SCHEMES), userinfo=userinfos, host=hosts, port=ports, path=paths, wrapper=wrappers)
def test_a_userinfo_of_any_shape_is_redacted_and_the_rest_stays_readable(scheme, userinfo, host, port, path,
                                                                         wrapper):
    info, secret = userinfo
    text = wrapper.format(f"{scheme}://{info}@{host}{port}{path}")
    shown = redact(text)
    assert secret not in shown
    assert shown == wrapper.format(f"{scheme}://***@{host}{port}{path}")  # scheme, host, port and path as they were
    from longdoc.redaction import has_credential

    assert has_credential(text) and not has_credential(shown)
    assert redact(shown) == shown


@settings(max_examples=300, deadline=None)
@given(scheme=st.sampled_from(SCHEMES), host=hosts, path=paths, before=kept_query, after=kept_query,
       key=st.sampled_from(SECRET_KEYS), secret=secrets_in_query, wrapper=wrappers)
def test_a_secret_in_the_query_is_redacted_and_the_other_parameters_stay(scheme, host, path, before, after, key,
                                                                        secret, wrapper):
    def url(value: str) -> str:
        return f"{scheme}://{host}{path}?" + "&".join([*before, f"{key}={value}", *after])

    text = wrapper.format(url(secret))
    shown = redact(text)
    assert secret not in shown
    assert shown == wrapper.format(url("***"))
    from longdoc.redaction import has_credential

    assert has_credential(text) and not has_credential(shown)


@pytest.mark.parametrize("text", [
    "https://github.com/acme/longdoc.git",
    "dvc://https://git.example/acme/longdoc.git?rev=v1.0#data/corpus.jsonl",
    "dvc://git@git.example:acme/longdoc.git?rev=3f2c1e0&remote=store#data/corpus.jsonl",  # ssh's user, no secret
    "ssh://git@github.com/acme/longdoc.git",
    "git+ssh://git@github.com/acme/longdoc.git",
    "dvc:///srv/git/longdoc?rev=main#data",
    "sqlite:////tmp/mlruns.db",
    "file:///tmp/corpus.jsonl",
    "http://mlflow.svc:5000",
    "env:MLFLOW_TRACKING_URI",
    "mail me@example.org, or see https://example.org/a@b",  # an '@' in a path is no userinfo
    "https://s3.example/b/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Date=20240101T000000Z&X-Amz-Signature=***",
    '{"tracking_uri":"http://mlflow.svc:5000","owner":"me@example.org"}',  # compact JSON: no URL spans a quote
])
def test_text_without_a_credential_is_left_alone(text):
    assert redact(text) == text
    from longdoc.redaction import has_credential

    assert not has_credential(text)


def test_ssh_keeps_its_user_but_not_a_password():
    assert redact("ssh://git:hunter2@github.com/acme/x.git") == "ssh://***@github.com/acme/x.git"


def test_every_error_message_is_redacted_where_it_is_made():
    err = LongdocError("cannot open postgresql+psycopg2://mlflow:PWleak@db:5432/mlflow", "https://TOKleak@h/x")
    assert "PWleak" not in str(err) and "TOKleak" not in str(err)
    assert "postgresql+psycopg2://***@db:5432/mlflow" in str(err)


@pytest.mark.parametrize("uri", ["postgresql+psycopg2://mlflow:PWleak@127.0.0.1:1/mlflow",
                                 "mongodb+srv://mlflow:PWleak@db.example/mlflow",
                                 "oracle://TOKleak@db.example/mlflow"])
def test_the_tracking_check_never_prints_the_password(uri):
    """A database URI of any driver (``dialect+driver``) is MLflow's to open; an unknown scheme is refused by name."""
    from importlib.util import find_spec

    scheme = uri.split(":")[0]
    if scheme == "postgresql+psycopg2" and find_spec("psycopg2") is not None:
        check_tracking_uri(uri)  # a database MLflow opens, not an unsupported scheme
        return
    with pytest.raises(LongdocError) as err:  # its driver missing (psycopg 3 is this project's), or a foreign scheme
        check_tracking_uri(uri)
    assert "leak" not in str(err.value) and f"{scheme}://***@" in str(err.value)
    assert ("unsupported" not in str(err.value)) == (scheme == "postgresql+psycopg2")


CREDENTIAL_REFERENCES = [
    "dvc://https://bot:PWleak@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl",
    "dvc://https://TOKleak@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl",
    "dvc://https://git.example/acme/longdoc.git?access_token=TOKleak?rev=v1#data/corpus.jsonl",
    "dvc://https://:PWleak@git.example/acme/longdoc.git?rev=v1#data/corpus.jsonl",
]


@pytest.mark.parametrize("reference", CREDENTIAL_REFERENCES)
def test_the_cluster_check_refuses_a_credential_of_any_form(reference):
    from pipelines.runner import check_portable

    with pytest.raises(LongdocError, match="corpus_path holds a URL with a password or other credential") as err:
        check_portable({"corpus_path": reference})
    assert "leak" not in str(err.value)


def test_the_local_target_takes_a_tracking_uri_with_credentials_from_the_environment(monkeypatch):
    """The compiled YAML names the variable; the local run's steps inherit it, as a pod gets it from its Secret."""
    from pipelines.runner import local_arguments

    params = load_params(ROOT / "params.yaml")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://user:PWleak@mlflow.example:5000")
    assert json.loads(local_arguments(params)["params"])["registry"]["tracking_uri"] == FROM_ENVIRONMENT
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.example:5000")  # nothing secret: kept as resolved
    assert json.loads(local_arguments(params)["params"])["registry"]["tracking_uri"] == "http://mlflow.example:5000"


# --- end to end: every artifact, tag, parameter, log and YAML a run writes ---

TOKEN, QUERY_TOKEN, PASSWORD = "tokUSERINFOleak", "tokQUERYleak", "pwTRACKINGleak"
SECRETS = (TOKEN, QUERY_TOKEN, PASSWORD)


@pytest.fixture(scope="module")
def git_server(data_repo):  # noqa: F811
    """The data repository served over smart HTTP at /acme/data.git, as a git host would; it asks for no login."""
    from wsgiref.simple_server import WSGIRequestHandler, make_server

    from dulwich.repo import Repo
    from dulwich.server import DictBackend
    from dulwich.web import make_wsgi_chain

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args) -> None:
            pass

    repo, _ = data_repo
    server = make_server("127.0.0.1", 0, make_wsgi_chain(DictBackend({"/acme/data.git": Repo(str(repo))})),
                         handler_class=Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"127.0.0.1:{server.server_port}", repo
    server.shutdown()
    server.server_close()


def _leaks(folder: Path, outputs: list[str]) -> list[str]:
    """Where any secret shows: every file under ``folder`` (databases included, as bytes) and every output."""
    found = [f"{path}: {s}" for path in folder.rglob("*") if path.is_file()
             for s in SECRETS if s.encode() in path.read_bytes()]
    return found + [f"output {i}: {s}" for i, text in enumerate(outputs) for s in SECRETS if s in text]


def test_a_failed_pull_leaves_no_clone_with_its_token(tmp_path, monkeypatch):
    """DVC clones the repository into the temp folder with the token in .git/config; pull or no pull, it goes."""
    import tempfile

    from longdoc.config.dvc_reference import parse_reference
    from longdoc.data.dvc_source import fetch

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    ref = parse_reference(f"dvc://https://{TOKEN}@127.0.0.1:9/acme/longdoc.git?rev=v1#data/corpus.jsonl")
    with pytest.raises(LongdocError, match="cannot be reached") as err:
        fetch(ref, tmp_path / "pulled")
    assert _leaks(tmp_path, [str(err.value)]) == [] and list(scratch.iterdir()) == []


@pytest.mark.slow
def test_a_run_from_a_reference_with_tokens_writes_them_nowhere(git_server, tmp_path, stores):
    import mlflow

    host, repo = git_server
    env = {**stores, "TMPDIR": str(tmp_path / "tmp")}  # DVC's clones too are read below
    (tmp_path / "tmp").mkdir()
    reference = f"dvc://http://{TOKEN}@{host}/acme/data.git?access_token={QUERY_TOKEN}?rev=v1#data/corpus.jsonl"
    settings_ = set_args({"data.corpus": reference, "registry.tracking_uri":  # logged as a run param, never used:
                          f"http://mlflow:{PASSWORD}@mlflow.example:5000",  # MLFLOW_TRACKING_URI wins
                          "evaluate.folds": 0})  # validate, then baseline: no crossfit stage between them
    validated = cli("validate", "--params", str(ROOT / "params.yaml"), *settings_, "--out", str(tmp_path / "v"),
                    env=env, cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    registered = cli("baseline", "--params", str(ROOT / "params.yaml"), *settings_, "--corpus", str(tmp_path / "v"),
                     "--out", str(tmp_path / "b"), env=env, cwd=tmp_path)
    assert registered.returncode == 0, registered.stdout + registered.stderr

    assert _leaks(tmp_path, [validated.stdout, validated.stderr, registered.stdout, registered.stderr]) == []
    # what was recorded is still the reference, readable and pinned: only the secrets are gone
    commit = json.loads((tmp_path / "v" / "summary.json").read_text())["data_source"]["commit"]
    shown = f"dvc://http://***@{host}/acme/data.git?access_token=***?rev=v1#data/corpus.jsonl"
    client = mlflow.MlflowClient(stores["MLFLOW_TRACKING_URI"], stores["MLFLOW_TRACKING_URI"])
    run = json.loads((tmp_path / "b" / "run.json").read_text())
    version = client.get_model_version(run["model_name"], run["version"])
    assert version.tags["data_source"] == shown.replace("rev=v1", f"rev={commit}")
    params = client.get_run(run["run_id"]).data.params
    assert params["data.corpus"] == shown
    assert params["registry.tracking_uri"] == "http://***@mlflow.example:5000"


@pytest.mark.slow
def test_a_refused_pull_names_the_reference_without_its_tokens(git_server, tmp_path, stores):
    host, _ = git_server
    (tmp_path / "tmp").mkdir()
    reference = f"dvc://http://{TOKEN}@{host}/acme/data.git?access_token={QUERY_TOKEN}?rev=v9#data/corpus.jsonl"
    done = cli("validate", "--params", str(ROOT / "params.yaml"), "--set", f"data.corpus={reference}",
               "--out", str(tmp_path / "v"), env={**stores, "TMPDIR": str(tmp_path / "tmp")}, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    # the reference is named, and so is the URL in the git client's own error, both without their secrets
    shown = f"dvc://http://***@{host}/acme/data.git?access_token=***?rev=v9#data/corpus.jsonl"
    assert done.stderr.startswith(f"error: DVC reference {shown}: ") and "Traceback" not in done.stderr
    assert _leaks(tmp_path, [done.stdout, done.stderr]) == []


@pytest.mark.slow
@pytest.mark.parametrize("uri", ["postgresql+psycopg2://mlflow:pwTRACKINGleak@127.0.0.1:1/mlflow",
                                 "mongodb://mlflow:pwTRACKINGleak@127.0.0.1:1/mlflow",
                                 "http://tokUSERINFOleak@127.0.0.1:1/?access_token=tokQUERYleak"])
def test_a_tracking_uri_that_cannot_be_used_is_named_without_its_password(tmp_path, uri):
    done = cli("models", "list", "--params", str(ROOT / "params.yaml"), env={"MLFLOW_TRACKING_URI": uri}, cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("error: "), done.stdout + done.stderr
    assert "Traceback" not in done.stderr and "://***@127.0.0.1:1/" in done.stderr
    assert _leaks(tmp_path, [done.stdout, done.stderr]) == []


@pytest.mark.slow
def test_no_compiled_pipeline_holds_a_credential(tmp_path):
    out = tmp_path / "local.yaml"
    leaky = f"http://mlflow:{PASSWORD}@mlflow.example:5000"
    done = cli("pipeline", "compile", "--out", str(out), env={"MLFLOW_TRACKING_URI": leaky})
    assert done.returncode == 0, done.stdout + done.stderr
    defaults = next(yaml.safe_load_all(out.read_text()))["root"]["inputDefinitions"]["parameters"]
    params = json.loads(defaults["params"]["defaultValue"])
    assert params["registry"]["tracking_uri"] == FROM_ENVIRONMENT  # the local run reads it from its environment
    for target in ("local", "cluster"):  # a corpus the steps could only pull with a token written into the YAML
        refused = cli("pipeline", "compile", "--target", target, "--out", str(tmp_path / f"{target}-ref.yaml"),
                      "--corpus", f"dvc://https://{TOKEN}@git.example/acme/data.git?rev=v1#data/corpus.jsonl")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert "corpus" in refused.stderr and "holds a URL with a password or other credential" in refused.stderr, \
            refused.stderr
        assert "Traceback" not in refused.stderr
        assert not (tmp_path / f"{target}-ref.yaml").exists()
    assert _leaks(tmp_path, [done.stdout, done.stderr, refused.stdout, refused.stderr]) == []
