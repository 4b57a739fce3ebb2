"""Run search steps on a pool of Ray workers (``hubtune run --workers N``).

:class:`RayExecutor` is the parallel :class:`~hubtune.search.executor.Executor`:
``N`` slots, each a Ray actor that holds the evaluator (the real trainer and the
dataset, shipped once through Ray's object store) and advances one step at a
time from the trial's checkpoint in the run folder. Without an address a local
Ray instance is started for the run (and stopped after it); with one
(``auto`` or ``HOST:PORT``) hubtune joins an existing cluster, whose nodes must
all see the run folder at the same path (a shared filesystem).

Resources: each worker gets ``cpus`` CPU cores (by default the cores divided
by the workers) and ``gpus`` GPUs (one per trial on CUDA by default; a fraction
packs several small trials onto one GPU). Ray pins each worker to its GPU
(``CUDA_VISIBLE_DEVICES``), so the trainer's ``cuda`` is that GPU.

While a worker runs a step it keeps ``<status_dir>/slot-<k>.json`` (pid, host,
trial, epoch, start time); the file is removed when the step ends. A worker
process that dies mid-step (killed, out of memory, node lost) is reported as a
lost :class:`~hubtune.search.executor.Completion`, and its slot gets a fresh worker.
Ray itself is imported only here, and only when this class is used.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hubtune.core.errors import RunError
from hubtune.protocol.codec import result_from_dict, result_to_dict, step_from_dict, step_to_dict
from hubtune.protocol.steps import Evaluator, Step, StepResult
from hubtune.search.executor import Completion


class PoolError(RunError):
    """The Ray worker pool cannot start (Ray missing, cluster unreachable, too few resources)."""


def parse_gpus(text: str | Sequence[int] | None) -> list[int] | None:
    """GPU indices from ``"0,1,3"`` (or a list), validated; ``None`` stays ``None``.

    >>> parse_gpus("0, 2")
    [0, 2]
    """
    if text is None:
        return None
    items = text.split(",") if isinstance(text, str) else list(text)
    out: list[int] = []
    for item in items:
        token = str(item).strip()
        if not token:
            continue
        if not token.isdigit():
            raise RunError(f"--gpus takes GPU indices like 0,1,3; {token!r} is not one")
        out.append(int(token))
    if not out:
        raise RunError("--gpus names no GPU; give indices like 0,1")
    if len(set(out)) != len(out):
        raise RunError(f"--gpus lists a GPU twice: {text}")
    return out


@dataclass(frozen=True)
class TrialResources:
    """What one worker (one running step) holds: CPU cores and a GPU share."""

    cpus: int
    gpus: float


def workers_that_fit(nodes: Sequence[dict[str, float]], res: TrialResources) -> int:
    """How many workers of ``res`` the nodes (each ``{"CPU": .., "GPU": ..}``) can hold at once."""
    total = 0
    for node in nodes:
        fit = math.floor(node.get("CPU", 0.0) / res.cpus + 1e-9) if res.cpus > 0 else math.inf
        if res.gpus > 0:
            fit = min(fit, math.floor(node.get("GPU", 0.0) / res.gpus + 1e-9))
        total += int(fit) if math.isfinite(fit) else 10**9
    return total


def plan_resources(
    nodes: Sequence[dict[str, float]],
    workers: int,
    gpus_per_trial: float = 0.0,
    cpus_per_trial: int | None = None,
) -> TrialResources:
    """Resources per worker so that ``workers`` of them fit on ``nodes`` at once.

    CPU cores are shared out evenly (as many per worker as still lets all of them
    fit); a GPU share is fixed by ``gpus_per_trial``.

    Raises:
        PoolError: the nodes cannot hold ``workers`` workers.
    """
    if cpus_per_trial is not None:
        candidates = [cpus_per_trial]
    else:
        total_cpus = sum(n.get("CPU", 0.0) for n in nodes)
        most = max(1, int(total_cpus // max(workers, 1)))
        candidates = list(range(most, 0, -1))
    for cpus in candidates:
        res = TrialResources(cpus=cpus, gpus=gpus_per_trial)
        if workers_that_fit(nodes, res) >= workers:
            return res
    have = ", ".join(f"{n.get('CPU', 0):g} CPU/{n.get('GPU', 0):g} GPU" for n in nodes) or "none"
    need = f"{candidates[-1]} CPU" + (f" + {gpus_per_trial:g} GPU" if gpus_per_trial else "")
    raise PoolError(
        f"{workers} workers of {need} each do not fit on the Ray nodes ({have}); "
        f"use fewer --workers" + (" or a smaller --gpus-per-trial" if gpus_per_trial else "")
    )


class StepWorker:
    """A Ray actor: holds the evaluator and advances one step at a time.

    Args:
        evaluator: the evaluator (resolved from the object store by Ray).
        slot: this worker's slot number (for its status file).
        status_dir: folder of the ``slot-<k>.json`` status files.
        threads: torch CPU threads for this worker (its share of the cores).
    """

    def __init__(self, evaluator: Evaluator, slot: int, status_dir: str, threads: int) -> None:
        import torch

        torch.set_num_threads(max(1, int(threads)))
        self.evaluator = evaluator
        self.slot = slot
        self.status = Path(status_dir) / f"slot-{slot}.json"

    def ready(self) -> dict[str, Any]:
        """Where this worker runs (``pid``, ``host``, Ray ``node`` id): answers once it is up."""
        import ray

        return {"pid": os.getpid(), "host": socket.gethostname(),
                "node": ray.get_runtime_context().get_node_id()}

    def advance(self, step: dict[str, Any]) -> dict[str, Any]:
        """Advance the step (JSON form); returns the result (JSON form) and where/when it ran."""
        where = self.ready()
        started = time.time()
        self.status.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.status.with_name(self.status.name + ".tmp")
        tmp.write_text(json.dumps({"slot": self.slot, **where, "trial_id": step["trial_id"],
                                   "to_epoch": step["to_epoch"],
                                   "model": step["config"].get("model"), "started": started}))
        os.replace(tmp, self.status)
        try:
            result = self.evaluator.advance(step_from_dict(step))
        finally:
            self.status.unlink(missing_ok=True)
        return {"result": result_to_dict(result), "where": where, "started": started,
                "finished": time.time()}


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PoolError(
            "--workers above 1 runs trials on Ray, which is not installed here: "
            "pip install 'hubtune[ray]' (or pip install ray)"
        ) from None
    return ray


class RayExecutor:
    """Run steps on ``workers`` Ray actors at once.

    Args:
        evaluator: what advances a step (e.g. :class:`~hubtune.finetune.TrainerEvaluator`);
            it is sent to every worker once, so it must be picklable.
        workers: number of slots (steps running at once).
        status_dir: folder for the per-slot status files (in the run folder).
        address: ``None`` starts a local Ray instance; ``"auto"`` or ``"HOST:PORT"`` joins
            a running cluster. If Ray is already initialised in this process, it is used.
        gpus: local GPU indices to use (local instance only); ``None``: all Ray detects.
        gpus_per_trial: GPU share of one worker (0 on CPU; 1 by default on CUDA).
        cpus_per_trial: CPU cores per worker (default: the cores divided by the workers).
        postprocess: applied to every result on the driver before it is returned.
        start_timeout: seconds to wait for all workers to come up.

    Raises:
        PoolError: Ray missing or unreachable, or the cluster too small for the workers.
    """

    def __init__(
        self,
        evaluator: Evaluator,
        *,
        workers: int,
        status_dir: str | Path,
        address: str | None = None,
        gpus: Sequence[int] | None = None,
        gpus_per_trial: float = 0.0,
        cpus_per_trial: int | None = None,
        postprocess: Callable[[StepResult], StepResult] | None = None,
        start_timeout: float = 300.0,
    ) -> None:
        if workers < 1:
            raise PoolError(f"workers must be >= 1, got {workers}")
        self.ray = ray = _import_ray()
        self.slots = workers
        self.status_dir = Path(status_dir).resolve()
        self.status_dir.mkdir(parents=True, exist_ok=True)
        self.postprocess = postprocess or (lambda r: r)
        self._owns_ray = False
        self._connect(address, gpus, gpus_per_trial, cpus_per_trial)
        nodes = [{"CPU": float(n["Resources"].get("CPU", 0.0)),
                  "GPU": float(n["Resources"].get("GPU", 0.0))}
                 for n in ray.nodes() if n.get("Alive")]
        try:
            self.resources = plan_resources(nodes, workers, gpus_per_trial, cpus_per_trial)
        except PoolError:
            self._shutdown_ray()
            raise
        self._evaluator_ref = ray.put(evaluator)
        self._actor_cls = ray.remote(StepWorker).options(
            num_cpus=self.resources.cpus, num_gpus=self.resources.gpus, max_restarts=0,
        )
        self._actors: list[Any] = [self._new_actor(k) for k in range(workers)]
        self._inflight: dict[Any, tuple[int, Step, float]] = {}
        self.where: list[dict[str, Any]] = self._wait_ready(start_timeout)

    # ------------------------------------------------------------ set-up
    def _connect(self, address: str | None, gpus: Sequence[int] | None,
                 gpus_per_trial: float, cpus_per_trial: int | None) -> None:
        ray = self.ray
        if ray.is_initialized():
            return
        if address:
            _check_reachable(address)
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                cores = os.cpu_count() or 1
                per = cpus_per_trial or max(1, cores // self.slots)
                kwargs: dict[str, Any] = {"num_cpus": max(cores, per * self.slots)}
                if gpus is not None:
                    kwargs["num_gpus"] = len(gpus)
                old = os.environ.get("CUDA_VISIBLE_DEVICES")
                if gpus is not None:  # the local raylet hands out only these GPUs
                    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
                try:
                    ray.init(address="local", include_dashboard=False, log_to_driver=False,
                             **kwargs)
                finally:
                    if gpus is not None:
                        if old is None:
                            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
                        else:
                            os.environ["CUDA_VISIBLE_DEVICES"] = old
        except (OSError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise PoolError(f"could not start or join {where}: {exc}") from None
        self._owns_ray = True

    def _new_actor(self, slot: int) -> Any:
        threads = max(1, int(self.resources.cpus))
        return self._actor_cls.remote(self._evaluator_ref, slot, str(self.status_dir), threads)

    def _wait_ready(self, timeout: float) -> list[dict[str, Any]]:
        ray = self.ray
        refs = [a.ready.remote() for a in self._actors]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=timeout)
        if len(done) < len(refs):
            self.close()
            raise PoolError(
                f"only {len(done)} of {len(refs)} Ray workers started within {timeout:.0f}s "
                f"(each needs {self.resources.cpus} CPU"
                + (f" and {self.resources.gpus:g} GPU" if self.resources.gpus else "")
                + "); check the cluster's free resources"
            )
        try:
            return list(ray.get(refs))
        except ray.exceptions.RayError as exc:
            self.close()
            raise PoolError(f"a Ray worker failed to start: {_first_line(exc)}") from None

    # ---------------------------------------------------------- executor
    def free_slots(self) -> int:
        return self.slots - len(self._inflight)

    def running(self) -> dict[int, Step]:
        return {slot: step for slot, step, _ in self._inflight.values()}

    def submit(self, step: Step) -> int:
        busy = {slot for slot, _, _ in self._inflight.values()}
        free = [k for k in range(self.slots) if k not in busy]
        if not free:
            raise RuntimeError("no free Ray worker: wait() for a running step first")
        slot = free[0]
        ref = self._actors[slot].advance.remote(step_to_dict(step))
        self._inflight[ref] = (slot, step, time.time())
        return slot

    def wait(self) -> list[Completion]:
        ray = self.ray
        if not self._inflight:
            return []
        refs = list(self._inflight)
        ready, _ = ray.wait(refs, num_returns=1)
        more, _ = ray.wait([r for r in refs if r not in ready], num_returns=len(refs) - len(ready),
                           timeout=0) if len(refs) > len(ready) else ([], [])
        return [self._complete(ref) for ref in [*ready, *more]]

    def _complete(self, ref: Any) -> Completion:
        ray = self.ray
        slot, step, submitted = self._inflight.pop(ref)
        try:
            out = ray.get(ref)
        except ray.exceptions.RayError as exc:
            status = self.status_dir / f"slot-{slot}.json"
            where: dict[str, Any] = {}
            try:
                info = json.loads(status.read_text())
                where = {"pid": info.get("pid"), "host": info.get("host"), "node": info.get("node")}
                submitted = float(info.get("started", submitted))
            except (OSError, ValueError):
                pass
            status.unlink(missing_ok=True)
            if not isinstance(exc, ray.exceptions.RayTaskError):
                # The worker process is gone (killed, crashed, node lost): replace it.
                self._replace(slot)
            return Completion(step, slot, None, error=f"{type(exc).__name__}: {_first_line(exc)}",
                              started=submitted, finished=time.time(), where=where)
        result = self.postprocess(result_from_dict(out["result"]))
        # The step object as submitted (its info carries the optimizer's predictions).
        result.step = step
        return Completion(step, slot, result, started=float(out["started"]),
                          finished=float(out["finished"]), where=dict(out["where"]))

    def _replace(self, slot: int) -> None:
        try:
            self.ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # already dead: nothing to release
            pass
        self._actors[slot] = self._new_actor(slot)

    def close(self) -> None:
        """Stop the workers, and the local Ray instance if this executor started it."""
        for actor in getattr(self, "_actors", []):
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        self._actors = []
        self._inflight = {}
        self._shutdown_ray()

    def _shutdown_ray(self) -> None:
        if self._owns_ray and self.ray.is_initialized():
            self.ray.shutdown()
        self._owns_ray = False


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast when nothing listens at ``HOST:PORT`` (Ray itself would retry for minutes)."""
    text = address.removeprefix("ray://")
    if text == "auto" or ":" not in text:
        return  # "auto" finds the local cluster itself, and says so quickly when there is none
    host, _, port = text.rpartition(":")
    if not port.isdigit():
        raise PoolError(f"--ray-address must be auto or HOST:PORT, got {address!r}")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise PoolError(
            f"no Ray cluster answers at {address} ({exc}); start one with "
            f"'ray start --head --port {port}' on that machine, or omit --ray-address "
            f"to start a local Ray instance"
        ) from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
