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


def test_a_failed_job_raises_with_kuberays_message(fake_clock):
    with pytest.raises(RayJobFailed, match="ended FAILED: worker 3 OOMKilled"):
        wait(fake_clock, [{"jobStatus": "RUNNING"}, {"jobStatus": "FAILED", "message": "worker 3 OOMKilled"}])


def test_a_job_that_never_starts_fails_after_the_start_timeout(fake_clock):
    with pytest.raises(RayJobFailed, match="has not started after 100 s .*'Initializing'.*node pool"):
        wait(fake_clock, [{"jobDeploymentStatus": "Initializing"}], start_timeout=100)


def test_a_running_job_is_not_cut_by_the_start_timeout_but_by_the_opt_in_run_timeout(fake_clock):
    api = wait(fake_clock, [{"jobStatus": "RUNNING"}] * 30 + [{"jobStatus": "SUCCEEDED"}], start_timeout=100)
    assert api.polls == 31
    with pytest.raises(RayJobFailed, match="ran past LLAMAOPS_RAYJOB_RUN_TIMEOUT_S=50 s"):
        wait(fake_clock, [{"jobStatus": "RUNNING"}], start_timeout=100, run_timeout=50)
