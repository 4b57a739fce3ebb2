"""Wrapped peer optimizers for the benchmark: DEHB, Optuna (TPE + Hyperband), SMAC3, Quick-Tune-Tool.

Each peer is a factory ``make(ctx: TaskContext) -> Optimizer`` over the
table's configurations of the test dataset. Importing this package is light:
the peers' libraries are imported only when a method is built. The method
registry (:mod:`hubtune.optim.registry`) calls :func:`register_methods`.

=============== ==========================================================================
name            what runs
=============== ==========================================================================
dehb            DEHB ask/tell, fidelity = epochs (1..max, eta 3), promotions re-train
dehb_cont       the same with a continuation cache (continues earlier trials)
smac_mf         SMAC3 MultiFidelityFacade (Hyperband, eta 3), promotions re-train
smac_mf_cont    the same with a continuation cache
optuna_tpe_hb   Optuna TPESampler + HyperbandPruner, trials continue until pruned
qtt             Quick-Tune-Tool QuickOptimizer (cost_aware=False), own venv, subprocess
qtt_cost        the same with cost_aware=True
=============== ==========================================================================

See docs/peers.md for how each is run fairly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

PEERS: tuple[tuple[str, str, dict[str, Any], bool, bool, bool, str], ...] = (
    # name, factory path, options, needs_metadata, supports_async, subprocess, description
    ("dehb", "hubtune.bench.peers.dehb_peer:make_dehb", {}, False, True, False,
     "DEHB (ask/tell, fidelity=epochs 1..max, eta 3) on the table; promoted configs "
     "re-train from scratch"),
    ("dehb_cont", "hubtune.bench.peers.dehb_peer:make_dehb", {"continuation": True},
     False, True, False,
     "DEHB with a continuation cache: promoted configs continue their earlier trial"),
    ("smac_mf", "hubtune.bench.peers.smac_peer:make_smac_mf", {}, False, True, False,
     "SMAC3 multi-fidelity facade (RF, Hyperband eta 3, budget=epochs); promoted configs "
     "re-train from scratch"),
    ("smac_mf_cont", "hubtune.bench.peers.smac_peer:make_smac_mf", {"continuation": True},
     False, True, False,
     "SMAC3 multi-fidelity with a continuation cache: promoted configs continue"),
    ("optuna_tpe_hb", "hubtune.bench.peers.optuna_peer:make_optuna_tpe_hb", {}, False, True,
     False, "Optuna TPESampler + HyperbandPruner (eta 3); a trial trains until pruned"),
    ("qtt", "hubtune.bench.peers.qtt_peer:make_qtt", {}, True, False, True,
     "Quick-Tune-Tool 0.0.4 QuickOptimizer, predictors meta-trained per fold, numeric "
     "one-hot input, cost_aware=False (own venv)"),
    ("qtt_cost", "hubtune.bench.peers.qtt_peer:make_qtt", {"cost_aware": True}, True, False,
     True, "Quick-Tune-Tool 0.0.4 with cost_aware=True (own venv)"),
)


def register_methods(register: Callable[..., Any]) -> None:
    """Register every peer with ``register`` (:func:`hubtune.optim.registry.register_method`)."""
    for name, path, options, needs_md, is_async, subproc, desc in PEERS:
        register(name, path, options=options, needs_metadata=needs_md,
                 supports_async=is_async, subprocess=subproc, description=desc, replace=True)
