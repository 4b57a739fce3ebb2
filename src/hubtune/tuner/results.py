"""What a search hands over: :class:`SearchResult`, and :func:`load` to get it back from a run folder.

Example::

    import hubtune
    result = hubtune.load("runs/fashion")       # a finished or an interrupted run
    print(result.summary())
    print(result.leaderboard())                 # pandas DataFrame (list of dicts without pandas)
    for p in result.predict(["a.jpg", "photos/"]):
        print(p.path, p.label, p.probability)
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError

LEADERBOARD_COLUMNS = ("rank", "trial_id", "model", "config", "best_epoch", "best_score",
                       "last_epoch", "last_score", "epochs_trained", "seconds", "status", "reason",
                       "exported")


@dataclass
class SearchResult:
    """What a finished (or, from :func:`load`, interrupted) search hands over.

    ``val_score`` / ``test_score`` are the exported model's scores in the run's
    ``metric`` (``metrics`` holds every metric of ``best/metrics.json``).
    """

    out: Path
    best_dir: Path | None
    model: str | None
    config: dict[str, Any] | None
    val_score: float | None
    test_score: float | None
    elapsed: float
    budget: float
    steps: int
    trials: int
    why: str
    metrics: dict[str, Any] = field(default_factory=dict)
    no_model_reason: str | None = None  # set when nothing could be exported
    near_chance: bool = False  # the exported model scores at or near chance level
    metric: str = "top1"

    def summary(self) -> str:
        """One paragraph for the terminal."""
        def pct(v: float | None) -> str:
            return "n/a" if v is None else f"{100 * v:.2f}%"

        spent = (f"{self.steps} steps over {self.trials} candidates in {self.elapsed:.0f}s of a "
                 f"{self.budget:.0f}s budget (ended: {self.why})")
        if self.best_dir is None:
            return f"no model was exported: {self.no_model_reason}; {spent}"
        name = "" if self.metric == "top1" else f" {self.metric}"
        text = (f"best model {self.model} (val{name} {pct(self.val_score)}, test{name} "
                f"{pct(self.test_score)}); {spent}; exported to {self.best_dir}")
        if self.near_chance:
            text += ("\nwarning: the exported model scores at or near chance level (always "
                     "predicting the most frequent class); it has not learned the task")
        return text

    # ------------------------------------------------------------ predict
    def predict(
        self,
        images: str | Path | Any | Iterable[str | Path | Any],
        *,
        top_k: int = 1,
        batch_size: int = 64,
        device: str = "auto",
    ) -> list[Any]:
        """Classify image files, folders (searched recursively) or PIL images with ``best/``.

        Returns one :class:`~hubtune.tuner.export.Prediction` per image, in order
        (``device`` as in ``hubtune predict --device``; the loaded model is kept for
        the next call).
        Raises :class:`RunError` when the run exported no model, ``ValueError`` for a
        bad ``top_k`` / ``batch_size``, and
        :class:`~hubtune.tuner.export.ExportError` naming an unreadable image.
        """
        from PIL import Image

        from hubtune.tuner.device import resolve_device
        from hubtune.tuner.export import ExportError, Predictor
        from hubtune.tuner.predict import Unreadable, collect_images, predict_stream

        if self.best_dir is None or not Path(self.best_dir).is_dir():
            raise RunError(f"{self.out} has no exported model (best/) to predict with")
        if isinstance(images, str | Path | Image.Image):
            images = [images]
        items: list[Any] = []
        for item in images:
            if isinstance(item, str | Path):
                files, missing = collect_images([item])
                if missing:
                    raise ExportError(f"cannot read image {missing[0].path}: {missing[0].reason}")
                items.extend(files)
            else:
                items.append(item)
        dev = resolve_device(device)
        cached = self.__dict__.get("_predictor")
        if cached is None or cached[0] != dev:
            cached = (dev, Predictor(self.best_dir, device=dev))
            self.__dict__["_predictor"] = cached  # not a dataclass field: not in result.json
        out = []
        for p in predict_stream(cached[1], items, batch_size=batch_size, top_k=top_k):
            if isinstance(p, Unreadable):
                raise ExportError(f"cannot read image {p.path}: {p.reason}")
            out.append(p)
        return out

    # -------------------------------------------------------- leaderboard
    def leaderboard(self) -> Any:
        """One row per trial, in the export's order: by the score of its latest epoch
        (what its checkpoint holds, what ``best/`` is chosen by), best first; the
        ``exported`` column marks the trial in ``best/``. Model, config, best and
        latest epoch and score, seconds, status. A pandas ``DataFrame`` when pandas
        is importable, else a list of dicts with the same columns."""
        rows = leaderboard_rows(self.out)
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=list(LEADERBOARD_COLUMNS))


def leaderboard_rows(run_dir: str | Path) -> list[dict[str, Any]]:
    """The leaderboard of ``run_dir``'s journal as dicts (see :meth:`SearchResult.leaderboard`).

    The order is :func:`hubtune.tuner.report.export_order`, the same rule as
    ``leaderboard.csv`` and the report's table."""
    from hubtune.tuner.report import export_order, gather

    run = Path(run_dir)
    if not (run / "journal.jsonl").exists():
        return []
    trials, _log, facts = gather(run)
    exported = facts.exported_trial
    rows = []
    for rank, t in enumerate(export_order(trials), 1):
        rows.append({
            "rank": rank, "trial_id": t.trial_id, "model": t.config.get("model"),
            "config": t.config, "best_epoch": t.best_epoch,
            "best_score": t.best if math.isfinite(t.best) else None,
            "last_epoch": t.epochs[-1] if t.epochs else None,
            "last_score": t.scores[-1] if t.scores else None,
            "epochs_trained": len(t.epochs), "seconds": t.seconds,
            "status": t.status, "reason": t.reason, "exported": t.trial_id == exported,
        })
    return rows


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise RunError(f"cannot read {path}: {exc}") from None


