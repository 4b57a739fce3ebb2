"""Quick-Tune-Tool (PyPI ``quicktunetool``, import ``qtt``) worker: JSON lines over stdin/stdout.

Runs inside qtt's own virtual environment (``scripts/setup-peers-venv.sh``),
so it imports only the standard library and qtt (with qtt's own dependencies
numpy, pandas, gpytorch); never hubtune. hubtune's side is
:mod:`hubtune.bench.peers.qtt_peer`.

Each request is one JSON object on one line with a ``cmd``; each answer is
one JSON object on one line, ``{"ok": true, ...}`` or ``{"ok": false,
"error": "..."}``. Commands:

* ``hello``: versions.
* ``fit``: meta-train qtt's ``PerfPredictor`` (and ``CostPredictor`` when
  ``fit_cost``) with their ``.fit(...)`` on the given training rows, or load
  them from ``cache_dir/<key>`` where an earlier ``fit`` saved them (qtt's own
  save format).
* ``setup``: build a ``QuickOptimizer`` on the fitted predictors over the
  candidate rows (``setup_pandas``) with the dataset's meta-features.
* ``ask`` / ``tell``: the optimizer's ask and tell; ``tell`` with
  ``"ended": true`` also stops the configuration (its curve cannot go on).
* ``quit``.

Predictions run under gpytorch's ``fast_pred_var()`` (LOVE) when ``setup``
asks for it.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
import traceback

PROTOCOL_OUT = sys.stdout


class WorkerError(Exception):
    """A request the worker cannot serve; answered as an error line."""


def _frame(columns, rows):
    import pandas as pd

    return pd.DataFrame([[float(v) for v in row] for row in rows], columns=list(columns))


def _matrix(rows):
    import numpy as np

    return np.array([[math.nan if v is None else float(v) for v in row] for row in rows],
                    dtype=float)


class Worker:
    def __init__(self) -> None:
        self.perf = None
        self.cost = None
        self.optimizer = None
        self.fast_pred_var = True

    # ----------------------------------------------------------- commands
    def hello(self, req):
        import importlib.metadata as md

        return {"qtt_version": md.version("quicktunetool"), "python": sys.version.split()[0],
                "numpy": md.version("numpy"), "gpytorch": md.version("gpytorch")}

    def fit(self, req):
        import fcntl

        folder = os.path.join(req["cache_dir"], req["key"])
        os.makedirs(folder, exist_ok=True)
        # parallel benchmark processes of one fold meta-train once: the others wait
        with open(os.path.join(folder, "lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            return self._fit_or_load(req, folder)

    def _fit_or_load(self, req, folder):
        from qtt.predictors import CostPredictor, PerfPredictor

        done = os.path.join(folder, "complete.json")
        perf_dir, cost_dir = os.path.join(folder, "perf"), os.path.join(folder, "cost")
        fit_cost = bool(req.get("fit_cost", True))
        start = time.perf_counter()
        if os.path.exists(done):
            self.perf = PerfPredictor.load(perf_dir, verbose=False)
            self.cost = CostPredictor.load(cost_dir, verbose=False) if fit_cost else None
            return {"cached": True, "seconds": time.perf_counter() - start}
        seed = int(req.get("seed", 0))
        X = _frame(req["columns"], req["X"])
        curves = _matrix(req["curves"])
        perf = PerfPredictor(path=perf_dir, seed=seed, verbosity=0,
                             fit_params=req.get("perf_fit_params", {}))
        perf.fit(X, curves)
        perf.save(perf_dir, verbose=False)
        cost = None
        if fit_cost:
            costs = _matrix(req["costs"])
            cost = CostPredictor(path=cost_dir, seed=seed, verbosity=0,
                                 fit_params=req.get("cost_fit_params", {}))
            cost.fit(_frame(req["columns"], req["X"]), costs)
            cost.save(cost_dir, verbose=False)
        with open(done, "w") as fh:
            json.dump({"key": req["key"], "rows": len(req["X"])}, fh)
        self.perf, self.cost = perf, cost
        return {"cached": False, "seconds": time.perf_counter() - start}

    def setup(self, req):
        from ConfigSpace import ConfigurationSpace
        from qtt.optimizers import QuickOptimizer

        if self.perf is None:
            raise WorkerError("setup before fit: the predictors are not meta-trained")
        cost_aware = bool(req.get("cost_aware", False))
        if cost_aware and self.cost is None:
            raise WorkerError("cost_aware needs a CostPredictor: fit with fit_cost=true")
        self.fast_pred_var = bool(req.get("fast_pred_var", True))
        path = req["workdir"]
        self.perf.reset_path(path)
        opt = QuickOptimizer(
            ConfigurationSpace(), int(req["max_fidelity"]), perf_predictor=self.perf,
            cost_predictor=self.cost if cost_aware else None, cost_aware=cost_aware,
            seed=int(req.get("seed", 0)), path=path, verbosity=0,
        )
        opt.setup_pandas(_frame(req["columns"], req["X"]), metafeat=req.get("metafeat"))
        self.optimizer = opt
        return {"n": int(opt.N)}

    def ask(self, req):
        if self.optimizer is None:
            raise WorkerError("ask before setup")
        ctx = contextlib.nullcontext()
        if self.fast_pred_var:
            import gpytorch

            ctx = gpytorch.settings.fast_pred_var()
        start = time.perf_counter()
        with ctx:
            self.optimizer.ante()
            job = self.optimizer.ask()
        seconds = time.perf_counter() - start
        if job is None:
            return {"job": None, "seconds": seconds}
        return {"job": {"config-id": int(job["config-id"]), "fidelity": int(job["fidelity"])},
                "seconds": seconds}

    def tell(self, req):
        if self.optimizer is None:
            raise WorkerError("tell before setup")
        start = time.perf_counter()
        index = int(req["config-id"])
        self.optimizer.tell({"config-id": index, "fidelity": int(req["fidelity"]),
                             "score": float(req["score"]), "cost": float(req.get("cost", 0.0)),
                             "status": bool(req["status"])})
        if req.get("ended"):
            self.optimizer.stoped.add(index)
            self.optimizer.finished = self.optimizer._check_is_finished()
        self.optimizer.post()
        return {"seconds": time.perf_counter() - start}


def main() -> int:
    # qtt and its dependencies may print: keep the protocol channel clean.
    sys.stdout = sys.stderr
    worker = Worker()
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            req = json.loads(line)
            cmd = req.get("cmd")
            if cmd == "quit":
                PROTOCOL_OUT.write(json.dumps({"ok": True}) + "\n")
                PROTOCOL_OUT.flush()
                return 0
            handler = getattr(worker, str(cmd), None) if cmd in (
                "hello", "fit", "setup", "ask", "tell") else None
            if handler is None:
                raise WorkerError(f"unknown command {cmd!r}")
            answer = {"ok": True, **handler(req)}
        except Exception as exc:  # answered, not raised: the parent decides
            traceback.print_exc(file=sys.stderr)
            answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        PROTOCOL_OUT.write(json.dumps(answer) + "\n")
        PROTOCOL_OUT.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
