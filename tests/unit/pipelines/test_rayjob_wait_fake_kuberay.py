"""Waiting on a RayJob. KubeRay's controller cannot run here, so a fake API object plays the
status sequence it would write; the clock is simulated."""
import pytest

from llamaops.pipelines.rayjob_launch import RayJobFailed, wait_for_rayjob

MANIFEST = {"metadata": {"name": "pretrain-abc", "namespace": "ml"}}


class FakeKubeRay:
    def __init__(self, statuses):
        self.statuses, self.polls = list(statuses), 0

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural, name) == ("ray.io", "v1", "rayjobs", "pretrain-abc")
        status = self.statuses[min(self.polls, len(self.statuses) - 1)]
        self.polls += 1
        return {"status": status}


def wait(clock, statuses, start_timeout=100.0, run_timeout=None):
    api = FakeKubeRay(statuses)
    wait_for_rayjob(api, MANIFEST, start_timeout, run_timeout, poll_s=10, clock=clock, sleep=clock.sleep)
    return api


def test_returns_when_the_job_succeeds(fake_clock):
    api = wait(fake_clock, [{}, {"jobStatus": "PENDING"}, {"jobStatus": "RUNNING"}, {"jobStatus": "SUCCEEDED"}])
    assert api.polls == 4


RUNNING = {"jobDeploymentStatus": "Running", "jobStatus": "RUNNING"}


def test_a_failed_job_raises_with_kuberays_message(fake_clock):
    with pytest.raises(RayJobFailed, match="ended FAILED: worker 3 OOMKilled$"):
        wait(fake_clock, [RUNNING, {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "message": "worker 3 OOMKilled"}])


def test_a_stopped_job_fails_the_step(fake_clock):
    with pytest.raises(RayJobFailed, match="ended STOPPED"):
        wait(fake_clock, [RUNNING, {"jobDeploymentStatus": "Complete", "jobStatus": "STOPPED"}])


def test_a_failed_attempt_that_kuberay_retries_is_waited_through(fake_clock):
    """KubeRay's sequence under a backoffLimit: the failed attempt goes to Retrying (the Ray job's
    FAILED status still shown), then a new Ray cluster starts from New."""
    retried = [RUNNING, {"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "failed": 1},
               {"jobDeploymentStatus": "", "jobStatus": "", "failed": 1},
               {"jobDeploymentStatus": "Initializing", "failed": 1}, {**RUNNING, "failed": 1},
               {"jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "failed": 1}]
    assert wait(fake_clock, retried).polls == len(retried)


def test_a_job_that_failed_every_attempt_says_how_many(fake_clock):
    last = {"jobDeploymentStatus": "Failed", "jobStatus": "FAILED", "failed": 4, "message": "exit code 1"}  # backoffLimit 3
    with pytest.raises(RayJobFailed, match="ended FAILED after 4 attempts: exit code 1$"):
        wait(fake_clock, [RUNNING, last])


def test_a_job_that_never_starts_fails_after_the_start_timeout(fake_clock):
    with pytest.raises(RayJobFailed, match="has not started after 100 s .*'Initializing'.*node pool"):
        wait(fake_clock, [{"jobDeploymentStatus": "Initializing"}], start_timeout=100)


def test_a_running_job_is_not_cut_by_the_start_timeout_but_by_the_opt_in_run_timeout(fake_clock):
    api = wait(fake_clock, [{"jobStatus": "RUNNING"}] * 30 + [{"jobStatus": "SUCCEEDED"}], start_timeout=100)
    assert api.polls == 31
    with pytest.raises(RayJobFailed, match="ran past LLAMAOPS_RAYJOB_RUN_TIMEOUT_S=50 s"):
        wait(fake_clock, [{"jobStatus": "RUNNING"}], start_timeout=100, run_timeout=50)
