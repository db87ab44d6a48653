"""`llamaops gc`: disk hygiene for local runs."""
from typing import Annotated

import typer


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def gc(
    keep_last: Annotated[int, typer.Option("--keep-last", min=0, help="Runs to keep, newest first.")] = 3,
    older_than_days: Annotated[float | None, typer.Option("--older-than-days", min=0,
                                                          help="Only runs that ended this long ago.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Say what would go; remove nothing.")] = False,
) -> None:
    """Remove old local runs (records, run folders, their file:// artifacts). A run still
    running is never touched; a registered model's folder (and its run's record) always stays."""
    from llamaops.pipelines.local_gc import apply_cleanup, plan_cleanup

    plans = plan_cleanup(keep_last, older_than_days)
    if not plans:
        typer.echo("nothing to remove")
        return
    for plan in plans:
        kept = f"; keeps {plan.kept_because}" if plan.kept_because else ""
        typer.echo(f"{plan.run_id}: {'would remove' if dry_run else 'removes'} {_size(plan.bytes)}{kept}")
    total = sum(plan.bytes for plan in plans)
    if dry_run:
        typer.echo(f"dry run: would free {_size(total)}")
        return
    typer.echo(f"freed {_size(apply_cleanup(plans))}")
