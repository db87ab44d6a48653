"""`llamaops cluster`: a local kind cluster with KubeRay, Kubeflow Pipelines and the llamaops chart."""
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="A local kind cluster for trying llamaops end to end.", no_args_is_help=True)
NameOption = Annotated[str, typer.Option("--name", help="kind cluster name.")]


@app.command("up")
def up(
    name: NameOption = "llamaops",
    namespace: Annotated[str, typer.Option("--namespace", help="Namespace of the llamaops chart.")] = "llamaops",
    values: Annotated[Path | None, typer.Option("--values", "-f", help="Extra chart values.", exists=True, dir_okay=False)] = None,
) -> None:
    """Create (or reuse) the kind cluster, install KubeRay, Kubeflow Pipelines and the chart."""
    from llamaops.cluster import kind

    kind.up(name, namespace, values, echo=typer.echo)
    typer.echo(f"cluster {name} ready. Next:\n"
               f"  kubectl --context kind-{name} -n kubeflow port-forward svc/ml-pipeline-ui 8080:80 &\n"
               "  llamaops pipeline submit tiny --host http://127.0.0.1:8080")


@app.command("down")
def down(name: NameOption = "llamaops") -> None:
    """Delete the kind cluster."""
    from llamaops.cluster import kind

    kind.down(name)
    typer.echo(f"cluster {name} deleted")
