"""What `pipeline submit --local` shows of a run: plain and short off a terminal, a live table on one."""
import io

from llamaops.cli.run_display import LiveView, PlainView, headline, progress_text
from llamaops.pipelines.events import StepEvent


def _progress(done: int, total: int = 48) -> StepEvent:
    return StepEvent("pretrain", "progress", 0.0, {"done": done, "total": total, "loss": 7.9123,
                                                    "tokens_per_second": 1234.5, "eta_s": 130.0})


def test_plain_lines_show_each_step_with_its_headline_and_progress_once_a_minute():
    clock = [0.0]
    out = io.StringIO()
    view = PlainView(out, "run r1: logs in X", clock=lambda: clock[0])
    view(StepEvent("data", "started"))
    view(StepEvent("data", "finished", 3.2, {"metrics": {"tokens_out": 12345.0}}))
    view(StepEvent("pretrain", "started"))
    for done in range(1, 13):  # one event every 10 s for two minutes
        clock[0] += 10
        view(_progress(done))
    view(StepEvent("pretrain", "failed", 125.0, {"error": "RuntimeError: out of memory"}))
    lines = [line.split("] ", 1)[-1] for line in out.getvalue().splitlines()]
    assert lines == ["run r1: logs in X", "data ...", "data finished in 3.2s (tokens 12,345)", "pretrain ...",
                     "pretrain 1/48 loss 7.912 1,234 tok/s ETA 2m10s", "pretrain 7/48 loss 7.912 1,234 tok/s ETA 2m10s",
                     "pretrain failed in 125.0s: RuntimeError: out of memory"]


def test_headlines_and_the_last_progress_line():
    assert headline({"metrics": {"final_loss": 7.25, "tokens_per_second": 900.0}}) == "loss 7.25"
    assert headline({"metrics": {"validation_perplexity": 812.3}}) == "val ppl 812.3"
    assert headline({"version": "3", "aliases": ["candidate"]}) == "version 3"
    assert headline({"output": "file:///x"}) == ""
    assert progress_text({"done": 48, "total": 48, "loss": 7.0}) == "48/48 loss 7.000"  # no ETA at the end


def test_the_live_table_starts_at_the_first_event_and_shows_running_steps_progress():
    out = io.StringIO()
    view = LiveView(out, "run r2")
    view.close()
    assert out.getvalue() == ""  # a run refused before its first step prints only its error
    view = LiveView(out, "run r2")
    view(StepEvent("data", "started"))
    view(StepEvent("data", "finished", 3.2, {"metrics": {"tokens_out": 12345.0}}))
    view(StepEvent("pretrain", "started"))
    view(_progress(12))
    view.close()
    final = out.getvalue()
    assert "run r2" in final and "tokens 12,345" in final and "12/48 loss 7.912 1,234 tok/s ETA 2m10s" in final


def test_verbose_streams_every_log_line_as_it_comes_prefixed_with_its_step(tmp_path):
    from llamaops.cli.run_display import LogTail

    (tmp_path / "steps").mkdir()
    (tmp_path / "steps.log").write_text("==== run r3\n")
    (tmp_path / "steps" / "pretrain.log").write_text("step 1 loss 11.9\nstep 2 lo")  # a line being written
    out = io.StringIO()
    tail = LogTail(out, tmp_path, every_s=3600)  # polled by hand below
    tail.poll()
    with (tmp_path / "steps" / "pretrain.log").open("a") as file:
        file.write("ss 10.2\n")
    tail.close()
    assert out.getvalue().splitlines() == ["==== run r3", "pretrain | step 1 loss 11.9", "pretrain | step 2 loss 10.2"]
