"""Replay real runs' journals through a surrogate: how well would it have predicted each step?

    python benchmarks/prediction_replay.py RUN_DIR [RUN_DIR ...] [--surrogate DIR] [--calibrate W | --no-calibration]
        [--final-truth RUN_DIR ...]

For each ``hubtune run`` folder, a fresh Quick-Tune optimizer with the run's
settings (schedule over ``--max-epochs``, the validation split's size) and the
given surrogate (default: the one the run searched with) is told the run's
journaled results in order. Before each result it predicts that step's score
at its target epoch, conditioned on exactly what the run had observed before
it, with this run's per-task calibration as the optimizer would apply it. The
steps are the run's own (any optimizer's, e.g. a ``defaults`` baseline's), so
different surrogates are compared on the same decisions, offline and without
training anything. Figures (coverage of +-1 std, signed and absolute error, for
new configs, new configs after 5 observed epochs, continuations) are those of
``benchmarks/calibration.py``.

``--final-truth RUN...`` adds a second question: how well does the search judge
the end of a trial it has paused? After every replayed step, each started,
unfinished trial is predicted at the schedule's last epoch, and compared with
the score a run of the same seed reached there with the same config (a
``defaults_sequential`` baseline trains every default config to the end; a
trial's curve is the same in both runs, as its seed, config and data are).

Use it to compare surrogates on runs of data they were not trained on
(``hubtune run --surrogate`` refuses a surrogate trained on the same data).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from calibration import Point, fmt_figure, format_table, report, summarize  # noqa: E402


def _run_json(run_dir: Path) -> dict[str, Any]:
    """The run's recorded settings (``run.json``)."""
    return json.loads((run_dir / "run.json").read_text())


def _val_size(run_dir: Path, fingerprint: str | None) -> int | None:
    """Validation images of the run's data, from its decoded-data cache (None if gone)."""
    from safetensors import safe_open

    path = run_dir / "data-cache" / f"{fingerprint}.safetensors"
    if not fingerprint or not path.is_file():
        return None
    with safe_open(str(path), "pt") as fh:
        return int(fh.get_slice("val.labels").get_shape()[0])


def _optimizer(run_dir: Path, surrogate_dir: str | None, calibrate: bool | float,
               noise_sd: float | None = None, schedule_epochs: int | None = None) -> Any:
    """A fresh optimizer with the run's settings. ``calibrate``: True, the optimizer's default
    per-task calibration; False, none; a number, calibration with that pseudo-residual weight."""
    from hubtune.hub import get_descriptor
    from hubtune.metagen.runfolder import _data_cache
    from hubtune.optim.quicktune import QuickTune, QuickTuneSettings
    from hubtune.surrogate.cache import default_surrogate_dir, load_default_surrogate

    settings = _run_json(run_dir)
    fingerprint, meta = _data_cache(run_dir)
    sur_dir = surrogate_dir or settings.get("surrogate") or str(default_surrogate_dir(settings["models"]))
    qs = QuickTuneSettings(schedule_epochs=int(schedule_epochs or settings["max_epochs"]),
                           val_size=_val_size(run_dir, fingerprint))
    if calibrate is False:
        qs.calibrate_new = qs.calibrate_continue = None
    elif calibrate is not True:
        qs.calibrate_new = qs.calibrate_continue = float(calibrate)
    surrogate = load_default_surrogate(sur_dir)
    if noise_sd is not None:  # a what-if of the GP's observation noise (the cached surrogate is copied)
        import copy

        surrogate = copy.deepcopy(surrogate)
        surrogate.likelihood.noise = max(noise_sd, 1e-4) ** 2
    return QuickTune(surrogate, max_epochs=int(settings["max_epochs"]),
                     candidates=[], meta_features=meta,
                     descriptors={m: get_descriptor(m) for m in settings["models"]}, settings=qs)


