"""``hubtune metatrain``: meta-train the Quick-Tune surrogate on meta-datasets of learning curves."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _describe(name: str):
    """Hub descriptor of ``name``, or ``None`` when the hub does not know it."""
    try:
        from hubtune.hub import get_descriptor  # type: ignore[attr-defined]

        return get_descriptor(name)
    except Exception:
        return None


# Long by design: most of register (and of metatrain_cmd inside it) is the command's
# option declarations, which typer reads; the body hands over to the helpers below.
def register(app: typer.Typer) -> None:
    """Add the ``metatrain`` command to ``app``."""

    @app.command("metatrain")
    def metatrain_cmd(
        metadata: list[Path] = typer.Option(None, "--metadata", help="Meta-dataset directory (repeatable)."),
        from_runs: list[Path] = typer.Option(
            None, "--from-runs",
            help="'hubtune run' folders (finished or interrupted) to learn from: "
            "--from-runs runs/a runs/b ...; folders of the same data form one dataset. "
            "Implies --init-surrogate shipped unless given. See docs/from-runs.md."),
        more_runs: list[Path] = typer.Argument(
            None, metavar="[RUN_DIR]...", help="Further run folders of --from-runs.", show_default=False),
        out: Path = typer.Option(..., "--out", help="Directory to write surrogate.safetensors + surrogate.json."),
        exclude_datasets: str = typer.Option("", "--exclude-datasets", help="Comma-separated datasets to leave out."),
        seed: int = typer.Option(0, help="Meta-training seed."),
        steps: int | None = typer.Option(None, help="Meta-training steps (episodes); default 1200, "
                                         "or 300 when continuing with --init-surrogate."),
        lr: float | None = typer.Option(None, help="Learning rate; default 2e-3, or 5e-4 with --init-surrogate."),
        model_encoding: str = typer.Option("descriptor", help="'descriptor' (hub features) or 'onehot'."),
        init_surrogate: str | None = typer.Option(
            None, "--init-surrogate",
            help="Continue meta-training this surrogate instead of starting from scratch: 'shipped' "
            "(the default surrogate) or a directory written by 'hubtune metatrain'. Specialises it "
            "to your hub and hardware. Default: none (from scratch), or 'shipped' with --from-runs; "
            "'none' trains from scratch."),
        cost: str = typer.Option("refit", help="Cost model: 'refit' on the given meta-datasets' seconds, or "
                                 "'keep' the --init-surrogate's."),
        cost_datasets: str = typer.Option("", "--cost-datasets", help="Comma-separated datasets whose "
                                          "seconds fit the cost model (default: all), e.g. the ones "
                                          "recorded on your hardware."),
    ) -> None:
        """Meta-train the performance surrogate and cost model; save them as safetensors + JSON.

        Meta-datasets given with repeated --metadata are combined (dataset names must differ);
        any layout load_metadata reads works, including the output of 'hubtune metadata generate'.
        --from-runs converts 'hubtune run' folders; the surrogate records their data's
        fingerprints, and 'hubtune run --surrogate' refuses to search that data with it.
        """
        metadata = list(metadata or [])
        run_dirs = list(from_runs or []) + list(more_runs or [])
        if more_runs and not from_runs:
            raise _error(f"unexpected argument {more_runs[0]} (run folders follow --from-runs)")
        if not metadata and not run_dirs:
            raise _error("give --metadata DIR and/or --from-runs RUN_DIR [RUN_DIR ...]")
        if init_surrogate is None and run_dirs:
            init_surrogate = "shipped"  # a few searches are far too little to train from scratch
        if init_surrogate is not None and init_surrogate.lower() == "none":
            init_surrogate = None
        excluded = [d for d in exclude_datasets.split(",") if d]
        md = _meta_dataset(metadata, run_dirs, excluded)
        if model_encoding not in ("descriptor", "onehot"):
            raise _error("--model-encoding must be 'descriptor' or 'onehot'")
        init, settings = _start_and_settings(init_surrogate, model_encoding, steps, lr)
        cost_names = [d for d in cost_datasets.split(",") if d] or None
        from hubtune.surrogate.metatrain import MetaTrainError, metatrain

        try:
            sur = metatrain(md, _describe, seed=seed, settings=settings, log=typer.echo, init=init,
                            cost=cost, cost_datasets=cost_names)
        except MetaTrainError as exc:
            raise _error(str(exc)) from None
        sur.record["command"] = (
            "hubtune metatrain "
            + " ".join([*(f"--metadata {p}" for p in metadata)]
                       + ([f"--from-runs {' '.join(map(str, run_dirs))}"] if run_dirs else []))
            + f" --out {out} --seed {seed} --steps {settings.steps} --lr {settings.lr:g}"
            + f" --model-encoding {settings.model_encoding}"
            + (f" --exclude-datasets {','.join(excluded)}" if excluded else "")
            + (f" --init-surrogate {init_surrogate} --cost {cost}" if init_surrogate else "")
            + (f" --cost-datasets {','.join(cost_names)}" if cost_names else "")
        )
        _save_and_report(sur, out, len(md.datasets))


def _error(message: str) -> typer.Exit:
    """Print a one-line error; returns the exit (status 2) to raise."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(2)


