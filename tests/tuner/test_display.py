"""The live/plain/json progress display: on screen at once, failures with their reason,
and after a resume the incumbent and the steps done right at the start."""

from __future__ import annotations

import io
import json
import re

from rich.console import Console
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.protocol.steps import Step, StepResult
from hubtune.search.loop import Incumbent
from hubtune.space.config import Config
from hubtune.tuner.display import SearchDisplay

REASON = ("HubError: no local weights for 'test_resnet' and the Hugging Face hub is "
          "unreachable\nTraceback (most recent call last): ...")


def _terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)


def test_starting_is_shown_at_once_in_every_mode(capsys):
    SearchDisplay("plain").starting("digits:200", "30")
    assert capsys.readouterr().out.startswith("starting hubtune run on digits:200 (budget 30)")
    SearchDisplay("json").starting("digits:200", "30")
    assert json.loads(capsys.readouterr().out) == {"event": "starting", "data": "digits:200",
                                                   "budget": "30"}
    SearchDisplay("quiet").starting("digits:200")
    assert capsys.readouterr().out == ""
    live = SearchDisplay("live", console=_terminal())
    live.starting("digits:200")
    try:
        assert live._live is not None  # the panel is up before anything is loaded
        live("setup", {"stage": "loading data", "elapsed": 0.2, "budget": 30.0})
        assert "starting: loading data…" in live.current
    finally:
        live.close()
    assert "starting: loading data" in live.console.file.getvalue()


def _failed_step(display: SearchDisplay) -> None:
    step = Step("t1", Config(model="test_resnet"), 1, {"why": "default config of the model"})
    display("start", {"resumed": False, "workers": 1, "elapsed": 1.0, "budget": 30.0})
    display("step", {"step": step, "worker": 0, "elapsed": 1.0, "budget": 30.0})
    res = StepResult(step, [], status="failed", reason=REASON, seconds=0.4)
    display("result", {"result": res, "incumbent": Incumbent(), "improved": False,
                       "elapsed": 1.5, "budget": 30.0, "worker": 0})


def test_a_failed_candidate_is_shown_with_its_reason(capsys):
    _failed_step(SearchDisplay("plain"))
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.search(r"t1 test_resnet +FAILED at epoch 1 after 0\.4s: HubError: no local "
                     r"weights for 'test_resnet'", line)
    assert "Traceback" not in line and "val" not in line  # its first line, no empty columns
    live = SearchDisplay("live", console=_terminal())
    _failed_step(live)
    live.close()
    shown = live.console.file.getvalue()
    assert "FAILED at epoch 1" in shown and re.search(r"failed +1 \(last: HubError", shown)


def test_a_resumed_run_shows_its_incumbent_and_steps_at_the_start(tmp_path):
    out = tmp_path / "run"
    args = ["run", "digits:200", "--out", str(out), "--models", "test_resnet", "--hub", "test",
            "--no-pretrained", "--image-size", "32", "--max-epochs", "1", "--threads", "1",
            "--optimizer", "defaults", "--budget", "60", "--log", "plain"]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert first.output.startswith("starting hubtune run on digits:200")
    assert first.output.index("starting: loading data") < first.output.index("step ")
    result = json.loads((out / "result.json").read_text())
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    lines = again.output.splitlines()
    resumed = next(i for i, line in enumerate(lines) if line.startswith("resuming:"))
    score = f"{100 * result['val_score']:.2f}%" if result["metric"] == "top1" else ""
    assert f"resuming: {result['steps']} step(s) done" in lines[resumed]
    assert score in lines[resumed] and result["metrics"]["trial_id"] in lines[resumed]
    assert "search ended" in lines[resumed + 1]  # shown before anything else happens


class _Recorder:
    """An ``on_event`` callback that asks for per-batch progress, as the live panel does."""

    wants_progress = True

    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def __call__(self, event: str, payload: dict) -> None:
        self.events.append((event, payload))


def test_per_batch_progress_is_sent_only_to_a_display_that_shows_it(tmp_path):
    from hubtune.tuner.hubtuner import HubTuner

    assert SearchDisplay("live", console=_terminal()).wants_progress
    assert not any(SearchDisplay(m).wants_progress for m in ("plain", "json", "quiet"))
    rec = _Recorder()
    HubTuner(budget=60, out=tmp_path / "run", hub="test", models=["test_resnet"], max_epochs=1,
             image_size=32, optimizer="defaults", pretrained=False, num_threads=1,
             on_event=rec).fit("digits:200")
    kinds = [e for e, _ in rec.events]
    assert kinds[0] == "setup" and "start" in kinds
    progress = [p for e, p in rec.events if e == "progress"]
    assert progress, kinds
    first, last = kinds.index("progress"), len(kinds) - 1 - kinds[::-1].index("progress")
    assert kinds[first - 1] == "step" and kinds[last + 1] == "result"
    assert [p["batch"] for p in progress] == list(range(1, progress[0]["batches"] + 1))
    assert all(p["epoch"] == 1 for p in progress)
    live = SearchDisplay("live", console=_terminal())
    live("progress", {"epoch": 1, "batch": 3, "batches": 4})
    live.console.print(live._panel())
    assert "epoch 1: [###############.....] batch 3/4" in live.console.file.getvalue()


def test_reasons_with_brackets_are_shown_verbatim_in_the_live_panel():
    live = SearchDisplay("live", console=_terminal())
    step = Step("t2", Config(model="test_resnet"), 1)
    res = StepResult(step, [], status="failed", reason="RuntimeError: [/enforce fail] at [x]")
    live("result", {"result": res, "incumbent": Incumbent(), "improved": False,
                    "elapsed": 1.0, "budget": 30.0})
    live.console.print(live._panel())  # markup would drop the brackets or raise MarkupError
    assert "RuntimeError: [/enforce fail] at [x]" in live.console.file.getvalue()
