"""``hubtune run`` and ``hubtune report``: the end-to-end search and its outputs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg="red", err=True)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    """Add ``run`` and ``report`` to ``app`` (``predict`` lives in :mod:`hubtune.commands.predict`)."""
    app.command("run")(run_command)
    app.command("report")(report_command)


def report_command(run_dir: Path = typer.Argument(..., help="A run folder.")) -> None:
    """(Re)build a run's leaderboard.csv, plots and report.html from its journal."""
    from hubtune.tuner.report import build_report

    try:
        path = build_report(run_dir)
    except FileNotFoundError as exc:
        _fail(str(exc))
    typer.echo(str(path))


# Long by design: the signature is only the command's option declarations (typer reads
# them); the body is a few lines that hand over to the helpers below.
def run_command(
    data: str = typer.Argument(..., help="ImageFolder path, or a built-in dataset: "
                               "fashion-mnist, animal-mnist, digits (optionally NAME:N for N images)."),
    budget: str = typer.Option("30m", help="Total time budget: '600', '30m', '2h'. Covers "
                               "training, evaluation, checkpoint I/O and the optimizer."),
    out: Path = typer.Option(..., help="Run folder; running again on it resumes the search."),
    models: str | None = typer.Option(None, help="Comma-separated hub model names."),
    hub: str = typer.Option("offline", help="Model hub when --models is not given: offline, "
                            "quicktune, test, or a timm name pattern ('convnext_*')."),
    space: Path | None = typer.Option(None, help="Search-space JSON (fixed values, choices)."),
    max_epochs: int = typer.Option(10, help="Epochs a candidate may reach (schedules span them)."),
    seed: int = typer.Option(0, help="Seed of the search, the data split and every trial."),
    device: str = typer.Option("cpu", help="cpu, cuda (or cuda:N), mps, or auto (cuda "
                               "if available, else mps, else cpu)."),
    image_size: int | None = typer.Option(None, help="Training resolution (default 64 on CPU, "
                                          "the models' own on CUDA)."),
    subset: int | None = typer.Option(None, help="Use a stratified subset of N training images."),
    optimizer: str = typer.Option("quicktune", help="Search method (see 'hubtune bench --list-methods')."),
    quota: str = typer.Option("10GB", help="Disk quota for paused candidates' checkpoints."),
    final_epochs: int = typer.Option(0, help="Continue the selected model this many more "
                                     "epochs (up to --max-epochs) before export."),
    threads: int | None = typer.Option(None, help="torch CPU threads."),
    pretrained: bool = typer.Option(True, help="Start from pretrained weights "
                                    "(--no-pretrained: random init, e.g. timm test models)."),
    log: str | None = typer.Option(None, help="Output: live (terminal panel), plain, json, quiet."),
    workers: int = typer.Option(1, help="Steps run at once. Above 1 they run on Ray workers "
                                "(pip install ray); see docs/parallel.md."),
    gpus: str | None = typer.Option(None, help="Local GPUs the workers use, e.g. 0,1 "
                                    "(with --device cuda; default: all)."),
    gpus_per_trial: float | None = typer.Option(None, help="GPU share of one worker "
                                                "(default 1; 0.5 packs two trials per GPU)."),
    surrogate: Path | None = typer.Option(None, help="Surrogate folder written by 'hubtune "
                                          "metatrain' (e.g. specialised to your hub) instead "
                                          "of the shipped one (default: the shipped "
                                          "surrogate; for offline-hub models its "
                                          "offline-specialised version). Refused on data "
                                          "it was meta-trained on (docs/from-runs.md)."),
    metric: str = typer.Option("top1", help="Validation score the search optimizes and "
                               "the export ranks by: top1 (accuracy), balanced_accuracy "
                               "(mean per-class recall) or macro_f1. best/metrics.json "
                               "reports all three."),
    max_latency_ms: float | None = typer.Option(None, help="Search only models whose "
                                                "batch-1 forward pass takes at most this "
                                                "many ms (measured on --device at the "
                                                "run's image size; docs/constraints.md)."),
    max_params: float | None = typer.Option(None, help="Search only models with at most "
                                            "this many million parameters (hub figures)."),
    max_gflops: float | None = typer.Option(None, help="Search only models with at most "
                                            "this many GFLOPs (hub figures, native input)."),
    latency_batch: int = typer.Option(32, help="Second batch size at which latency is "
                                      "measured and reported (with --max-latency-ms)."),
    ensemble: int = typer.Option(0, help="After the search, add a greedy ensemble of the "
                                 "trained trials (K selection rounds, with replacement; "
                                 "weights chosen on validation) to best/; 0: off. See "
                                 "docs/ensemble.md."),
    ray_address: str | None = typer.Option(None, help="Join a running Ray cluster (auto or "
                                           "HOST:PORT) instead of starting a local one; "
                                           "--out must be on a filesystem all nodes share."),
    log_to: str | None = typer.Option(None, help="Experiment trackers fed every step, "
                                      "the incumbent and the exported model: tensorboard "
                                      "(RUN/tensorboard), mlflow (sqlite:///RUN/mlflow.db "
                                      "unless MLFLOW_TRACKING_URI is set), or both: "
                                      "tensorboard,mlflow. See docs/integrations.md."),
) -> None:
    """Search which model to finetune and how, within a time budget; export the best model."""
    from hubtune.core.process import command_started

    started = command_started()  # as a command of its own: from the process start
    from hubtune.tuner.display import SearchDisplay

    if log not in (None, "live", "plain", "json", "quiet"):
        _fail(f"--log must be live, plain, json or quiet, got {log!r}")
    display = SearchDisplay(log)  # type: ignore[arg-type]
    display.starting(data, budget)  # on screen before the heavy imports and data loading
    options = dict(
        budget=budget, out=out, hub=hub,
        models=[m.strip() for m in models.split(",") if m.strip()] if models is not None else None,
        max_epochs=max_epochs, seed=seed, device=device,
        image_size=image_size, subset=subset, optimizer=optimizer, quota=quota,
        final_epochs=final_epochs, num_threads=threads, pretrained=pretrained,
        workers=workers, gpus=gpus, gpus_per_trial=gpus_per_trial,
        ray_address=ray_address, surrogate=surrogate, metric=metric, ensemble=ensemble,
        max_latency_ms=max_latency_ms, max_params=max_params, max_gflops=max_gflops,
        latency_batch=latency_batch, started=started, log_to=log_to,
    )
    result = _fit(data, space, options, display)
    _show_result(result, display.mode, out)


