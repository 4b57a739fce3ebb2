"""``hubtune metatrain``: meta-train the Quick-Tune surrogate on meta-datasets of learning curves."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def _describe(name: str):
    """Hub descriptor of ``name``, or ``None`` when the hub does not know it."""
    try:
        from hubtune.hub import get_descriptor  # type: ignore[attr-defined]

        return get_descriptor(name)
    except Exception:
        return None


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
        import hubtune.metagen.runfolder  # noqa: F401  (lets load_metadata read 'hubtune run' folders)
        from hubtune.metadata import MetadataError, load_metadata
        from hubtune.surrogate.metatrain import (
            SPECIALISE_SETTINGS,
            MetaTrainError,
            MetaTrainSettings,
            metatrain,
        )
        from hubtune.surrogate.model import SurrogateError

        metadata = list(metadata or [])
        run_dirs = list(from_runs or []) + list(more_runs or [])
        if more_runs and not from_runs:
            typer.secho(f"error: unexpected argument {more_runs[0]} (run folders follow --from-runs)",
                        fg="red", err=True)
            raise typer.Exit(2)
        if not metadata and not run_dirs:
            typer.secho("error: give --metadata DIR and/or --from-runs RUN_DIR [RUN_DIR ...]",
                        fg="red", err=True)
            raise typer.Exit(2)
        if init_surrogate is None and run_dirs:
            init_surrogate = "shipped"  # a few searches are far too little to train from scratch
        if init_surrogate is not None and init_surrogate.lower() == "none":
            init_surrogate = None
        try:
            loaded = [load_metadata(p) for p in metadata]
            if run_dirs:
                from hubtune.metagen.runfolder import load_run_folders

                loaded.append(load_run_folders(run_dirs))
        except (MetadataError, OSError) as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        from hubtune.metadata import MetaDataset

        try:
            md = loaded[0] if len(loaded) == 1 else MetaDataset.merge(*loaded)
        except (MetadataError, ValueError) as exc:
            typer.secho(f"error: cannot combine the meta-datasets: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
        excluded = [d for d in exclude_datasets.split(",") if d]
        unknown = [d for d in excluded if d not in md.datasets]
        if unknown:
            typer.secho(f"error: --exclude-datasets names unknown dataset(s): {', '.join(unknown)}",
                        fg="red", err=True)
            raise typer.Exit(2)
        if excluded:
            md = md.without(excluded)
        if model_encoding not in ("descriptor", "onehot"):
            typer.secho("error: --model-encoding must be 'descriptor' or 'onehot'", fg="red", err=True)
            raise typer.Exit(2)
        init = None
        if init_surrogate is not None:
            from hubtune.surrogate.cache import load_default_surrogate

            try:
                init = load_default_surrogate(None if init_surrogate == "shipped" else Path(init_surrogate))
            except (SurrogateError, OSError) as exc:
                typer.secho(f"error: --init-surrogate: {exc}", fg="red", err=True)
                raise typer.Exit(2) from None
            base = {**SPECIALISE_SETTINGS, "model_encoding": init.features.model_encoding}
        else:
            base = {"model_encoding": model_encoding}
        if steps is not None:
            base["steps"] = steps
        if lr is not None:
            base["lr"] = lr
        settings = MetaTrainSettings(**base)
        cost_names = [d for d in cost_datasets.split(",") if d] or None
        try:
            sur = metatrain(md, _describe, seed=seed, settings=settings, log=typer.echo, init=init,
                            cost=cost, cost_datasets=cost_names)
        except MetaTrainError as exc:
            typer.secho(f"error: {exc}", fg="red", err=True)
            raise typer.Exit(2) from None
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
        sur.record["unknown_models"] = [m for m in sur.record.get("models", []) if _describe(m) is None]
        sur.save(out)
        from hubtune.surrogate.provenance import RECORD_KEY

        leak_guard = sur.record.get(RECORD_KEY, [])
        if leak_guard:
            typer.echo(f"trained on the runs of {', '.join(e['dataset'] for e in leak_guard)}; "
                       f"'hubtune run --surrogate {out}' refuses that data")
        typer.echo(json.dumps({"out": str(out), "datasets": len(md.datasets),
                               "best_step": sur.record["best_step"],
                               "seconds": sur.record["seconds"]}))

