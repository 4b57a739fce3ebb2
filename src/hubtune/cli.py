"""The ``hubtune`` command line."""

from __future__ import annotations

import warnings

import typer

# gpytorch's dependencies still call torch.jit.script, which torch deprecates; the
# warning says nothing actionable to a hubtune user.
warnings.filterwarnings("ignore", message=r".*torch\.jit\.script.* is deprecated", category=FutureWarning)

app = typer.Typer(
    name="hubtune",
    help="Which pretrained model to finetune, and how: meta-learned gray-box "
    "Bayesian optimisation over a model hub (Quick-Tune).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.command()
def version() -> None:
    """Print hubtune's version."""
    from hubtune import __version__

    typer.echo(__version__)


def _register_commands() -> None:
    # Each command module adds its own command(s) to the app.
    from hubtune.commands import bench as bench_cmd
    from hubtune.commands import demo as demo_cmd
    from hubtune.commands import export as export_cmd
    from hubtune.commands import finetune as finetune_cmd
    from hubtune.commands import hub as hub_cmd
    from hubtune.commands import metadata as metadata_cmd
    from hubtune.commands import metatrain as metatrain_cmd
    from hubtune.commands import predict as predict_cmd
    from hubtune.commands import push as push_cmd
    from hubtune.commands import run as run_cmd
    from hubtune.commands import space as space_cmd

    run_cmd.register(app)
    predict_cmd.register(app)
    space_cmd.register(app)
    bench_cmd.register(app)
    metadata_cmd.register(app)
    finetune_cmd.register(app)
    demo_cmd.register(app)
    hub_cmd.register(app)
    metatrain_cmd.register(app)
    export_cmd.register(app)
    push_cmd.register(app)


_register_commands()


def main() -> None:
    """Console-script entry point (``hubtune``, ``python -m hubtune.cli``).

    Here the process is the command, so ``hubtune run`` charges its budget from the
    process start (interpreter start-up and imports included); an ``app`` invoked
    inside another program (tests, notebooks) charges from the command's own start.
    """
    from hubtune.core import process

    process.mark_command_process()
    app()


if __name__ == "__main__":
    main()
