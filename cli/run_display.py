"""How `pipeline submit --local` shows a run as it goes: on a terminal, a Rich live table (one row
per step: status, elapsed time, its headline metric, and a training step's progress); elsewhere
(CI, pipes) plain lines, a training step's progress at most once a minute."""
import threading
import time
from pathlib import Path
from typing import TextIO

import typer

# A finished step's headline: the first of these its metrics have.
HEADLINES = (("validation_perplexity", "val ppl"), ("final_loss", "loss"), ("held_out_loss_after", "held-out loss"),
             ("held_out_violation_rate_after", "violation rate"), ("tokens_out", "tokens"), ("model_version", "version"))
PLAIN_PROGRESS_EVERY_S = 60.0


def number(value: float) -> str:
    """Large values in full with separators (18,265), small ones to four figures (0.09091)."""
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def progress_text(detail: dict) -> str:
    """`12/48 loss 7.912 1,234 tok/s ETA 2m10s` from a progress event's detail."""
    parts = [f"{detail.get('done', 0)}/{detail.get('total', '?')}"]
    if "loss" in detail:
        parts.append(f"loss {detail['loss']:.3f}")
    if "tokens_per_second" in detail:
        parts.append(f"{detail['tokens_per_second']:,.0f} tok/s")
    if detail.get("done", 0) < detail.get("total", 0):
        parts.append(f"ETA {_duration(detail.get('eta_s', 0))}")
    return " ".join(parts)


def headline(detail: dict) -> str:
    metrics = {**detail.get("metrics", {}), **({"model_version": detail["version"]} if "version" in detail else {})}
    for key, label in HEADLINES:
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{label} {number(value)}"
        if isinstance(value, str) and value:
            return f"{label} {value}"
    return ""


class PlainView:
    """One line per step event; progress at most every PLAIN_PROGRESS_EVERY_S per step."""

    def __init__(self, out: TextIO, header: str, clock=time.monotonic):
        self.out, self.header, self.clock = out, header, clock
        self.started, self.progress_at = False, {}

    def __call__(self, event) -> None:
        if not self.started:
            self.started = True
            typer.echo(self.header, file=self.out)
        stamp = f"[{time.strftime('%H:%M:%S')}] {event.step}"
        if event.status == "started":
            typer.echo(f"{stamp} ...", file=self.out)
        elif event.status == "progress":
            now = self.clock()
            if now - self.progress_at.get(event.step, now - PLAIN_PROGRESS_EVERY_S) >= PLAIN_PROGRESS_EVERY_S:
                self.progress_at[event.step] = now
                typer.echo(f"{stamp} {progress_text(event.detail)}", file=self.out)
        else:
            line = f"{stamp} {event.status} in {event.seconds:.1f}s"
            if event.status == "failed":
                line += f": {event.detail.get('error', '')}"
            elif headline(event.detail):
                line += f" ({headline(event.detail)})"
            typer.echo(line, file=self.out)

    def close(self) -> None:
        pass


class LiveView:
    """A Rich live table of the run's steps, redrawn as events arrive and every second."""

    SYMBOLS = {"started": "[yellow]running[/]", "finished": "[green]done[/]", "skipped": "[cyan]skipped[/]",
               "failed": "[red]failed[/]"}

    def __init__(self, out: TextIO, header: str):
        from rich.console import Console
        from rich.live import Live

        self.console = Console(file=out)
        self.header, self.rows, self.started_at = header, {}, {}
        # The run redirects sys.stdout to its log while KFP runs: Live must leave it alone.
        self.live = Live(console=self.console, refresh_per_second=1, get_renderable=self._table,
                         redirect_stdout=False, redirect_stderr=False)
        self.live_started = False  # at the first event: a refused run prints only its error

    def _table(self):
        from rich.table import Table

        table = Table(title=self.header, title_justify="left", show_edge=False, box=None, padding=(0, 2))
        for column in ("step", "status", "time", ""):
            table.add_column(column)
        for step, (status, seconds, note) in self.rows.items():
            elapsed = time.monotonic() - self.started_at[step] if status == "started" else seconds
            table.add_row(step, self.SYMBOLS.get(status, status), _duration(elapsed), note)
        return table

    def __call__(self, event) -> None:
        if not self.live_started:
            self.live_started = True
            self.live.start()
        if event.status == "started":
            self.started_at[event.step] = time.monotonic()
            self.rows[event.step] = ("started", 0.0, "")
        elif event.status == "progress":
            self.started_at.setdefault(event.step, time.monotonic() - event.seconds)
            self.rows[event.step] = ("started", 0.0, progress_text(event.detail))
        else:
            self.started_at.setdefault(event.step, time.monotonic())
            note = event.detail.get("error", "") if event.status == "failed" else headline(event.detail)
            self.rows[event.step] = (event.status, event.seconds, note)
        self.live.refresh()

    def close(self) -> None:
        if self.live_started:
            self.live.stop()


class LogTail:
    """`-v`: streams the lines the run's log files gain (KFP's runner's, then each step's, prefixed
    with the step) to `out` as they come, next to the plain step lines."""

    def __init__(self, out: TextIO, run_folder: Path, every_s: float = 0.5):
        self.out, self.folder, self.every_s = out, run_folder, every_s
        self.offsets: dict[Path, int] = {}
        self.stop_event = threading.Event()
        self.thread = threading.Thread(target=self._follow, daemon=True)
        self.thread.start()

    def _follow(self) -> None:
        while not self.stop_event.wait(self.every_s):
            self.poll()

    def poll(self) -> None:
        for path in [self.folder / "steps.log", *sorted((self.folder / "steps").glob("*.log"))]:
            if not path.is_file():
                continue
            with path.open("rb") as file:
                file.seek(self.offsets.get(path, 0))
                text = file.read()
            complete = text[: text.rfind(b"\n") + 1]  # a line still being written waits
            self.offsets[path] = self.offsets.get(path, 0) + len(complete)
            prefix = "" if path.name == "steps.log" else f"{path.stem} | "
            for line in complete.decode("utf-8", errors="replace").splitlines():
                typer.echo(prefix + line, file=self.out)

    def close(self) -> None:
        self.stop_event.set()
        self.thread.join()
        self.poll()


def run_view(out: TextIO, header: str, verbose: bool = False, run_folder: Path | None = None):
    """The live table on a terminal, plain lines elsewhere; with `verbose`, plain lines and every
    log line as it comes. Call `.close()` when the run ends."""
    if verbose and run_folder is not None:
        return VerboseView(PlainView(out, header), LogTail(out, run_folder))
    return LiveView(out, header) if out.isatty() else PlainView(out, header)


class VerboseView:
    def __init__(self, events: PlainView, logs: LogTail):
        self.events, self.logs = events, logs

    def __call__(self, event) -> None:
        self.events(event)

    def close(self) -> None:
        self.logs.close()
