"""The local Ray instance the Ray Tune test modules share (one per module)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def local_ray(request: pytest.FixtureRequest):
    """Start Ray (2 CPUs, no dashboard) for the requesting module; shut it down after."""
    ray = pytest.importorskip("ray", reason="needs Ray Tune (pip install 'hubtune[ray]')")
    from ray import cloudpickle

    from tests.helpers import raytune

    # the workers cannot import the tests package: ship the trainable and the module by value
    cloudpickle.register_pickle_by_value(raytune)
    cloudpickle.register_pickle_by_value(request.module)
    ray.init(num_cpus=2, include_dashboard=False)
    yield
    ray.shutdown()
