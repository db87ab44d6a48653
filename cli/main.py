"""The `llamaops` command. Each command group lives in its own module; heavy imports stay inside
the commands so `llamaops --version` and `llamaops presets list` start without torch."""
from typing import Annotated

import typer

from llamaops import __version__

from . import cluster, data, deploy, gc, model, pipeline, presets, serve, tokenizer, train
from . import eval as eval_commands
from .errors import UserErrorGroup

app = typer.Typer(
    cls=UserErrorGroup,
    help="Train, align, evaluate and serve Llama 3.1-family models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,  # a bug shows Python's plain traceback
)
app.add_typer(presets.app, name="presets")
app.add_typer(model.app, name="model")
app.add_typer(tokenizer.app, name="tokenizer")
app.add_typer(pipeline.app, name="pipeline")
app.add_typer(train.app, name="train")
app.add_typer(data.app, name="data")
app.add_typer(eval_commands.app, name="eval")
app.command("serve")(serve.serve)
app.add_typer(deploy.app, name="deploy")
app.add_typer(cluster.app, name="cluster")
app.command("gc")(gc.gc)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Train, align, evaluate and serve Llama 3.1-family models."""


def main() -> None:
    app(prog_name="llamaops")


if __name__ == "__main__":
    main()
