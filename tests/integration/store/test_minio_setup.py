"""The chart's MinIO set-up Job (`python -m llamaops.platform.store.minio_setup`, as the Job runs
it) against a MinIO STAND-IN (minio_standin.py): it makes the bucket and one user per component
with that component's policy, again on every upgrade without harm, and refuses bad input in one line."""
import os
import subprocess
import sys

import pytest

from llamaops.platform.store.s3_access import COMPONENTS, component_policy, policy_name

from .minio_standin import start_minio_standin

KEYS = {"pipelines": ("llamaops-pipelines", "p" * 32), "mlflow": ("llamaops-mlflow", "m" * 32),
        "reader": ("llamaops-reader", "r" * 32)}


@pytest.fixture
def minio():
    server, state, endpoint = start_minio_standin("llamaops-root", "root-password-0123456789")
    yield state, endpoint
    server.shutdown()
    server.server_close()


def _job_env(endpoint: str, keys=KEYS) -> dict[str, str]:
    env = {"PATH": os.environ["PATH"], "LLAMAOPS_S3_ENDPOINT": endpoint, "LLAMAOPS_S3_BUCKET": "llamaops",
           "LLAMAOPS_MLFLOW_PREFIX": "mlflow", "AWS_ACCESS_KEY_ID": "llamaops-root",
           "AWS_SECRET_ACCESS_KEY": "root-password-0123456789"}
    for component, (access, secret) in keys.items():
        env[f"LLAMAOPS_S3_{component.upper()}_ACCESS_KEY"] = access
        env[f"LLAMAOPS_S3_{component.upper()}_SECRET_KEY"] = secret
    return env


def _run_job(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llamaops.platform.store.minio_setup"], env=env,
                          capture_output=True, text=True, timeout=120)


def test_makes_the_bucket_and_a_scoped_user_per_component_and_reruns_harmlessly(minio):
    state, endpoint = minio
    for _ in range(2):  # install, then upgrade
        out = _run_job(_job_env(endpoint))
        assert out.returncode == 0, out.stderr
        assert state.buckets == {"llamaops"}
        assert state.users == dict(KEYS.values())
        assert state.user_policy == {KEYS[c][0]: policy_name(c) for c in COMPONENTS}
        assert state.policies == {policy_name(c): component_policy(c, "llamaops", "mlflow") for c in COMPONENTS}
    assert "root-password" not in out.stdout + out.stderr and "p" * 32 not in out.stdout + out.stderr


@pytest.mark.parametrize("change, line", [
    (lambda env: env.pop("LLAMAOPS_S3_READER_SECRET_KEY"),
     "error: minio setup needs LLAMAOPS_S3_READER_SECRET_KEY; the chart's hook Job sets them from the Secrets"),
    (lambda env: env.update(LLAMAOPS_S3_READER_ACCESS_KEY="llamaops-mlflow"),
     "error: minio setup: the components share an access key; give each its own Secret"),
])
def test_bad_input_is_one_line_and_changes_nothing(minio, change, line):
    state, endpoint = minio
    env = _job_env(endpoint)
    change(env)
    out = _run_job(env)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [line]
    assert not state.users and not state.policies and not state.buckets


def test_a_wrong_root_key_fails_in_one_line(minio):
    state, endpoint = minio
    env = _job_env(endpoint) | {"AWS_ACCESS_KEY_ID": "someone-else"}
    out = _run_job(env)
    assert out.returncode == 1 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert out.stderr.startswith(f"error: MinIO at {endpoint} refused the setup")
    assert not state.users
