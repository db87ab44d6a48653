"""The run report's figures: plain data in, PNG bytes out (matplotlib, Agg canvas).

matplotlib is imported inside each function so that importing this module (and every CLI
command that imports it) stays cheap. Figures are drawn on a bare `Figure`, not pyplot: no
global state, no GUI backend.
"""
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 10.0, 4.0, 100
PASS_COLOUR, FAIL_COLOUR, NEUTRAL_COLOUR = "#2e7d32", "#c62828", "#78909c"

Points = Sequence[tuple[int, float]]  # (step, value)


@dataclass(frozen=True)
class StageCurve:
    """One training stage's per-step figures, steps counted from 1 within the stage."""

    stage: str
    loss: Points
    lr: Points = field(default_factory=list)


@dataclass(frozen=True)
class NeedleGrid:
    """Needle accuracy per (row, context length); a row is one needle depth, or all depths together
    when only the mean over depths was recorded. None: not measured."""

    lengths: Sequence[int]
    rows: Sequence[str]
    accuracy: Sequence[Sequence[float | None]]  # [row][length]
    note: str = ""


def _figure(height_in: float = HEIGHT_IN) -> "Figure":
    from matplotlib.figure import Figure

    return Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")


def _png(figure: "Figure") -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _thinned(points: Points, limit: int = 2000) -> Points:
    """At most about `limit` evenly spaced points and the last one: a 1000-pixel-wide axis shows no
    more, and a long stage logs hundreds of thousands of steps."""
    stride = max(1, len(points) // limit)
    return [*points[:-1:stride], points[-1]] if stride > 1 else points


def loss_lr_png(curves: Sequence[StageCurve]) -> bytes:
    """Loss (top) and learning rate (bottom) of every stage on one axis of cumulative steps, in the
    order given, each stage's span marked and labelled."""
    figure = _figure()
    loss_axes, lr_axes = figure.subplots(2, 1, sharex=True, height_ratios=(2, 1))
    offset = 0
    colours = [f"C{index % 10}" for index in range(len(curves))]
    for index, (curve, colour) in enumerate(zip(curves, colours)):
        stage_steps = max((step for step, _ in (*curve.loss, *curve.lr)), default=0)
        loss, lr = _thinned(curve.loss), _thinned(curve.lr)
        if loss:
            loss_axes.plot([offset + s for s, _ in loss], [v for _, v in loss], color=colour, linewidth=1.2,
                           label=curve.stage)
        if lr:
            lr_axes.plot([offset + s for s, _ in lr], [v for _, v in lr], color=colour, linewidth=1.2)
        if offset:
            for axes in (loss_axes, lr_axes):
                axes.axvline(offset + 0.5, color="grey", linestyle=":", linewidth=0.8)
        # The stage's name over its span, on two staggered lines so short neighbours do not collide.
        loss_axes.annotate(curve.stage, xy=(offset + stage_steps / 2 + 0.5, 1.01 + 0.07 * (index % 2)),
                           xycoords=("data", "axes fraction"), ha="center", va="bottom", fontsize=8, color=colour)
        offset += stage_steps
    loss_axes.set_title("Training loss and learning rate per step, all stages", pad=24)
    loss_axes.set_ylabel("loss")
    loss_axes.grid(alpha=0.3)
    if curves:
        loss_axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)  # outside: no curve hidden
    lr_axes.set_ylabel("learning rate")
    lr_axes.set_xlabel("step (cumulative over stages)")
    lr_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
    lr_axes.grid(alpha=0.3)
    if not any(curve.lr for curve in curves):
        lr_axes.text(0.5, 0.5, "no learning rate logged", transform=lr_axes.transAxes, ha="center", va="center")
    return _png(figure)


def data_funnel_png(steps: Sequence[Mapping[str, Any]]) -> bytes:
    """The data-prep funnel from its report's `steps` ({"step", "in", "out", "removed"}): documents
    and tokens left after each step (left), documents removed per reason (right). Tokens are
    counted from tokenization on; before it they are not known and not drawn."""
    figure = _figure()
    funnel, removals = figure.subplots(1, 2, width_ratios=(3, 2))
    names = [str(step["step"]) for step in steps]
    documents = [int(step["out"]["documents"]) for step in steps]
    tokenized = _first_tokenized(steps)
    tokens = [float(step["out"]["tokens"]) if index >= tokenized else math.nan for index, step in enumerate(steps)]
    positions = range(len(steps))
    from matplotlib.ticker import EngFormatter

    funnel.bar(positions, documents, color="C0", label="documents")
    funnel.set_ylim(0, max(documents, default=1) * 1.3)  # headroom for the legend
    funnel.set_xticks(list(positions), names, rotation=45, ha="right", fontsize=8)
    funnel.set_ylabel("documents left")
    funnel.set_title("Data prep: what is left after each step")
    token_axes = funnel.twinx()
    token_axes.plot(list(positions), tokens, color="C1", marker="o", label="tokens")
    token_axes.set_ylabel("tokens left")
    token_axes.set_ylim(0, max((t for t in tokens if not math.isnan(t)), default=1.0) * 1.3)
    token_axes.yaxis.set_major_formatter(EngFormatter())
    handles = [*funnel.get_legend_handles_labels()[0], *token_axes.get_legend_handles_labels()[0]]
    funnel.legend(handles, ["documents", "tokens (from tokenization on)"], loc="upper right", fontsize=8)

    removed = _removed_by_reason(steps)
    reasons = sorted(removed, key=removed.get)
    removals.barh(range(len(reasons)), [removed[r] for r in reasons], color=FAIL_COLOUR)
    removals.set_yticks(range(len(reasons)), reasons, fontsize=8)
    removals.set_xlim(0, max(removed.values(), default=1) * 1.15)  # room for the counts
    removals.set_xlabel("documents removed")
    removals.set_title("Removed, by reason")
    for index, reason in enumerate(reasons):
        removals.annotate(f"{removed[reason]:,}", (removed[reason], index), xytext=(3, 0),
                          textcoords="offset points", va="center", fontsize=8)
    if not reasons:
        removals.text(0.5, 0.5, "nothing removed", transform=removals.transAxes, ha="center", va="center")
    return _png(figure)


