"""Quick-Tune-Tool (PyPI ``quicktunetool`` 0.0.4, import ``qtt``) as a benchmark peer.

qtt pins ``numpy<2`` and ``scikit-learn==1.5.0``, so it lives in its own
virtual environment (``scripts/setup-peers-venv.sh``) and is driven across a
process boundary: :class:`QTTWorkerProcess` starts
:mod:`hubtune.bench.peers.qtt_worker` with that environment's Python and
speaks JSON lines with it.

How the peer is run (see docs/peers.md):

* Meta-training: qtt's ``PerfPredictor`` and ``CostPredictor`` are fitted with
  their own ``.fit(...)`` on the meta-TRAINING datasets of the fold
  (``ctx.train_metadata``; never its shipped pretrained optimizer, which
  downloads a surrogate trained on all of Meta-Album). Fitted predictors are
  cached per fold on disk (qtt's own save format) under
  ``$HUBTUNE_QTT_CACHE`` (default ``~/.cache/hubtune/qtt-cache``), keyed by a
  hash of the training data, so every seed and both variants reuse them.
* Input encoding: the table's NUMERIC one-hot columns (``cat:<hp>:<value>``
  as 0/1 numbers, plus the numeric hyperparameters and the dataset's
  meta-features). With string categoricals (its documented input) qtt's
  encoder slices features by count rather than by one-hot column and ignores
  most models.
* ``qtt`` runs ``cost_aware=False``, ``qtt_cost`` ``cost_aware=True``.
  Everything else is qtt's default (EI, 3 initial random configurations at one
  epoch, one epoch per step, no refit on the target dataset).
* Predictions run under gpytorch's ``fast_pred_var()`` (LOVE).
* ``HOME`` of the worker points at a scratch folder (qtt writes to
  ``~/.cache/qtt``).
* qtt's seed only picks its first configurations; hubtune hands it the
  candidates in a seeded random order so seeds differ as they would for a user.
"""

from __future__ import annotations

import glob
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hubtune.bench.peers._common import PeerOptimizer, require_candidates
from hubtune.core.metafeatures import DatasetMetaFeatures
from hubtune.protocol.context import TaskContext
from hubtune.protocol.steps import Step, StepResult
from hubtune.space.config import CONDITIONAL_DEFAULTS, Config, hyperparameter_names

if TYPE_CHECKING:
    from hubtune.metadata import MetaDataset

WORKER = Path(__file__).with_name("qtt_worker.py")
CATEGORICAL = ("model", "opt", "opt_betas", "sched", "data_augmentation", "auto_augment")
OFF_AS_MINUS_ONE = ("clip_grad", "layer_decay")
META_FEATURES = ("n_images", "n_classes", "mean_resolution", "channels")


class QTTUnavailableError(RuntimeError):
    """qtt's virtual environment is missing (run ``scripts/setup-peers-venv.sh``)."""


class QTTWorkerError(RuntimeError):
    """The qtt worker answered with an error or died; the message carries its log tail."""


