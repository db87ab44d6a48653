"""End to end on a kind cluster: `llamaops cluster up` (kind + KubeRay + Kubeflow Pipelines + the
chart), then `llamaops pipeline submit tiny --host` through a port-forward to the KFP API.

Runs only where Docker and kind work and images can be pulled; on the CI machines no image can
be pulled, so it is skipped there with that reason."""
import shutil
import socket
import subprocess
import time

import pytest
from typer.testing import CliRunner

from llamaops.cli.main import app
from llamaops.cluster import kind

NAME = "llamaops-e2e"


def _docker_works() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True, timeout=30).returncode == 0


pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(kind.missing_tools()), reason=f"needs {', '.join(kind.REQUIRED_TOOLS)} on PATH "
                       "(kind cannot run on these machines: no image can be pulled)"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cluster_up_installs_everything_and_the_tiny_pipeline_is_accepted():
    if not _docker_works():
        pytest.skip("docker is installed but its daemon does not answer")
    runner = CliRunner()
    try:
        up = runner.invoke(app, ["cluster", "up", "--name", NAME])
        assert up.exit_code == 0, up.output
        port = _free_port()
        forward = subprocess.Popen(["kubectl", "--context", f"kind-{NAME}", "-n", "kubeflow", "port-forward",
                                    "svc/ml-pipeline-ui", f"{port}:80"], stdout=subprocess.DEVNULL)
        try:
            time.sleep(3)
            submit = runner.invoke(app, ["pipeline", "submit", "tiny", "--host", f"http://127.0.0.1:{port}"])
            assert submit.exit_code == 0, submit.output
            run_id = submit.stdout.split()[1]
            status = runner.invoke(app, ["pipeline", "status", run_id, "--host", f"http://127.0.0.1:{port}"])
            assert status.exit_code == 0 and run_id in status.stdout
        finally:
            forward.terminate()
            forward.wait()
    finally:
        subprocess.run(["kind", "delete", "cluster", "--name", NAME], check=False)
