"""One place that turns a user's mistake into a one-line message and exit status 2.

Anything else is a bug and keeps its traceback.
"""
from typing import Any

import typer
from typer.core import TyperGroup

USAGE_ERROR = 2
_USER_OS_ERRORS = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError)


def is_user_error(exc: BaseException) -> bool:
    """Missing or unwritable paths, and the ValueError subclasses llamaops raises for bad input
    (ConfigError, ModelDirectoryError, ...); a bare ValueError from deeper down is a bug."""
    if isinstance(exc, _USER_OS_ERRORS):
        return True
    return isinstance(exc, ValueError) and type(exc).__module__.startswith("llamaops.")


def one_line(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror[0].lower()}{exc.strerror[1:]}{where}"
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class UserErrorGroup(TyperGroup):
    """Root command group: every subcommand runs inside its `invoke`, so one handler covers all."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not is_user_error(exc):
                raise
            typer.echo(f"error: {one_line(exc)}", err=True)
            raise typer.Exit(USAGE_ERROR) from None
