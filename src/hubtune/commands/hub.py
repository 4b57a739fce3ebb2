"""``hubtune hub``: browse the model hub (a sub-app, so later commands can join it)."""

from __future__ import annotations

import json

import typer

hub_app = typer.Typer(name="hub", help="Browse the model hub.", no_args_is_help=True)


def _fail(message: str) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(2)


@hub_app.command("list")
def list_command(
    hub: str | None = typer.Option(
        None,
        "--hub",
        help="offline | quicktune | test | a glob over timm names (e.g. 'convnext_*'); default: all registered.",
    ),
    as_json: bool = typer.Option(False, "--json", help="Print descriptors as JSON lines."),
) -> None:
    """Print a table of model descriptors (params, GFLOPs, input size, ImageNet top-1, weights)."""
    from hubtune.hub import HubError, available_offline, get_descriptor, list_models

    try:
        names = list_models(hub)
        descriptors = [get_descriptor(n) for n in names]
    except HubError as exc:
        raise _fail(str(exc)) from None
    if as_json:
        for d in descriptors:
            typer.echo(json.dumps(d.to_dict()))
        return
    from rich.console import Console
    from rich.table import Table

    usable = set(available_offline())
    table = Table(title=f"hub: {hub or 'all'} ({len(descriptors)} models)")
    for col in ("name", "architecture", "family", "params (M)", "GFLOPs", "input", "top-1 %", "weights"):
        table.add_column(col, justify="right" if col in {"params (M)", "GFLOPs", "input", "top-1 %"} else "left")
    for d in descriptors:
        weights = d.weights + (" (installed)" if d.name in usable else "")
        top1 = f"{d.imagenet_top1:.1f}" if d.imagenet_top1 is not None else "-"
        arch = d.architecture + (f".{d.pretrained_tag}" if d.weights == "timm" and d.pretrained_tag else "")
        table.add_row(d.name, arch, d.family, f"{d.params_m:.2f}", f"{d.gflops:.2f}", str(d.input_size), top1, weights)
    Console(width=200).print(table)


def register(app: typer.Typer) -> None:
    """Add the ``hub`` sub-app to ``app``."""
    app.add_typer(hub_app, name="hub")
