"""The run report's figures and HTML page from synthetic data (no MLflow)."""
import io
import re

import pytest
from PIL import Image

from llamaops.platform.tracking import report_figures as figures
from llamaops.platform.tracking.run_report import NEEDLES, RunData, StageRecord, build_figures, render_html

SIZE = (1000, 400)  # 10 x 4 in at 100 dpi


def _size(png: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    return image.size


def _data_steps() -> list[dict]:
    def step(name: str, documents_in: int, documents_out: int, tokens: int, removed: dict | None = None) -> dict:
        return {"step": name, "in": {"documents": documents_in, "chars": 0, "tokens": 0},
                "out": {"documents": documents_out, "chars": 0, "tokens": tokens},
                "removed": {reason: {"documents": n} for reason, n in (removed or {}).items()}}

    return [step("read", 10, 10, 0), step("clean", 10, 8, 0, {"empty": 2}), step("tokenize", 8, 8, 900),
            step("near_dedup", 8, 7, 800, {"near_duplicate": 1})]


def _verdicts() -> list[dict]:
    return [{"metric": "validation_perplexity", "value": 900.0, "comparison": "<=", "threshold": 5000.0, "passed": True},
            {"metric": "violation_rate", "value": "nan", "comparison": "<=", "threshold": 0.5, "passed": False}]


def test_loss_and_lr_across_stages_is_a_png_of_the_set_size() -> None:
    curves = [figures.StageCurve("pretrain", [(1, 9.0), (2, 8.0)], [(1, 1e-3), (2, 5e-4)]),
              figures.StageCurve("sft", [(1, 3.0), (2, 2.5)])]  # a stage without lr (LoRA) still draws
    assert _size(figures.loss_lr_png(curves)) == SIZE


def test_data_funnel_is_a_png_of_the_set_size() -> None:
    assert _size(figures.data_funnel_png(_data_steps())) == SIZE


def test_needle_grid_with_an_unmeasured_length_is_a_png_of_the_set_size() -> None:
    grid = figures.NeedleGrid([512, 1024], ["all depths"], [[0.5, None]], note="mean over depths")
    assert _size(figures.needles_png(grid)) == SIZE


def test_scorecard_with_production_and_an_unmeasured_metric_is_a_png_of_the_set_size() -> None:
    production = {"version": "3", "metrics": {"violation_rate": 0.2}}
    assert _size(figures.scorecard_png(_verdicts(), production)) == SIZE


def _stage(name: str, report: dict | None = None, metrics: dict | None = None) -> StageRecord:
    return StageRecord(name, f"id-{name}", "FINISHED", metrics or {}, report, [], [])


def _run(stages: list[StageRecord], registration: dict | None = None) -> RunData:
    return RunData("parent-id", "tiny-run", "tiny", "2026-01-01T00:00:00+00:00", stages, registration)


def test_needles_are_drawn_per_stage_length_and_absent_without_depths() -> None:
    gate = {"needle_depths": [0.0, 1.0], "stages": [{"seq_len": 512, "needle_accuracy": 0.5},
                                                     {"seq_len": 1024, "needle_accuracy": 1.0}]}
    drawn = build_figures(_run([_stage("long_context", {"gate": gate})]))[NEEDLES]
    assert isinstance(drawn, bytes) and _size(drawn) == SIZE
    without = build_figures(_run([_stage("long_context", {"gate": gate | {"needle_depths": [], "stages": [
        {"seq_len": 512, "needle_accuracy": None}]}})]))[NEEDLES]
    assert without == "The long-context stage recorded no needle results (long_context.gate.needle_depths is empty)."


REGISTRATION = {"model_name": "llamaops-tiny", "version": "4", "source_uri": "file:///m", "gate_passed": True,
                "aliases": ["candidate", "production"], "failed_thresholds": [],
                "serve_command": "llamaops serve models:/llamaops-tiny@production --host 127.0.0.1 --port 8000",
                "compared_with": None}


def test_html_is_self_contained() -> None:
    stages = [_stage("data", {"steps": _data_steps()}, {"tokens_out": 800.0}),
              _stage("eval", {"metrics": {"validation_perplexity": 900.0, "violation_rate": "nan"},
                              "gate": {"passed": False, "verdicts": _verdicts(), "failed": ["violation_rate"]}}),
              _stage("register", metrics={"model_version": 4.0})]
    data = _run(stages, REGISTRATION)
    page = render_html(data, {name: b"\x89PNG fake" for name in build_figures(data)})
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'src="([^"]*)"', page)
    assert len(sources) == 4 and all(source.startswith("data:image/png;base64,") for source in sources)
    assert "tokens_out = 800" in page and "model_version = 4" in page
    assert "Promoted to production" in page and REGISTRATION["serve_command"] in page


def test_a_section_without_data_is_one_line() -> None:
    data = _run([_stage("data", {"steps": _data_steps()})])  # no training, long context, eval or registration
    made = build_figures(data)
    assert [name for name, figure in made.items() if isinstance(figure, bytes)] == ["data_funnel.png"]
    page = render_html(data, made)
    for line in ("No stage of this run logged a training loss.",
                 "This run has no long-context stage, so no needle-in-a-haystack results.",
                 "This run has no eval report with a gate verdict.", "This run has no eval report.",
                 "This run has not registered a model."):
        assert f'<p class="absent">{line}</p>' in page
    assert page.count("<img") == 1


@pytest.mark.parametrize("value, shown", [(1812563.0, "1,812,563"), (18265.31, "18,265.3"), (0.123456, "0.1235"),
                                         ("nan", "nan")])
def test_metric_values_read_as_numbers(value: object, shown: str) -> None:
    page = render_html(_run([_stage("data", metrics={"tokens_out": value})]), {})
    assert f"tokens_out = {shown}" in page
