"""`llamaops presets`: list the named presets and show one, with overrides applied."""
import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The named presets: every number of one run.", no_args_is_help=True)


def _preset_names(incomplete: str) -> list[str]:
    from llamaops.platform.config import PRESETS

    return [name for name in PRESETS if name.startswith(incomplete)]


PresetName = Annotated[
    str,
    typer.Argument(
        metavar="PRESET", help="tiny, 8b, 70b, 405b or full-405b.", show_default=False, autocompletion=_preset_names
    ),
]
ConfigFile = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file of preset fields to override.", dir_okay=False)
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override one field, e.g. pretrain.optimizer.peak_lr=1e-4 (repeatable)."),
]
AsJson = Annotated[bool, typer.Option("--json", help="Print JSON.")]


@app.command("list")
def list_presets() -> None:
    """Name, description and world size of every preset."""
    from llamaops.platform.config import PRESETS, load_preset

    presets = [load_preset(name) for name in PRESETS]
    rows = [("NAME", "WORLD SIZE", "DESCRIPTION")]
    rows += [(p.name, str(p.pretrain.layout.world_size), p.description) for p in presets]
    name_width = max(len(row[0]) for row in rows)
    size_width = max(len(row[1]) for row in rows)
    for name, size, description in rows:
        typer.echo(f"{name:<{name_width}}  {size:>{size_width}}  {description}")


@app.command("show")
def show(name: PresetName, config: ConfigFile = None, overrides: Overrides = None, as_json: AsJson = False) -> None:
    """The full validated preset, as YAML (default) or JSON."""
    from llamaops.platform.config import load_preset

    values = load_preset(name, config, overrides or []).model_dump(mode="json")
    if as_json:
        typer.echo(json.dumps(values, indent=2))
    else:
        import yaml

        typer.echo(yaml.safe_dump(values, sort_keys=False), nl=False)
