"""Classification scores from confusion counts (numpy only): what a search can optimize.

``confusion[i, j]`` counts the images of true class ``i`` predicted as ``j``.

- ``top1``: accuracy, ``trace / total``.
- ``balanced_accuracy``: the mean per-class recall over the classes present in
  the true labels (as scikit-learn's ``balanced_accuracy_score``).
- ``macro_f1``: the unweighted mean of per-class F1 over the classes that occur
  as a true or a predicted label (as scikit-learn's ``f1_score(average="macro")``).

Example:
    >>> import numpy as np
    >>> s = confusion_scores(np.array([[8, 0], [2, 0]]))  # always predicts class 0
    >>> round(s["top1"], 2), round(s["balanced_accuracy"], 2), round(s["macro_f1"], 3)
    (0.8, 0.5, 0.444)
"""

from __future__ import annotations

import numpy as np

METRICS: tuple[str, ...] = ("top1", "balanced_accuracy", "macro_f1")
"""Scores a search can optimize (``hubtune run --metric``); higher is better, all in [0, 1]."""


def confusion_scores(confusion: np.ndarray) -> dict[str, float]:
    """``top1``, ``balanced_accuracy`` and ``macro_f1`` of a square confusion-count matrix."""
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"a confusion matrix must be square, got shape {c.shape}")
    total = c.sum()
    if total <= 0:
        return {m: 0.0 for m in METRICS}
    tp = np.diag(c)
    support = c.sum(axis=1)  # true images per class
    predicted = c.sum(axis=0)
    present = support > 0
    recall = tp[present] / support[present]
    occurs = present | (predicted > 0)
    f1 = 2 * tp[occurs] / (support[occurs] + predicted[occurs])
    return {
        "top1": float(tp.sum() / total),
        "balanced_accuracy": float(recall.mean()),
        "macro_f1": float(f1.mean()),
    }