def _meta_dataset(metadata: list[Path], run_dirs: list[Path], excluded: list[str]) -> Any:
    """The meta-datasets and run folders given, loaded and merged, less ``excluded``."""
    import hubtune.metagen.runfolder  # noqa: F401  (lets load_metadata read 'hubtune run' folders)
    from hubtune.metadata import MetadataError, MetaDataset, load_metadata

    try:
        loaded = [load_metadata(p) for p in metadata]
        if run_dirs:
            from hubtune.metagen.runfolder import load_run_folders

            loaded.append(load_run_folders(run_dirs))
    except (MetadataError, OSError) as exc:
        raise _error(str(exc)) from None
    try:
        md = loaded[0] if len(loaded) == 1 else MetaDataset.merge(*loaded)
    except (MetadataError, ValueError) as exc:
        raise _error(f"cannot combine the meta-datasets: {exc}") from None
    unknown = [d for d in excluded if d not in md.datasets]
    if unknown:
        raise _error(f"--exclude-datasets names unknown dataset(s): {', '.join(unknown)}")
    return md.without(excluded) if excluded else md


def _start_and_settings(init_surrogate: str | None, model_encoding: str, steps: int | None,
                        lr: float | None) -> tuple[Any, Any]:
    """The surrogate to continue from (``None``: from scratch) and the meta-training settings."""
    from hubtune.surrogate.metatrain import SPECIALISE_SETTINGS, MetaTrainSettings
    from hubtune.surrogate.model import SurrogateError

    init = None
    if init_surrogate is not None:
        from hubtune.surrogate.cache import load_default_surrogate

        try:
            init = load_default_surrogate(None if init_surrogate == "shipped" else Path(init_surrogate))
        except (SurrogateError, OSError) as exc:
            raise _error(f"--init-surrogate: {exc}") from None
        base = {**SPECIALISE_SETTINGS, "model_encoding": init.features.model_encoding}
    else:
        base = {"model_encoding": model_encoding}
    if steps is not None:
        base["steps"] = steps
    if lr is not None:
        base["lr"] = lr
    return init, MetaTrainSettings(**base)


def _save_and_report(sur: Any, out: Path, n_datasets: int) -> None:
    """Save the surrogate to ``out``; print its leak guard and a one-line JSON summary."""
    sur.record["unknown_models"] = [m for m in sur.record.get("models", []) if _describe(m) is None]
    sur.save(out)
    from hubtune.surrogate.provenance import RECORD_KEY

    leak_guard = sur.record.get(RECORD_KEY, [])
    if leak_guard:
        typer.echo(f"trained on the runs of {', '.join(e['dataset'] for e in leak_guard)}; "
                   f"'hubtune run --surrogate {out}' refuses that data")
    typer.echo(json.dumps({"out": str(out), "datasets": n_datasets,
                           "best_step": sur.record["best_step"],
                           "seconds": sur.record["seconds"]}))
