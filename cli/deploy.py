"""`llamaops deploy`: what the operator makes of a LlamaDeployment."""
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="LlamaDeployments: the serving objects the operator creates.", no_args_is_help=True)


@app.command("render")
def render(
    manifest: Annotated[Path, typer.Argument(help="A LlamaDeployment manifest (YAML).", show_default=False)],
    pools: Annotated[Path, typer.Option(help="The node pools: your chart values file (its nodePools) or a pools.yaml.",
                                        show_default=False)],
    hpa_version: Annotated[str, typer.Option(help="The HPA API the cluster serves.")] = "autoscaling/v2",
) -> None:
    """Print the Deployment, Service and HPA the operator would create for MANIFEST, for review or GitOps."""
    from llamaops.operators.render import render_objects

    typer.echo(render_objects(manifest.read_text(), pools.read_text(), hpa_version), nl=False)
