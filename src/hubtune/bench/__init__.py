"""Tabular replay benchmark: simulated runs of every method on a meta-dataset, statistics, peers.

Importing this package registers the peer optimizers (DEHB, SMAC3, Optuna,
Quick-Tune-Tool; :mod:`hubtune.bench.peers`) with the method registry, so
``get_method("optuna_tpe")`` works wherever the benchmark is used. ``hubtune run``
does not need them: peers search a fixed table of candidates.
"""

from hubtune.bench.peers import register_methods as _register_peers
from hubtune.optim.registry import register_method as _register_method

_register_peers(_register_method)