def _predict(qt: Any, trial_id: str, to_epoch: int) -> tuple[float, float, float, float] | None:
    """(mean, std, noise std, GP mean, GP predictive sd) of ``trial_id``'s score at ``to_epoch``,
    as the optimizer would compute it now (calibrated; the last two uncalibrated)."""
    from hubtune.optim.quicktune.calibration import predictive_sd
    from hubtune.surrogate.features import assemble_rows

    i = qt.pool.index[trial_id]
    t = qt.pool.trials[i]
    if to_epoch <= t.epoch:
        return None
    row = assemble_rows(qt.pool.static[[i]], np.asarray([t.epoch]), np.asarray([to_epoch]), t.curve[None],
                        qt.settings.schedule_epochs)
    x_obs, y_obs = qt._observations()
    m, sd = qt.surrogate.predict(x_obs, y_obs, row.astype(np.float32), extra_noise=qt._sampling_noise(y_obs))
    m = np.minimum(m, 1.0)
    cm, cs = qt._calibrated(m, sd, np.asarray([t.epoch > 0]))
    noise_var = float(qt._noise_var(m)[0])
    return float(cm[0]), float(cs[0]), noise_var ** 0.5, float(m[0]), predictive_sd(float(sd[0]), noise_var)


def _anchor(step: dict[str, Any]) -> bool:
    """Whether a journaled step started a default-config anchor (runs from before the
    ``anchor`` flag: a default config's step, as its ``why`` says)."""
    info = step.get("info") or {}
    return bool(info.get("anchor")) or str(info.get("why", "")).startswith("default config of the model")


PAUSED = "paused_final"
"""Kind of the points :func:`replay` adds with ``truth``: a paused trial's score at the last epoch."""


def _config_key(config: dict[str, Any]) -> str:
    return json.dumps(config, sort_keys=True)


def final_scores(runs: list[Path]) -> dict[tuple[int, str], float]:
    """``(seed, config) -> score at the run's max_epochs`` of every trial that got there in ``runs``."""
    from hubtune.search.journal import Journal

    out: dict[tuple[int, str], float] = {}
    for run in runs:
        settings = _run_json(run)
        seed, last = int(settings.get("seed", 0)), int(settings["max_epochs"])
        for e in Journal(run / "journal.jsonl"):
            if e.get("event") != "result":
                continue
            for r in e.get("records") or []:
                if int(r["epoch"]) == last and np.isfinite(float(r.get("score", float("nan")))):
                    out[(seed, _config_key(e["step"]["config"]))] = float(r["score"])
    return out


def _paused_points(qt: Any, seed: int, truth: dict[tuple[int, str], float]) -> list[Point]:
    """Predictions of each paused trial's score at ``max_epochs`` whose truth is known."""
    observed_before = sum(t.epoch for t in qt.pool.trials)
    points = []
    for t in qt.pool.trials:
        final = truth.get((seed, _config_key(t.config.to_dict())))
        if final is None or not 0 < t.epoch < qt.max_epochs:
            continue
        pred = _predict(qt, t.trial_id, qt.max_epochs)
        if pred is not None:
            points.append(Point(PAUSED, pred[0], pred[1], pred[2], final, observed_before))
    return points