def load(run_dir: str | Path) -> SearchResult:
    """The :class:`SearchResult` of the run in ``run_dir`` (a ``hubtune run --out`` folder).

    A finished run's comes from ``result.json``; for a run that was interrupted
    (no ``result.json``, or a journal that went on after it) it is rebuilt from
    the journal and, when there is one, ``best/`` (``why`` is then
    ``"interrupted"``). Raises :class:`RunError` when ``run_dir`` holds no run.
    """
    from hubtune.search.journal import Journal, replay

    out = Path(run_dir)
    if not (out / "run.json").exists() and (out / "model.safetensors").exists():
        out = out.parent  # given the best/ folder
    if not (out / "run.json").exists():
        raise RunError(f"{run_dir} is not a hubtune run folder (no run.json)")
    settings = _read_json(out / "run.json")
    metric = settings.get("metric", "top1")
    history = replay(Journal(out / "journal.jsonl"))
    best = out / "best" if (out / "best" / "model.safetensors").exists() else None
    if (out / "result.json").exists():
        stored = _read_json(out / "result.json")
        if history.ended and int(stored.get("steps", -1)) == len(history.results):
            names = SearchResult.__dataclass_fields__
            stored = {k: v for k, v in stored.items() if k in names}
            stored.update(out=out, best_dir=best if stored.get("best_dir") else None)
            stored.setdefault("metric", metric)
            return SearchResult(**stored)
    return _interrupted(out, settings, history, best, metric)


def _interrupted(out: Path, settings: dict[str, Any], history: Any, best: Path | None,
                 metric: str) -> SearchResult:
    """A run without a current ``result.json``: what its journal and ``best/`` say."""
    metrics: dict[str, Any] = {}
    model = config = val = test = None
    near = False
    if best is not None and (best / "metrics.json").exists():
        metrics = _read_json(best / "metrics.json")
        model = metrics.get("model")
        meta = _read_json(best / "hubtune.json") if (best / "hubtune.json").exists() else {}
        config = meta.get("config")  # hubtune's Config; config.json is timm's
        val = (metrics.get("val") or {}).get(metric)
        test = (metrics.get("test") or {}).get(metric)
        near = bool(metrics.get("near_chance", False))
    else:
        latest: dict[str, tuple[float, Any]] = {}
        for r in history.results:
            for rec in r.records:
                latest[r.trial_id] = (rec.score, r.step.config)
        ranked = sorted((v for v in latest.values() if math.isfinite(v[0])), key=lambda v: -v[0])
        if ranked:
            val, cfg = ranked[0]
            model, config = cfg.model, cfg.to_dict()
    return SearchResult(
        out=out, best_dir=best, model=model, config=config, val_score=val, test_score=test,
        elapsed=history.elapsed, budget=float(settings.get("budget", 0.0)),
        steps=len(history.results), trials=len({r.trial_id for r in history.results}),
        why="interrupted", metrics=metrics, near_chance=near, metric=metric,
        no_model_reason=None if best is not None else "the run was interrupted before export",
    )