def default_cache_dir() -> Path:
    """Where fitted predictors and the worker's scratch HOME live."""
    env = os.environ.get("HUBTUNE_QTT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "hubtune" / "qtt-cache"


def find_qtt_python() -> str:
    """The Python of qtt's venv: ``$HUBTUNE_QTT_PYTHON``, else the newest finished
    ``~/.cache/hubtune/qtt-venv-*`` made by ``scripts/setup-peers-venv.sh``.

    Raises:
        QTTUnavailableError: no such environment.
    """
    env = os.environ.get("HUBTUNE_QTT_PYTHON")
    if env:
        if not os.access(env, os.X_OK):
            raise QTTUnavailableError(f"HUBTUNE_QTT_PYTHON={env} is not an executable Python")
        return env
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    done = sorted(glob.glob(os.path.join(base, "hubtune", "qtt-venv-*", ".complete")),
                  key=os.path.getmtime)
    if not done:
        raise QTTUnavailableError(
            "Quick-Tune-Tool's virtual environment is missing: run scripts/setup-peers-venv.sh "
            "(or set HUBTUNE_QTT_PYTHON to a Python with quicktunetool installed)"
        )
    return os.path.join(os.path.dirname(done[-1]), "bin", "python")


class QTTWorkerProcess:
    """A running :mod:`~hubtune.bench.peers.qtt_worker` speaking JSON lines.

    Args:
        python: the Python of qtt's venv (default :func:`find_qtt_python`).
        home: scratch folder used as the worker's ``HOME``.
    """

    def __init__(self, python: str | None = None, home: Path | None = None) -> None:
        self.python = python or find_qtt_python()
        home = Path(home or default_cache_dir() / "home")
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        env["HOME"] = str(home)
        env.setdefault("OMP_NUM_THREADS", "1")
        self._log = tempfile.TemporaryFile(mode="w+")
        self._lock = threading.Lock()
        self.proc = subprocess.Popen(
            [self.python, "-I", str(WORKER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self._log, env=env, text=True, bufsize=1,
        )
        self._finalizer = weakref.finalize(self, _stop, self.proc, self._log)

    def log_tail(self, n: int = 2000) -> str:
        """The last ``n`` characters the worker wrote to stderr."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read()[-n:]

    def request(self, cmd: str, **payload: Any) -> dict[str, Any]:
        """Send one command and return the worker's answer (raises on an error answer)."""
        with self._lock:
            if self.proc.poll() is not None:
                raise QTTWorkerError(f"qtt worker exited ({self.proc.returncode}): "
                                     f"{self.log_tail()}")
            try:
                self.proc.stdin.write(json.dumps({"cmd": cmd, **payload}) + "\n")
                self.proc.stdin.flush()
                line = self.proc.stdout.readline()
            except BrokenPipeError:
                line = ""
            if not line:
                self.proc.wait(timeout=10)
                raise QTTWorkerError(f"qtt worker died during {cmd!r} "
                                     f"(exit {self.proc.returncode}): {self.log_tail()}")
        answer = json.loads(line)
        if not answer.get("ok"):
            raise QTTWorkerError(f"qtt worker could not {cmd}: {answer.get('error')}")
        return answer

    def close(self) -> None:
        """Stop the worker (also done when this object is garbage-collected)."""
        self._finalizer()


def _stop(proc: subprocess.Popen, log: Any) -> None:
    if proc.poll() is None:
        try:
            proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
            proc.stdin.flush()
            proc.wait(timeout=5)
        except (OSError, subprocess.TimeoutExpired, ValueError):
            proc.kill()
            proc.wait()
    log.close()


# ------------------------------------------------------------------ encoding
def _category(value: Any) -> str:
    if value is None:
        return "None"
    if isinstance(value, tuple):
        return json.dumps(list(value)).replace(",", ", ").replace(",  ", ", ")
    return str(value)


def table_columns(configs: Sequence[Config], with_meta_features: bool) -> list[str]:
    """Column names of the table's numeric encoding of ``configs`` (one-hot ``cat:`` blocks)."""
    columns: list[str] = []
    for name in hyperparameter_names():
        if name in CATEGORICAL:
            cats = sorted({_category(getattr(c, name)) for c in configs})
            columns.extend(f"cat:{name}:{v}" for v in cats)
        else:
            columns.append(name)
    if with_meta_features:
        columns.extend(f"meta:{m}" for m in META_FEATURES)
    return columns


def table_rows(configs: Sequence[Config], columns: Sequence[str],
               meta_features: DatasetMetaFeatures | None = None) -> list[list[float]]:
    """``configs`` as numeric rows over ``columns`` (see :func:`table_columns`).

    Categorical values become 0/1 one-hot columns; booleans 0/1;
    ``clip_grad``/``layer_decay`` "off" becomes -1 and an inactive conditional
    its default value, as in the Quick-Tune table.
    """
    index = {c: i for i, c in enumerate(columns)}
    rows = []
    for cfg in configs:
        row = [0.0] * len(columns)
        for name, value in cfg.to_dict().items():
            if name in CATEGORICAL:
                key = f"cat:{name}:{_category(getattr(cfg, name))}"
                if key in index:
                    row[index[key]] = 1.0
                continue
            if value is None:
                value = -1.0 if name in OFF_AS_MINUS_ONE else CONDITIONAL_DEFAULTS[name]
            row[index[name]] = float(value)
        if meta_features is not None and "meta:n_images" in index:
            for m in META_FEATURES:
                row[index[f"meta:{m}"]] = float(getattr(meta_features, m))
        rows.append(row)
    return rows


def _curve_rows(matrix: np.ndarray, width: int) -> list[list[float | None]]:
    out = np.full((matrix.shape[0], width), np.nan)
    w = min(width, matrix.shape[1])
    out[:, :w] = matrix[:, :w]
    return [[None if math.isnan(v) else float(v) for v in row] for row in out.tolist()]


def fold_payload(train_metadata: MetaDataset, candidate_configs: Sequence[Config],
                 max_epochs: int, target_has_meta_features: bool,
                 perf_fit_params: dict[str, Any] | None = None,
                 cost_fit_params: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``fit`` request for one fold: the training datasets' rows, curves and costs.

    Curves are validation scores as fractions, NaN (JSON ``null``) after a run
    ends; the cost target is a run's mean seconds per epoch. Meta-features are
    included when the target and every training dataset have them.
    """
    train_runs = [train_metadata[d] for d in train_metadata.datasets]
    with_mf = target_has_meta_features and all(r.meta_features is not None for r in train_runs)
    columns = table_columns([c for r in train_runs for c in r.configs] + list(candidate_configs),
                            with_mf)
    X: list[list[float]] = []
    curves: list[list[float | None]] = []
    costs: list[list[float]] = []
    for runs in train_runs:
        X.extend(table_rows(runs.configs, columns, runs.meta_features if with_mf else None))
        curves.extend(_curve_rows(runs.scores, max_epochs))
        with np.errstate(all="ignore"):
            per_epoch = np.nanmean(runs.seconds, axis=1)
        costs.extend([[float(0.0 if math.isnan(v) else v)] for v in per_epoch])
    return {"columns": columns, "X": X, "curves": curves, "costs": costs, "fit_cost": True,
            "seed": 0, "perf_fit_params": dict(perf_fit_params or {}),
            "cost_fit_params": dict(cost_fit_params or {})}


def fold_key(payload: dict[str, Any], qtt_version: str | None) -> str:
    """Cache key of a fold's fitted predictors (hash of the training data and settings)."""
    blob = json.dumps({**payload, "qtt": qtt_version}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def prefit(metadata: MetaDataset, datasets: Sequence[str] | None = None,
           folds: int | None = None, cache_dir: str | Path | None = None,
           python: str | None = None, perf_fit_params: dict[str, Any] | None = None,
           cost_fit_params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Meta-train (or find cached) qtt predictors for every test dataset's fold.

    Uses the benchmark's own fold split (:func:`hubtune.bench.runner.fold_train_metadata`),
    so the cache keys are those :class:`QuickTuneTool` computes during the
    benchmark. The runner charges an optimizer's construction to the
    simulated clock; meta-training is offline work (as hubtune's own
    surrogate is meta-trained before a benchmark), so run this first.
    """
    from hubtune.bench.runner import fold_train_metadata

    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    worker = QTTWorkerProcess(python=python, home=cache / "home")
    try:
        version = worker.request("hello").get("qtt_version")
        out = []
        names = list(datasets or metadata.datasets)
        for name in names:
            runs = metadata[name]
            train = fold_train_metadata(metadata, name, test_datasets=names, folds=folds)
            payload = fold_payload(train, runs.configs, metadata.max_epochs,
                                   runs.meta_features is not None, perf_fit_params,
                                   cost_fit_params)
            key = fold_key(payload, version)
            info = worker.request("fit", cache_dir=str(cache / "predictors"), key=key, **payload)
            out.append({"dataset": name, "key": key, "cached": info["cached"],
                        "seconds": info["seconds"]})
            print(f"{name}: {'cached' if info['cached'] else 'fitted'} in "
                  f"{info['seconds']:.0f}s ({key})", file=sys.stderr)
        return out
    finally:
        worker.close()


# ------------------------------------------------------------------- the peer
class QuickTuneTool(PeerOptimizer):
    """Quick-Tune-Tool's ``QuickOptimizer`` over the table's configurations.

    Args:
        ctx: the task; needs ``ctx.candidates`` and ``ctx.train_metadata``.
        cost_aware: qtt's ``cost_aware`` setting (``qtt_cost`` when true).
        fast_pred_var: predict under gpytorch's ``fast_pred_var()``.
        perf_fit_params / cost_fit_params: overrides of qtt's fit parameters
            (default: qtt's own defaults).
        cache_dir: where fitted predictors are cached (default :func:`default_cache_dir`).
        python: the Python of qtt's venv (default :func:`find_qtt_python`).
    """

    def __init__(self, ctx: TaskContext, cost_aware: bool = False, fast_pred_var: bool = True,
                 perf_fit_params: dict[str, Any] | None = None,
                 cost_fit_params: dict[str, Any] | None = None,
                 cache_dir: str | Path | None = None, python: str | None = None) -> None:
        self.method = "qtt_cost" if cost_aware else "qtt"
        require_candidates(ctx, self.method)
        if ctx.train_metadata is None or not ctx.train_metadata.datasets:
            raise ValueError(f"{self.method} meta-learns: it needs ctx.train_metadata")
        super().__init__(ctx)
        cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        cache.mkdir(parents=True, exist_ok=True)
        self.worker = QTTWorkerProcess(python=python, home=cache / "home")
        self.versions = self.worker.request("hello")
        payload = fold_payload(ctx.train_metadata, [c.config for c in ctx.candidates],
                               ctx.max_epochs, ctx.meta_features is not None,
                               perf_fit_params, cost_fit_params)
        columns = payload["columns"]
        with_mf = columns[-1].startswith("meta:")
        self.fold_key = fold_key(payload, self.versions.get("qtt_version"))
        self.fit_info = self.worker.request("fit", cache_dir=str(cache / "predictors"),
                                            key=self.fold_key, **payload)
        candidates = list(ctx.candidates)
        # seeded order of the candidates: qtt's seed alone only picks its first configs
        self._order = [int(i) for i in np.random.default_rng(ctx.seed).permutation(len(candidates))]
        self.candidates = [candidates[i] for i in self._order]
        self._workdir = tempfile.mkdtemp(prefix="run-", dir=cache)
        weakref.finalize(self, shutil.rmtree, self._workdir, True)
        metafeat = None
        if with_mf:
            metafeat = {f"meta:{m}": float(getattr(ctx.meta_features, m)) for m in META_FEATURES}
        config_columns = [c for c in columns if not c.startswith("meta:")]
        self.worker.request(
            "setup", workdir=self._workdir, max_fidelity=ctx.max_epochs, cost_aware=cost_aware,
            seed=ctx.seed, fast_pred_var=fast_pred_var, columns=config_columns,
            X=table_rows([c.config for c in self.candidates], config_columns), metafeat=metafeat,
        )
        self._position = {c.trial_id: i for i, c in enumerate(self.candidates)}
        self.decision_seconds: list[float] = []

    def _ask(self, budget_left: float | None) -> Step | None:
        answer = self.worker.request("ask")
        self.decision_seconds.append(float(answer["seconds"]))
        job = answer["job"]
        if job is None:
            return None
        cand = self.candidates[job["config-id"]]
        return Step(trial_id=cand.trial_id, config=cand.config, to_epoch=int(job["fidelity"]),
                    info={"qtt_seconds": float(answer["seconds"])})

    def _tell(self, result: StepResult) -> None:
        position = self._position[result.step.trial_id]
        ended = result.status != "ok"
        if result.records:
            rec = result.records[-1]
            self.worker.request("tell", **{"config-id": position}, fidelity=int(rec.epoch),
                                score=float(rec.score), cost=float(result.seconds),
                                status=True, ended=ended)
        else:
            self.worker.request("tell", **{"config-id": position},
                                fidelity=int(result.step.to_epoch), score=0.0,
                                cost=float(result.seconds), status=False, ended=True)

    def close(self) -> None:
        """Stop the worker process."""
        self.worker.close()


def make_qtt(ctx: TaskContext, cost_aware: bool = False, **options: Any) -> QuickTuneTool:
    """Factory for the registry (``qtt``; ``qtt_cost`` with ``cost_aware=True``)."""
    return QuickTuneTool(ctx, cost_aware=cost_aware, **options)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m hubtune.bench.peers.qtt_peer prefit --metadata DIR [--folds K]``."""
    import argparse

    from hubtune.metadata import load_metadata

    parser = argparse.ArgumentParser(prog="python -m hubtune.bench.peers.qtt_peer")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("hello", help="start the worker and print qtt's versions")
    pre = sub.add_parser("prefit", help="meta-train qtt's predictors for every fold")
    pre.add_argument("--metadata", required=True)
    pre.add_argument("--datasets", default=None, help="comma-separated test datasets")
    pre.add_argument("--folds", type=int, default=None, help="k folds (default: leave-one-out)")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "hello":
            print(json.dumps(QTTWorkerProcess().request("hello")))
        else:
            md = load_metadata(args.metadata)
            names = args.datasets.split(",") if args.datasets else None
            print(json.dumps(prefit(md, names, folds=args.folds), indent=1))
    except (QTTUnavailableError, QTTWorkerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