def _first_tokenized(steps: Sequence[Mapping[str, Any]]) -> int:
    return next((index for index, step in enumerate(steps) if step["out"].get("tokens")), len(steps))


def _removed_by_reason(steps: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    removed: dict[str, int] = {}
    for step in steps:
        for reason, counts in step.get("removed", {}).items():
            removed[reason] = removed.get(reason, 0) + int(counts["documents"])
    return removed


def needles_png(grid: NeedleGrid) -> bytes:
    """Needle-in-a-haystack accuracy as a heatmap: context length across, depth down."""
    import numpy as np
    from matplotlib import colormaps

    figure = _figure()
    axes = figure.subplots()
    values = np.array([[math.nan if v is None else float(v) for v in row] for row in grid.accuracy], dtype=float)
    colours = colormaps["RdYlGn"].with_extremes(bad="#dddddd")  # grey: not measured
    image = axes.imshow(np.ma.masked_invalid(values), cmap=colours, vmin=0.0, vmax=1.0, aspect="auto")
    for (row, column), value in np.ndenumerate(values):
        text = "not measured" if math.isnan(value) else f"{value:.0%}"
        axes.text(column, row, text, ha="center", va="center", fontsize=10)
    axes.set_xticks(range(len(grid.lengths)), [f"{length:,}" for length in grid.lengths])
    axes.set_yticks(range(len(grid.rows)), list(grid.rows))
    axes.set_xlabel("context length (tokens)")
    axes.set_ylabel("needle depth")
    axes.set_title("Needle in a haystack: share of needles found" + (f"\n{grid.note}" if grid.note else ""),
                   fontsize=10)
    figure.colorbar(image, ax=axes, label="accuracy")
    return _png(figure)


def scorecard_png(verdicts: Sequence[Mapping[str, Any]], production: Mapping[str, Any] | None = None) -> bytes:
    """The gate's verdicts ({"metric", "value", "comparison", "threshold", "passed"}), one row per
    metric on its own scale: the candidate's bar coloured by its verdict, the threshold dashed and,
    with `production` ({"version", "metrics"}), the production version's value and the delta."""
    figure = _figure()
    rows = figure.subplots(max(len(verdicts), 1), 1, squeeze=False)[:, 0]
    baseline = (production or {}).get("metrics", {})
    for axes, verdict in zip(rows, verdicts):
        metric, value, threshold = verdict["metric"], float(verdict["value"]), float(verdict["threshold"])
        colour = PASS_COLOUR if verdict["passed"] else FAIL_COLOUR
        axes.barh([0], [0.0 if math.isnan(value) else value], color=colour, height=0.6)
        axes.axvline(threshold, color="black", linestyle="--", linewidth=1)
        label = f"{metric}  {'PASS' if verdict['passed'] else 'FAIL'}: {value:.4g} {verdict['comparison']} {threshold:.4g}"
        if math.isnan(value):
            label = f"{metric}  FAIL: not measured (threshold {verdict['comparison']} {threshold:.4g})"
        if metric in baseline:
            previous = float(baseline[metric])
            axes.plot([previous], [0], marker="D", color="black", linestyle="none")
            delta = "" if math.isnan(value) else f", delta {value - previous:+.4g}"
            label += f"  (production v{production['version']}: {previous:.4g}{delta})"
        axes.set_yticks([])
        axes.set_title(label, loc="left", fontsize=9, color=colour)
        shown = [v for v in (value, threshold, float(baseline.get(metric, 0.0)), 0.0) if math.isfinite(v)]
        low, high = min(shown), max(shown)
        axes.set_xlim(low * 1.15, high * 1.15 if high > low else low + 1.0)
        axes.tick_params(axis="x", labelsize=8)
    rows[0].figure.suptitle("Eval scorecard: candidate (bar), threshold (dashed)"
                            + (", production (diamond)" if baseline else ""), fontsize=10)
    if not verdicts:
        rows[0].text(0.5, 0.5, "no gated metrics", transform=rows[0].transAxes, ha="center", va="center")
    return _png(figure)
