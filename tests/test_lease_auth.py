"""The alias lease under MLflow's auth plugin: a real `mlflow server --app-name basic-auth` on loopback.

Only a registered model's creator (or an admin) may delete it, so a dead lease of another user cannot be
broken; the waiter must say so at once, naming the lease and who must delete it, not wait 15 minutes.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import requests

from longdoc.errors import LongdocError
from longdoc.registry.lease import alias_lease, breaking_name, lease_name
from tests.tracking_server import BIN, _wait_http, free_port

ADMIN = ("admin", "admin-secret-for-tests-only")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("auth")
    (root / "auth.ini").write_text(f"""[mlflow]
default_permission = READ
database_uri = sqlite:///{root / 'auth.db'}
admin_username = {ADMIN[0]}
admin_password = {ADMIN[1]}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
""")
    port = free_port()
    env = {**os.environ, "MLFLOW_AUTH_CONFIG_PATH": str(root / "auth.ini"), "MLFLOW_FLASK_SERVER_SECRET_KEY": "tests"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with open(root / "server.log", "w") as log:
        proc = subprocess.Popen([str(BIN / "mlflow"), "server", "--app-name", "basic-auth", "--backend-store-uri",
                                 f"sqlite:///{root / 'mlruns.db'}", "--host", "127.0.0.1", "--port", str(port),
                                 "--workers", "1"], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_http(f"{url}/health", 120, proc)
        for user in ("alice", "bob"):
            made = requests.post(f"{url}/api/2.0/mlflow/users/create", auth=ADMIN, timeout=10,
                                 json={"username": user, "password": f"{user}-password-123"})
            assert made.status_code == 200, made.text
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _client_as(url: str, user: str, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", f"{user}-password-123")
    return mlflow.MlflowClient(url, url)


def test_a_dead_lease_of_another_user_is_reported_at_once_not_waited_for(auth_server, monkeypatch):
    alice = _client_as(auth_server, "alice", monkeypatch)
    alice.create_registered_model("longdoc-task")
    lease = lease_name("longdoc-task", "champion")
    alice.create_registered_model(lease, tags={"token": "dead", "holder": "alice"})  # alice's pod died holding it
    bob = _client_as(auth_server, "bob", monkeypatch)
    started = time.monotonic()
    with pytest.raises(LongdocError) as refused, \
            alias_lease(bob, "longdoc-task", "champion", "bob", wait_seconds=60, lease_seconds=1.0):
        pass
    assert time.monotonic() - started < 20  # a lease of silence and a few requests, not wait_seconds
    message = str(refused.value)
    assert f"the lease {lease!r} of a dead holder (alice) cannot be deleted with your rights" in message
    assert f"{breaking_name('longdoc-task', 'champion', 'dead')!r}" in message
    assert bob.get_registered_model(lease).tags["token"] == "dead"  # nothing was half-broken
