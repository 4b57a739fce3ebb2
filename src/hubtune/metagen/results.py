"""Reading generation results back: outcome files, the meta-dataset they make, the summary table."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metagen.plan import RESULT_FILE, RunOutcome, RunTask

# ------------------------------------------------------------------ results


def result_path(out: Path, task: RunTask) -> Path:
    """Where the driver records ``task``'s outcome."""
    return Path(out) / "runs" / task.dataset.name / task.run_id / RESULT_FILE


def read_outcomes(out: str | Path) -> list[RunOutcome]:
    """Every recorded run outcome under ``out`` (sorted by dataset, then run id)."""
    outcomes = []
    for path in sorted(Path(out).glob(f"runs/*/*/{RESULT_FILE}")):
        try:
            outcomes.append(RunOutcome.from_dict(json.loads(path.read_text())))
        except (OSError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"{path}: unreadable run result ({exc}); delete it to redo the run") from None
    return outcomes


def build_metadataset(outcomes: Sequence[RunOutcome], max_epochs: int | None = None) -> MetaDataset:
    """The meta-dataset of ``outcomes``: runs with at least one epoch, the rest ``unmapped``."""
    meta = MetaDataset(max_epochs=max_epochs)
    unmapped = []
    for o in outcomes:
        if o.records:
            meta.append(o.task.dataset.name, o.task.run_id, o.task.config, o.records, o.meta_features,
                        schedule_epochs=max_epochs)
        else:
            unmapped.append(UnmappedRun(o.task.dataset.name, o.task.run_id,
                                        f"{o.status}: {o.reason or 'no epoch recorded'}"))
    meta.unmapped = unmapped
    return meta


@dataclass
class GenerateSummary:
    """Counts per dataset and failures by reason (``summary.json``)."""

    out: str
    planned: int
    finished: int
    skipped: int
    per_dataset: list[dict[str, Any]]
    failures: list[dict[str, Any]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        """The end-of-generation table (runs per status per dataset, then failures)."""
        lines = [f"{'dataset':<28} {'planned':>7} {'ok':>4} {'diverged':>8} {'failed':>6} "
                 f"{'best':>7} {'run s':>8}"]
        for r in self.per_dataset:
            best = "-" if r["best"] is None else f"{r['best']:.4f}"
            lines.append(f"{r['dataset']:<28} {r['planned']:>7} {r['ok']:>4} {r['diverged']:>8} "
                         f"{r['failed']:>6} {best:>7} {r['seconds']:>8.0f}")
        if self.failures:
            lines.append("runs that diverged or failed, by reason:")
            by_reason = Counter((f["status"], f["reason"]) for f in self.failures)
            for (status, reason), n in by_reason.most_common():
                lines.append(f"  {n} x {status}: {reason}")
        return "\n".join(lines)


def summarize(out: Path, tasks: Sequence[RunTask], outcomes: Sequence[RunOutcome], skipped: int,
              seconds: float) -> GenerateSummary:
    """Summary of the planned ``tasks`` given the recorded ``outcomes``."""
    planned_ids = {(t.dataset.name, t.run_id) for t in tasks}
    mine = [o for o in outcomes if (o.task.dataset.name, o.task.run_id) in planned_ids]
    rows = []
    for name in dict.fromkeys(t.dataset.name for t in tasks):
        runs = [o for o in mine if o.task.dataset.name == name]
        scores = [r.score for o in runs for r in o.records]
        rows.append({
            "dataset": name,
            "planned": sum(1 for t in tasks if t.dataset.name == name),
            "ok": sum(o.status == "ok" for o in runs),
            "diverged": sum(o.status == "diverged" for o in runs),
            "failed": sum(o.status == "failed" for o in runs),
            "best": max(scores) if scores else None,
            "seconds": sum(o.seconds for o in runs),
        })
    failures = [{"dataset": o.task.dataset.name, "run_id": o.task.run_id, "status": o.status,
                 "reason": o.reason, "epochs": len(o.records)} for o in mine if o.status != "ok"]
    return GenerateSummary(str(out), len(tasks), len(mine), skipped, rows, failures, seconds)
