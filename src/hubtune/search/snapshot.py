"""The optimizer snapshot of a durable search (``optimizer_state.json``) and its restore.

After every ask and tell the loop writes the optimizer's JSON state, how many
results it had been told and the steps still running, atomically. A resumed
run loads it and tells the optimizer only the results that reached the
journal afterwards; a damaged snapshot is not fatal: the journal is the
source of truth, and a fresh optimizer is then told every result.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hubtune.core.atomic import write_json_atomic
from hubtune.protocol.codec import step_from_dict, step_to_dict
from hubtune.protocol.steps import Optimizer, Step
from hubtune.search.journal import Replay


def write_snapshot(path: Path, n_results: int, pending: Iterable[Step], optimizer: Optimizer) -> None:
    """Write the optimizer's state, the count of results told and the running steps."""
    write_json_atomic(path, {
        "n_results": n_results,
        "pending": [step_to_dict(s) for s in pending],
        "state": optimizer.state_dict(),
    })


@dataclass
class Restored:
    """What a snapshot gave back: results already told, running steps, and any problem."""

    n_told: int = 0
    pending: dict[str, Step] = field(default_factory=dict)
    problem: str | None = None  # a damaged snapshot, in words (the optimizer was rebuilt)


def restore_optimizer(path: Path, optimizer: Optimizer, history: Replay) -> Restored:
    """Load the snapshot at ``path`` into ``optimizer`` (none there: nothing told yet).

    A damaged snapshot leaves ``optimizer`` fresh: nothing told, and the steps the
    journal shows interrupted are the running ones.
    """
    if not path.exists():
        return Restored()
    fresh = optimizer.state_dict()
    try:
        snap = json.loads(path.read_text())
        optimizer.load_state_dict(snap["state"])
        return Restored(int(snap["n_results"]),
                        {s["trial_id"]: step_from_dict(s) for s in snap.get("pending", [])})
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        # The journal is the source of truth: a fresh optimizer is told every result.
        optimizer.load_state_dict(fresh)
        return Restored(0, {s.trial_id: s for s in history.interrupted},
                        f"{path.name} is damaged ({type(exc).__name__}: {str(exc)[:80]}); the "
                        f"optimizer was rebuilt from the journal's {len(history.results)} results")
