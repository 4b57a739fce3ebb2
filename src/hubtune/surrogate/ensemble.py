"""An equally weighted mixture of surrogates meta-trained with different seeds.

One meta-trained deep-kernel GP is one draw of its network weights: surrogates
meta-trained on the same datasets with other seeds disagree, and on the
leave-one-out replay the search's regret moves by as much between such
surrogates as between the settings that were being compared
(docs/optimizer.md). :class:`SurrogateEnsemble` predicts with the mixture of
its members' posteriors (each conditioned on the same observations), so the
search follows what they agree on and its uncertainty includes their
disagreement. It has the interface the optimizer uses of a
:class:`~hubtune.surrogate.model.Surrogate` (``features``, ``cost``,
``likelihood.noise``, :meth:`predict`, :meth:`prior_mean`, :meth:`refit`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from hubtune.surrogate.model import Surrogate, SurrogateError


class _MeanNoise:
    """The members' mean observation-noise variance, where a Surrogate has its likelihood."""

    def __init__(self, members: Sequence[Surrogate]) -> None:
        self.noise = torch.tensor(float(np.mean([float(m.likelihood.noise.detach().item()) for m in members])))


def mixture_moments(means: np.ndarray, stds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of an equally weighted Gaussian mixture, per column of ``[members, n]`` arrays.

    >>> m, s = mixture_moments(np.array([[0.0], [1.0]]), np.array([[1.0], [1.0]]))
    >>> float(m[0]), round(float(s[0]) ** 2, 6)
    (0.5, 1.25)
    """
    means = np.asarray(means, dtype=np.float64)
    mean = means.mean(axis=0)
    var = (np.asarray(stds, dtype=np.float64) ** 2).mean(axis=0) + means.var(axis=0)
    return mean, np.sqrt(var)


class SurrogateEnsemble:
    """Mixture of surrogates that share their feature builder (the same meta-training data).

    The cost model is the first member's (it is fitted without a seed, so all
    members' are the same).
    """

    def __init__(self, members: Sequence[Surrogate]) -> None:
        if not members:
            raise SurrogateError("an ensemble needs at least one surrogate")
        spec = members[0].features.to_dict()
        if any(m.features.to_dict() != spec for m in members[1:]):
            raise SurrogateError("ensemble members must share their features (same meta-training data)")
        self.members = list(members)
        self.features = members[0].features
        self.cost = members[0].cost
        self.likelihood = _MeanNoise(self.members)
        self.record = {"ensemble": [m.record.get("seed") for m in self.members]}

    def predict(self, x_obs: np.ndarray, y_obs: np.ndarray, x_query: np.ndarray,
                extra_noise: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mixture mean and std of the members' posteriors (see :meth:`Surrogate.predict`)."""
        preds = [m.predict(x_obs, y_obs, x_query, extra_noise=extra_noise) for m in self.members]
        return mixture_moments(np.stack([p[0] for p in preds]), np.stack([p[1] for p in preds]))

    def prior_mean(self, x: np.ndarray) -> np.ndarray:
        """The members' mean zero-shot prediction."""
        return np.mean([m.prior_mean(x) for m in self.members], axis=0)

    def refit(self, x: np.ndarray, y: np.ndarray, steps: int, lr: float, seed: int) -> SurrogateEnsemble:
        """Every member refitted (:meth:`Surrogate.refit`), each with its own seed offset."""
        return SurrogateEnsemble([m.refit(x, y, steps=steps, lr=lr, seed=seed + i)
                                  for i, m in enumerate(self.members)])
