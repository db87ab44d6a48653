"""The chart's MLflow asks every client for its account: the bundled server runs MLflow's basic-auth
app with the account as its admin, and every pod that talks to it gets the account by reference.
The start command is run here for real (with a stand-in `mlflow` that reads the auth config the way
MLflow does); the server itself answering 401/200 is checked by the chart's `helm test` on the pod tier."""
import base64
import json
import os
import stat
import subprocess
import sys

import pytest
from chart_render import render

pytestmark = pytest.mark.cluster

SERVED = {"pipelines": {"namespaces": ["team-a", "team-b"]}}


def _container(r, kind: str, name: str) -> dict:
    return r.get(kind, name)["spec"]["template"]["spec"]["containers"][0]


def _env(container: dict) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


def test_bundled_mlflow_takes_only_the_account_every_served_namespace_holds(helm):
    r = render(helm, "ml", "platform", SERVED)
    account = "ml-llamaops-mlflow-auth"
    secrets = [r.get("Secret", account, ns) for ns in ("platform", "team-a", "team-b")]
    assert {s["data"]["password"] for s in secrets} == {secrets[0]["data"]["password"]}  # one account
    password = base64.b64decode(secrets[0]["data"]["password"]).decode()
    assert len(password) >= 32 and base64.b64decode(secrets[0]["data"]["username"]) == b"llamaops"
    # The server's CSRF key stays with the server: not copied into the served namespaces.
    r.get("Secret", "ml-llamaops-mlflow-server", "platform")
    assert "ml-llamaops-mlflow-server" not in r.objects("team-a").get("Secret", set())

    server = _container(r, "Deployment", "ml-llamaops-mlflow")
    assert "--app-name basic-auth" in server["args"][0]
    env = _env(server)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": account, "key": "password"}
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "ml-llamaops-mlflow-server"
    # Pipelines (step pods and RayJobs, through the contract), the operator's servers and helm test use it.
    for ns in ("platform", "team-a", "team-b"):
        assert r.contract(ns).mlflowSecret.name == account
    assert _env(_container(r, "Deployment", "ml-llamaops-operator"))["LLAMAOPS_MLFLOW_ACCOUNT"]["value"] == account
    hook = r.get("Pod", "ml-llamaops-test-platform")["spec"]["containers"][0]
    assert _env(hook)["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == account
    # By reference only: the password is nowhere but in the Secrets' data.
    plain = json.dumps([d for d in r.docs if d["kind"] != "Secret"])
    assert password not in plain and secrets[0]["data"]["password"] not in plain


def test_the_start_command_writes_an_auth_config_mlflow_reads(helm, tmp_path):
    """Run the container's shell command with a stand-in `mlflow` on PATH that reads the config with
    MLflow's own reader: anonymous users get no permission, the users live in the tracking database
    (a URI with `%` survives ConfigParser), the admin comes from the Secret's environment."""
    r = render(helm, "ml", "platform")
    server = _container(r, "Deployment", "ml-llamaops-mlflow")
    assert server["command"] == ["sh", "-c"]
    fake = tmp_path / "bin" / "mlflow"
    fake.parent.mkdir()
    fake.write_text(f"#!{sys.executable}\n"
                    "import json, sys\n"
                    "from mlflow.server.auth.config import read_auth_config\n"
                    "print(json.dumps({'argv': sys.argv[1:], 'config': read_auth_config()._asdict()}))\n")
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    auth_ini = tmp_path / "basic_auth.ini"
    db_uri = "postgresql://mlflow:p%40ss%25w0rd@db:5432/mlflow"
    (fake.parent / "python3").symlink_to(sys.executable)  # the image's tools: a shell, Python, mlflow
    env = {"PATH": str(fake.parent), "DB_URI": db_uri, "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
           "MLFLOW_AUTH_ADMIN_USERNAME": "llamaops", "MLFLOW_AUTH_ADMIN_PASSWORD": "from-the-secret-0123456789",
           "HOME": str(tmp_path), "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    out = subprocess.run(["/bin/sh", "-c", server["args"][0]], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    started = json.loads(out.stdout.strip().splitlines()[-1])
    assert started["argv"][:3] == ["server", "--app-name", "basic-auth"]
    assert started["argv"][started["argv"].index("--backend-store-uri") + 1] == db_uri
    config = started["config"]
    assert config["default_permission"] == "NO_PERMISSIONS"
    assert config["database_uri"] == db_uri
    assert (config["admin_username"], config["admin_password"]) == ("llamaops", "from-the-secret-0123456789")
    assert "from-the-secret" not in auth_ini.read_text()  # the password stays in the environment


def test_a_users_account_secret_is_the_admin_and_none_is_generated(helm):
    r = render(helm, "ml", "platform", {**SERVED, "mlflow": {"credentialsSecret": "mlflow-admin"}})
    assert not [d for d in r.docs if d["kind"] == "Secret" and d["metadata"]["name"].endswith("mlflow-auth")]
    env = _env(_container(r, "Deployment", "ml-llamaops-mlflow"))
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"]["valueFrom"]["secretKeyRef"] == {"name": "mlflow-admin", "key": "username"}
    assert {r.contract(ns).mlflowSecret.name for ns in ("platform", "team-a", "team-b")} == {"mlflow-admin"}


def test_an_external_server_without_credentials_gets_none(helm):
    r = render(helm, "ml", "platform", {"mlflow": {"enabled": False, "externalUri": "https://mlflow.example.com"}})
    assert r.contract().mlflowSecret is None
    assert "LLAMAOPS_MLFLOW_ACCOUNT" not in _env(_container(r, "Deployment", "ml-llamaops-operator"))


def test_mlflow_answers_its_services_names_and_refuses_other_hosts(helm):
    """MLflow refuses a request whose Host it does not know (DNS rebinding); judged by MLflow's own
    matcher on the list the chart gives it."""
    from mlflow.server.security_utils import is_allowed_host_header

    r = render(helm, "ml", "platform", {"mlflow": {"allowedHosts": ["mlflow.example.com"]}})
    allowed = _env(_container(r, "Deployment", "ml-llamaops-mlflow"))["MLFLOW_SERVER_ALLOWED_HOSTS"]["value"].split(",")
    # The URI pipeline pods use is one of them.
    tracking = r.get("ConfigMap", "ml-llamaops-platform")["data"]["MLFLOW_TRACKING_URI"]
    assert tracking == "http://ml-llamaops-mlflow.platform.svc:5000"
    for host in ("ml-llamaops-mlflow.platform.svc:5000", "ml-llamaops-mlflow.platform.svc.cluster.local:5000",
                 "ml-llamaops-mlflow:5000", "10.96.4.2:5000", "localhost:5000", "mlflow.example.com"):
        assert is_allowed_host_header(allowed, host), host
    for host in ("attacker.example.net", "evil.com:5000", "198.51.100.7:5000",
                 "ml-llamaops-mlflow.platform.svc.attacker.net:5000"):
        assert not is_allowed_host_header(allowed, host), host
