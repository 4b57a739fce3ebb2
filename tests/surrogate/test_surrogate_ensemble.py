"""SurrogateEnsemble: the mixture of per-fold surrogates meta-trained with different seeds."""

from __future__ import annotations

import numpy as np
import pytest

from hubtune.surrogate.ensemble import SurrogateEnsemble, mixture_moments
from hubtune.surrogate.model import SurrogateError


def test_mixture_moments_add_the_members_disagreement_to_their_variance():
    means = np.array([[0.2, 0.5], [0.4, 0.5]])
    stds = np.array([[0.1, 0.1], [0.1, 0.3]])
    m, s = mixture_moments(means, stds)
    assert m.tolist() == pytest.approx([0.3, 0.5])
    # variance = mean of variances + variance of means
    assert (s**2).tolist() == pytest.approx([0.01 + 0.01, (0.01 + 0.09) / 2])


def test_an_ensemble_of_one_predicts_as_its_member_and_none_is_refused():
    from hubtune.surrogate.cache import load_default_surrogate

    sur = load_default_surrogate()
    ens = SurrogateEnsemble([sur])
    rng = np.random.default_rng(0)
    x = rng.random((6, sur.features.dim)).astype(np.float32)
    y = rng.random(4)
    got, want = ens.predict(x[:4], y, x[4:]), sur.predict(x[:4], y, x[4:])
    assert np.allclose(got[0], want[0]) and np.allclose(got[1], want[1])
    assert float(ens.likelihood.noise) == pytest.approx(float(sur.likelihood.noise))
    with pytest.raises(SurrogateError):
        SurrogateEnsemble([])
