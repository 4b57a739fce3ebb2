"""Progress output of a search: a live rich panel, plain lines, JSON lines, or nothing."""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any, Literal

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hubtune.protocol.steps import Step, step_prediction

Mode = Literal["live", "plain", "json", "quiet"]


def _pct(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{100 * v:.2f}%"


def _config_summary(cfg: Any) -> str:
    return (f"{cfg.opt} lr={cfg.lr:g} bs={cfg.batch_size} wd={cfg.weight_decay:g} "
            f"freeze={cfg.pct_to_freeze:g} {cfg.sched}"
            + (f" aug={cfg.data_augmentation}" if cfg.data_augmentation != "none" else ""))


def _first_line(text: str | None, limit: int = 160) -> str:
    line = ((text or "no reason given").strip().splitlines() or ["no reason given"])[0]
    return line if len(line) <= limit else line[: limit - 1] + "…"


class SearchDisplay:
    """Callback for :class:`~hubtune.tuner.hubtuner.HubTuner`'s ``on_event``.

    ``live``: a panel with budget used/left, the current step (one row per
    worker when several run at once), the incumbent and one line per finished
    step (default on a terminal). ``plain``: one line per event (default when
    output is not a terminal). ``json``: one JSON object per event on stdout,
    for scripts (step and result events carry the ``worker`` slot). ``quiet``:
    nothing.
    """

    def __init__(self, mode: Mode | None = None, console: Console | None = None) -> None:
        self.console = console or Console()
        if mode is None:
            mode = "live" if self.console.is_terminal else "plain"
        self.mode = mode
        self.lines: list[str] = []
        self.current = "starting"
        self.elapsed = 0.0
        self.budget = 0.0
        self.incumbent: tuple[float, str | None, str | None] = (-math.inf, None, None)
        self.steps = 0
        self.workers = 1
        self.running: dict[int, str] = {}
        self.progress: tuple[int, int, int] | None = None  # (epoch, batch, batches)
        self.failed = 0
        self.last_failure: str | None = None
        self._live: Live | None = None
        self._step_started = time.monotonic()

    @property
    def wants_progress(self) -> bool:
        """Whether per-batch ``progress`` events are worth sending (only the live panel
        shows them; HubTuner then asks the trainer for them)."""
        return self.mode == "live"

    def starting(self, data: str, budget: str | float | None = None) -> None:
        """Show at once that the run has begun (before libraries and data are loaded)."""
        if self.mode == "quiet":
            return
        if self.mode == "json":
            self._json("starting", {"data": data, "budget": budget})
            return
        self.current = f"starting: loading {data}…"
        if self.mode == "plain":
            print(f"starting hubtune run on {data}" + (f" (budget {budget})" if budget else "")
                  + ": loading libraries and data…", flush=True)
        self._start_live()

    def _start_live(self) -> None:
        if self.mode == "live" and self._live is None:
            self._live = Live(self._panel(), console=self.console, refresh_per_second=2,
                              get_renderable=self._panel)
            self._live.start()

    # -------------------------------------------------------------- render
    def _panel(self) -> Panel:
        used = self.elapsed + (time.monotonic() - self._step_started if self._live else 0.0)
        used = min(used, self.budget) if self.budget else used
        head = Table.grid(padding=(0, 2))
        head.add_row("budget", f"{used:.0f}s used / {max(self.budget - used, 0):.0f}s left "
                     f"of {self.budget:.0f}s")
        score, model, trial = self.incumbent
        # Text, not markup: reasons and model names may hold brackets ("[enforce fail ...]").
        head.add_row("incumbent", Text(f"{_pct(score)}  {model or '-'}  ({trial or '-'})"))
        head.add_row("steps done", str(self.steps))
        if self.failed:
            head.add_row("failed", Text(f"{self.failed} (last: {self.last_failure})"))
        if self.workers > 1:
            for k in range(self.workers):
                head.add_row(f"worker {k}", Text(self.running.get(k, "idle")))
        else:
            head.add_row("now", Text(self.current))
            if self.progress is not None:
                epoch, batch, total = self.progress
                done = int(20 * batch / max(total, 1))
                head.add_row("", Text(f"epoch {epoch}: [{'#' * done}{'.' * (20 - done)}] "
                                      f"batch {batch}/{total}"))
        tail = Text("\n".join(self.lines[-12:]))
        return Panel(Group(head, tail), title="hubtune search", expand=False)

    def _emit(self, line: str) -> None:
        self.lines.append(line)
        if self.mode == "plain":
            print(line, flush=True)  # plain lines for logs: no wrapping, no markup

    # --------------------------------------------------------------- events
    def __call__(self, event: str, payload: dict[str, Any]) -> None:
        if self.mode == "quiet":
            return
        if self.mode == "json":
            self._json(event, payload)
            return
        self.elapsed = float(payload.get("elapsed", self.elapsed))
        self.budget = float(payload.get("budget", self.budget) or self.budget)
        worker = int(payload.get("worker", 0) or 0)
        tag = f"w{worker} " if self.workers > 1 else ""
        if event == "progress":  # per training batch (live panel only): no line, no clock
            self.progress = (int(payload["epoch"]), int(payload["batch"]), int(payload["batches"]))
            return
        if event == "setup":  # HubTuner's set-up before the loop starts
            self.current = f"starting: {payload.get('stage', 'setting up')}…"
            if self.mode == "plain":
                print(f"[{self.elapsed:6.0f}s] {self.current}", flush=True)
            self._start_live()
        elif event == "start":
            self._on_start(payload)
        elif event == "step":
            self._on_step(payload["step"], worker, tag)
        elif event == "result":
            res, inc = payload["result"], payload["incumbent"]
            self.progress = None
            self.running.pop(worker, None)
            self.steps += 1
            self.incumbent = (inc.score, (inc.config or {}).get("model"), inc.trial_id)
            self._emit(f"[{self.elapsed:6.0f}s] {tag}{self._result_line(res, payload)}")
        elif event == "requeue":
            step = payload["step"]
            self.running.pop(worker, None)
            self._emit(f"[{self.elapsed:6.0f}s] worker {worker} died during {step.trial_id} -> "
                       f"epoch {step.to_epoch} ({payload.get('error')}); "
                       + ("the step is re-queued from its last checkpoint"
                          if payload.get("requeued", True) else
                          f"recorded as failed after {payload.get('losses')} lost workers"))
        elif event == "drain":
            n = len(payload.get("running") or {})
            self._emit(f"[{self.elapsed:6.0f}s] no new steps ({payload['why']}); waiting for "
                       f"{n} running step(s) to finish")
        elif event == "final":
            self._emit(f"continuing the incumbent {payload['trial_id']} to epoch "
                       f"{payload['to_epoch']} (--final-epochs)")
        elif event == "notice":  # a one-line message for the user (e.g. a broken checkpoint)
            self._emit(str(payload["message"]))
        elif event == "end":
            self._emit(f"search ended ({payload['why']}) after {self.elapsed:.0f}s "
                       f"of {self.budget:.0f}s")
            self.close()

    def _on_step(self, step: Step, worker: int, tag: str) -> None:
        """A step started: what it trains and what the optimizer predicted for it."""
        self._step_started = time.monotonic()
        self.progress = None
        pred = ""
        mean = step_prediction(step, "mean")
        if mean is not None:
            pred = f" (pred {_pct(mean)} ± {_pct(step_prediction(step, 'std'))}"
            secs = step_prediction(step, "seconds")
            if secs is not None:
                pred += f", ~{secs:.0f}s"
            pred += ")"
        self.current = (f"{step.trial_id}: {step.config.model} -> epoch {step.to_epoch}"
                        f"{pred}\n      {_config_summary(step.config)}")
        self.running[worker] = self.current
        if self.mode == "plain":
            print(f"[{self.elapsed:6.0f}s] {tag}step   {self.current.splitlines()[0]}",
                  flush=True)

    def _on_start(self, payload: dict[str, Any]) -> None:
        """The loop's start: workers, and on a resume where the search stands."""
        self.workers = int(payload.get("workers", 1) or 1)
        if self.workers > 1:
            self._emit(f"{self.workers} workers")
        inc = payload.get("incumbent")
        if inc is not None and math.isfinite(inc.score):
            self.incumbent = (inc.score, (inc.config or {}).get("model"), inc.trial_id)
        self.steps = int(payload.get("steps", self.steps) or 0)
        self.current = "asking the optimizer for the first step"
        if payload.get("resumed"):
            score, model, trial = self.incumbent
            self._emit(f"resuming: {self.steps} step(s) done, {self.elapsed:.0f}s of the "
                       f"budget used, incumbent {_pct(score)} {model or '-'} ({trial or '-'}); "
                       f"{payload.get('redo', 0)} interrupted step(s) to redo")
        for msg in payload.get("recovered") or ():
            self._emit(f"warning: {msg}")
        self._start_live()

    def _result_line(self, res: Any, payload: dict[str, Any]) -> str:
        """One finished step: its epoch and score, or for a failure its reason."""
        head = f"{res.trial_id} {res.step.config.model:<22} "
        if res.status in ("failed", "diverged") and not res.records:
            self.failed += 1
            reason = _first_line(res.reason)
            self.last_failure = reason[:80]
            return head + f"{res.status.upper()} at epoch {res.step.to_epoch} after {res.seconds:.1f}s: {reason}"
        last = res.records[-1] if res.records else None
        mark = " *new best*" if payload.get("improved") else ""
        status = "" if res.status in ("ok", "ended") else f" [{res.status}: {_first_line(res.reason)}]"
        return (head + f"epoch {last.epoch if last else '-':>3}  val "
                f"{_pct(last.score if last else None):>7}  {res.seconds:6.1f}s{status}{mark}")

    def close(self) -> None:
        """Stop the live panel (prints its last state)."""
        if self._live is not None:
            self._live.update(self._panel())
            self._live.stop()
            self._live = None

    def _json(self, event: str, payload: dict[str, Any]) -> None:
        out: dict[str, Any] = {"event": event}
        for k, v in payload.items():
            if k == "step":
                out["step"] = {"trial_id": v.trial_id, "model": v.config.model,
                               "to_epoch": v.to_epoch, "info": v.info}
            elif k == "result":
                out["result"] = {"trial_id": v.trial_id, "status": v.status, "reason": v.reason,
                                 "seconds": v.seconds,
                                 "records": [r.to_dict() for r in v.records]}
            elif k == "running":
                out["running"] = {str(w): {"trial_id": s.trial_id, "to_epoch": s.to_epoch}
                                  for w, s in v.items()}
            elif k == "incumbent":
                out["incumbent"] = {"score": v.score if math.isfinite(v.score) else None,
                                    "trial_id": v.trial_id}
            else:
                out[k] = v
        sys.stdout.write(json.dumps(out, default=str) + "\n")
        sys.stdout.flush()