def replay(run_dir: Path, surrogate_dir: str | None, calibrate: bool | float = True,
           noise_sd: float | None = None, schedule_epochs: int | None = None,
           truth: dict[tuple[int, str], float] | None = None) -> list[Point]:
    """The replayed predictions of every step of ``run_dir`` that reached its target epoch
    (``schedule_epochs``: what-if, the run's epochs presented as those of a schedule this long).
    With ``truth`` (:func:`final_scores`), also after each step a ``PAUSED`` point for every
    started, unfinished trial whose final score ``truth`` knows for this run's seed."""
    from hubtune.search.journal import Journal
    from hubtune.space.config import Config

    qt = _optimizer(run_dir, surrogate_dir, calibrate, noise_sd, schedule_epochs)
    seed = int(_run_json(run_dir).get("seed", 0))
    points: list[Point] = []
    for e in Journal(run_dir / "journal.jsonl"):
        if e.get("event") != "result":
            continue
        step = e["step"]
        tid, to_epoch = str(step["trial_id"]), int(step.get("to_epoch") or 0)
        config = Config.from_dict(step["config"])
        if tid not in qt.pool:
            qt.pool.add([(tid, config)])
        observed_before = sum(t.epoch for t in qt.pool.trials)
        kind = "continuation" if qt.pool[tid].epoch > 0 else "new"
        pred = _predict(qt, tid, to_epoch) if to_epoch else None
        records = [(int(r["epoch"]), float(r.get("score", float("nan"))),
                    float(r.get("train_seconds", 0.0)) + float(r.get("eval_seconds", 0.0)))
                   for r in e.get("records") or []]
        at = [s for ep, s, _ in records if ep == to_epoch]
        if pred is not None and at and np.isfinite(at[-1]):
            points.append(Point(kind, pred[0], pred[1], pred[2], at[-1], observed_before))
        qt._apply(tid, config, records, str(e.get("status", "ok")), float(e.get("seconds", 0.0)),
                  None, to_epoch or None, None if pred is None else (pred[3], pred[4]), anchor=_anchor(step))
        if truth:
            points += _paused_points(qt, seed, truth)
    return points


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path)
    ap.add_argument("--surrogate", default=None, help="surrogate folder (default: each run's own)")
    ap.add_argument("--no-calibration", action="store_true", help="the GP's predictions, uncalibrated")
    ap.add_argument("--calibrate", type=float, default=None, metavar="W",
                    help="per-task calibration with W pseudo-residuals (default: the optimizer's default setting)")
    ap.add_argument("--gp-noise-sd", type=float, default=None,
                    help="what-if: the GP's learnt observation-noise std (fraction) set to this")
    ap.add_argument("--schedule-epochs", type=int, default=None,
                    help="what-if: present the runs' epochs to the surrogate as epochs of a schedule this long "
                         "(default: each run's --max-epochs, as the optimizer does)")
    ap.add_argument("--final-truth", type=Path, nargs="+", default=None, metavar="RUN",
                    help="runs whose trials reached the last epoch (e.g. defaults_sequential of the same "
                         "seeds): also score the predictions of paused trials' final scores against them")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--quiet", action="store_true", help="only the pooled table")
    args = ap.parse_args()
    if bad := [str(r) for r in args.runs + (args.final_truth or []) if not (r / "run.json").is_file()]:
        ap.error("not a hubtune run folder (no run.json): " + ", ".join(bad))
    truth = final_scores(args.final_truth) if args.final_truth else None
    pooled: list[Point] = []
    paused: list[Point] = []
    out: dict[str, Any] = {"runs": {}}
    for run in args.runs:
        calibrate: bool | float = False if args.no_calibration else (args.calibrate if args.calibrate else True)
        pts = replay(run, args.surrogate, calibrate, args.gp_noise_sd, args.schedule_epochs, truth)
        paused += [p for p in pts if p.kind == PAUSED]
        pts = [p for p in pts if p.kind != PAUSED]
        pooled += pts
        out["runs"][str(run)] = rep = report(pts, 0)
        if not args.quiet:
            print(format_table(str(run), rep))
    out["pooled"] = rep = report(pooled, 0)
    print(format_table(f"pooled over {len(args.runs)} runs (surrogate: {args.surrogate or 'each run own'})", rep))
    if truth is not None:
        out["paused_final"] = fin = asdict(summarize(paused))
        print(f"paused trials' final score (truth from {len(args.final_truth)} runs, {len(truth)} trials): "
              f"n {fin['n']}, in +-1 std {fmt_figure(fin['inside_1std'], True)}, "
              f"in +-1 sd+noise {fmt_figure(fin['inside_1sd_noise'], True)}, "
              f"signed err {fmt_figure(fin['mean_signed_error_points'])} pt, "
              f"abs err {fmt_figure(fin['mean_abs_error_points']).lstrip('+')} pt")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