def _read_space(space: Path | None) -> dict | None:
    """The ``--space`` JSON file's contents (a one-line error when missing or not JSON)."""
    if space is None:
        return None
    try:
        return json.loads(space.read_text())
    except FileNotFoundError:
        _fail(f"search-space file not found: {space}")
    except json.JSONDecodeError as exc:
        _fail(f"search-space file {space} is not valid JSON: {exc}")
    return None  # not reached: _fail exits


def _fit(data: str, space: Path | None, options: dict[str, Any], display: Any) -> Any:
    """Build the :class:`HubTuner` and run it; known errors end the command in one line."""
    from hubtune.core.units import DurationError, QuotaError
    from hubtune.data import DataError
    from hubtune.hub import HubError
    from hubtune.optim.registry import UnknownMethodError
    from hubtune.space import ConfigError
    from hubtune.tuner.hubtuner import HubTuner, RunError

    try:
        tuner = HubTuner(space=_read_space(space), on_event=display, **options)
        return tuner.fit(data)
    except (DataError, HubError, ConfigError, RunError, DurationError, QuotaError,
            UnknownMethodError) as exc:
        display.close()
        _fail(str(exc))
    except KeyboardInterrupt:
        display.close()
        typer.secho(f"interrupted; run the same command again to resume from {options['out']}",
                    fg="yellow", err=True)
        raise typer.Exit(130) from None
    finally:
        display.close()  # also when a bad option ends the command early


def _show_result(result: Any, mode: str, out: Path) -> None:
    """The summary (or one JSON line); exit status 1 when no model was exported."""
    if mode != "json":
        typer.echo(result.summary())
        typer.echo(f"report: {out / 'report.html'}")
    else:
        typer.echo(json.dumps({"event": "result",
                               "best_dir": None if result.best_dir is None else str(result.best_dir),
                               "model": result.model, "metric": result.metric,
                               "val": result.val_score,
                               "test": result.test_score, "elapsed": result.elapsed,
                               "near_chance": result.near_chance,
                               "no_model_reason": result.no_model_reason}))
    if result.best_dir is None:
        typer.secho(f"error: no model was exported: {result.no_model_reason}",
                    fg="red", err=True)
        raise typer.Exit(1)
