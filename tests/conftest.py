"""Shared test set-up.

- ``slow`` marks the tests that take tens of seconds each (real multi-process
  runs, Ray, peers, the fault-injection campaign). ``make test`` runs them all
  (CI); ``make test-quick`` leaves them out while iterating.
- Whole modules are marked here, by file name (wherever under tests/ they
  live), so a slow module stays marked when tests are added to it.
- Layout: one folder per package of ``src/hubtune`` plus ``e2e``, ``docs`` and
  ``benchmarks``; every folder is a package, so modules are imported by their
  full name (``tests.e2e.test_run_e2e``: no clash between equal file names) and
  shared code comes from ``tests.helpers`` (docs/architecture.md, "Tests").
"""

from __future__ import annotations

import pytest

SLOW_MODULES = {
    "test_docs_examples",
    "test_ensemble_budget",
    "test_fault_injection",
    "test_integrations_ray_tune",
    "test_peers_qtt",
    "test_run_e2e",
    "test_run_ray",
    "test_run_folder_recovery",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
