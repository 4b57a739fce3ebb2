"""One planned generation run: load its data, finetune it epoch by epoch, keep its committed records."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from hubtune.core.records import EpochRecord
from hubtune.metagen.plan import (
    DatasetSpec,
    GenerateSettings,
    RunOutcome,
    RunTask,
)

# ------------------------------------------------------------------ one run
_DATA: dict[tuple[Any, ...], Any] = {}


def _load_data(spec: DatasetSpec, image_size: int, cache_dir: Path | None):
    key = (spec.source, spec.subset, spec.data_seed, image_size)
    if key not in _DATA:
        from hubtune.data import load_dataset

        _DATA.clear()  # one dataset in memory per process is enough
        _DATA[key] = load_dataset(spec.source, image_size=image_size, subset=spec.subset,
                                  seed=spec.data_seed, cache_dir=cache_dir)
    return _DATA[key]


def _committed_records(workdir: Path) -> list[EpochRecord]:
    """The run's records as its checkpoint commits them, else from ``records.jsonl``.

    The checkpoint's list is the one consistent with the weights; the JSON-lines
    file can hold an epoch twice after a process was killed between training an
    epoch and committing it, so it is only read without a checkpoint, keeping the
    last record of each epoch and stopping at the first gap.
    """
    from hubtune.finetune import read_records
    from hubtune.finetune.checkpoint import has_checkpoint, read_state

    if has_checkpoint(workdir):
        return [EpochRecord.from_dict(r) for r in read_state(workdir).get("records", [])]
    by_epoch = {r.epoch: r for r in read_records(workdir)}
    out = []
    while len(out) + 1 in by_epoch:
        out.append(by_epoch[len(out) + 1])
    return out


def _drop_checkpoint(workdir: Path) -> None:
    for p in list(workdir.glob("tensors-*.safetensors*")) + [workdir / "checkpoint.json"]:
        p.unlink(missing_ok=True)


def execute_run(task: dict[str, Any], settings: dict[str, Any], out: str) -> dict[str, Any]:
    """Train one run to ``max_epochs``, one epoch per step (checkpoint after each); JSON in and out.

    Runs in the driver (one worker) or in a Ray task. Continues from the run's
    checkpoint if an earlier attempt was interrupted. Never raises for a run
    that cannot be built or trained: the outcome says ``failed`` with the reason.
    Writes nothing but the trainer's workdir; the driver records the result.
    """
    from hubtune.finetune import advance

    t = RunTask.from_dict(task)
    s = GenerateSettings.from_dict(settings)
    workdir = Path(out) / "runs" / t.dataset.name / t.run_id
    start = time.perf_counter()
    status, reason, meta_features = "ok", None, None
    try:
        data = _load_data(t.dataset, s.image_size, Path(out) / "data-cache")
        meta_features = data.meta_features
        for epoch in range(1, s.max_epochs + 1):
            res = advance(t.config, epoch, data=data, workdir=workdir, max_epochs=s.max_epochs,
                          seed=s.seed, device=s.device, num_threads=s.num_threads,
                          pretrained=s.pretrained)
            if res.status != "ok":
                status, reason = res.status, res.reason
                break
        records = _committed_records(workdir)
    except Exception as exc:  # one broken run must not end the generation
        status, reason = "failed", f"{type(exc).__name__}: {exc}"
        try:
            records = _committed_records(workdir)
        except Exception:
            records = []
    if status == "ok" and len(records) < s.max_epochs:  # pragma: no cover - trainer invariant
        status, reason = "failed", f"only {len(records)} of {s.max_epochs} epochs were recorded"
    if not s.keep_checkpoints:
        _drop_checkpoint(workdir)
    outcome = RunOutcome(t, status, reason, records, meta_features, time.perf_counter() - start)
    return outcome.to_dict()
