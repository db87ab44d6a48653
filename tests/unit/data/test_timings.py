"""Run timings charge the driver's CPU to the innermost phase and keep worker task times per worker."""
from llamaops.platform.data.timings import TaskTime, balanced_makespan, collecting, driver_phase, record_tasks, timed


def spin(seconds: float) -> float:
    import time

    end = time.process_time() + seconds
    while time.process_time() < end:
        pass
    return seconds


def test_nested_phases_are_charged_once_to_the_innermost():
    with collecting() as timings:
        with driver_phase("outer"):
            spin(0.02)
            with driver_phase("inner"):
                spin(0.05)
    assert timings.driver_cpu_s["inner"] >= 0.05 and 0.02 <= timings.driver_cpu_s["outer"] < 0.05
    assert abs(sum(timings.driver_cpu_s.values()) - timings.summary()["driver_cpu_s"]) < 1e-9


def test_task_times_sum_per_worker_and_give_the_serial_fraction():
    result, timing = timed("shuffle_map", spin, 0.01)
    assert result == 0.01 and timing.cpu_s >= 0.01 and timing.kind == "shuffle_map"
    record_tasks([timing])  # outside collecting(): dropped
    with collecting() as timings:
        with driver_phase("read"):
            spin(0.01)
        record_tasks([TaskTime("document_steps", 1, 2.0, 2.5), TaskTime("shuffle_map", 2, 1.0, 1.0)])
        record_tasks([TaskTime("shuffle_reduce", 1, 1.0, 1.0)])  # a later stage
    summary = timings.summary()
    assert summary["worker_processes"] == 2 and summary["task_cpu_s_sum"] == 4.0 and summary["stages"] == 2
    assert summary["task_cpu_s_max_worker"] == 3.0
    assert summary["task_cpu_s_balanced_2_workers"] == 2.0 + 1.0  # 2.0 | 1.0 side by side, then 1.0
    assert summary["task_cpu_s_by_kind"] == {"document_steps": 2.0, "shuffle_map": 1.0, "shuffle_reduce": 1.0}
    serial = summary["driver_cpu_s"]
    assert abs(summary["serial_fraction"] - serial / (serial + 4.0)) < 1e-9


def test_balanced_makespan_places_the_longest_tasks_first():
    assert balanced_makespan([3, 3, 2, 2, 2], 2) == 7  # 3+2+2 | 3+2
    assert balanced_makespan([1, 1, 1, 1], 2) == 2 and balanced_makespan([5], 2) == 5 and balanced_makespan([], 2) == 0
