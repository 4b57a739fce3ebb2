"""Deployment constraints (issue #17 part 2): ``--max-latency-ms``, ``--max-params``, ``--max-gflops``.

Tiny real runs (timm test models, random init, 32 px, digits:200): a violating
model is never trained, the export is within the limit, an all-violating limit
is refused before run.json, and latency.json is reused on resume. The real runs
are marked ``slow`` (``make test-quick`` leaves them out).
"""

from __future__ import annotations

import json
import math
import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.core.errors import RunError
from hubtune.hub import get_descriptor
from hubtune.search.journal import Journal, replay
from hubtune.tuner.constraints import Conditions, Limits, decide, measure_latency
from hubtune.tuner.report.front import pareto_front
from tests.helpers.paths import DOCS

runner = CliRunner()
MODELS = ["test_resnet", "test_efficientnet", "test_nfnet"]
LATENCY_MODELS = ["test_resnet", "test_vit4"]  # batch-1 latency ~0.8 ms vs ~4.7 ms (1 thread)


def _run(out: Path, *extra: str, models: list[str] = MODELS, budget: str = "20"):
    args = ["run", "digits:200", "--out", str(out), "--budget", budget, "--hub", "test",
            "--models", ",".join(models), "--max-epochs", "2", "--image-size", "32",
            "--no-pretrained", "--threads", "1", "--optimizer", "asha", "--log", "plain",
            *extra]
    return runner.invoke(app, args)


def _trained_models(out: Path) -> set[str]:
    return {r.step.config.model for r in replay(Journal(out / "journal.jsonl")).results}


def _constraints_notes(out: Path) -> list[dict]:
    events = [json.loads(line) for line in (out / "journal.jsonl").read_text().splitlines()]
    return [e for e in events if e.get("what") == "constraints"]


def test_decide_splits_by_descriptor_params_and_names_the_smallest_when_all_violate():
    d = decide(MODELS, Limits(max_params=0.4), {})
    assert d.allowed == ["test_efficientnet", "test_nfnet"]
    assert [e["model"] for e in d.excluded] == ["test_resnet"]
    with pytest.raises(RunError, match=r"--max-params 0.01\).*smallest, test_efficientnet"):
        decide(MODELS, Limits(max_params=0.01), {})


def test_pareto_front_keeps_only_non_dominated_points():
    pts = [(1.0, 50.0), (2.0, 40.0), (3.0, 90.0), (3.0, 80.0), (0.5, 10.0)]
    assert pareto_front(pts) == [4, 0, 2]


@pytest.mark.parametrize("extra", [["--max-latency-ms", "0"], ["--max-params", "-1"],
                                   ["--max-gflops", "nan"], ["--latency-batch", "0"]])
def test_bad_limit_values_are_refused_before_anything_is_written(tmp_path, extra):
    out = tmp_path / "run"
    res = _run(out, *extra)
    assert res.exit_code == 2, res.output
    assert extra[0] in res.output and "Traceback" not in res.output
    assert not out.exists()


def test_all_violating_params_limit_exits_2_with_one_line_and_no_run_json(tmp_path):
    out = tmp_path / "run"
    res = _run(out, "--max-params", "0.01")
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--max-params 0.01" in errors[0]
    assert "test_efficientnet" in errors[0] and "Traceback" not in res.output
    assert not (out / "run.json").exists()


@pytest.mark.slow
def test_all_violating_latency_limit_exits_2_naming_the_fastest_and_no_run_json(tmp_path):
    out = tmp_path / "run"
    res = _run(out, "--max-latency-ms", "0.0001", models=["test_resnet", "test_efficientnet"])
    assert res.exit_code == 2, res.output
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "--max-latency-ms 0.0001" in errors[0]
    assert "fastest" in errors[0] and " ms" in errors[0]
    assert not (out / "run.json").exists() and not (out / "latency.json").exists()


def _docs_example() -> list[str]:
    doc = (DOCS / "constraints.md").read_text()
    (line,) = [ln for ln in doc.splitlines() if ln.startswith("hubtune run digits:200")]
    return shlex.split(line)[1:]


@pytest.mark.slow
def test_docs_max_params_example_never_trains_a_violating_model(tmp_path):
    args = _docs_example()
    limit = float(args[args.index("--max-params") + 1])
    models = args[args.index("--models") + 1].split(",")
    violating = {m for m in models if get_descriptor(m).params_m > limit}
    assert violating and violating != set(models)
    out = tmp_path / "run"
    args[args.index("--out") + 1] = str(out)
    res = runner.invoke(app, [*args, "--log", "plain"])
    assert res.exit_code == 0, res.output
    trained = _trained_models(out)
    assert trained and not trained & violating
    exported = json.loads((out / "best" / "metrics.json").read_text())["model"]
    assert get_descriptor(exported).params_m <= limit
    (note,) = _constraints_notes(out)
    assert {e["model"] for e in note["excluded"]} == violating
    assert not (out / "latency.json").exists()  # no latency limit: nothing measured


@pytest.mark.slow
def test_latency_limit_run_trains_only_fast_models_and_resume_reuses_latency_json(tmp_path):
    # A fast and a ~6x slower model, each measured 3 times here (the least of 3 is the least
    # disturbed by other load), and the limit at the geometric mean of the two: the run's own
    # measurement would have to be 2.4x off for either side to cross it.
    models = LATENCY_MODELS
    cond = Conditions(device="cpu", image_size=32, num_classes=10, num_threads=1,
                      batches=(1, 32))
    measured = {m: min(measure_latency(m, cond)["ms"]["1"] for _ in range(3)) for m in models}
    limit = round(math.sqrt(min(measured.values()) * max(measured.values())), 3)
    out = tmp_path / "run"
    res = _run(out, "--max-latency-ms", str(limit), models=models)
    assert res.exit_code == 0, res.output
    cache = json.loads((out / "latency.json").read_text())
    assert cache["conditions"]["batches"] == [1, 32]
    lat = {m: v["ms"]["1"] for m, v in cache["models"].items()}
    assert set(lat) == set(models) and all("32" in v["ms"] for v in cache["models"].values())
    violating = {m for m, v in lat.items() if v > limit}
    assert violating, f"no model above {limit} ms: {lat} (test measured {measured})"
    trained = _trained_models(out)
    assert trained and not trained & violating
    (note,) = _constraints_notes(out)
    assert {e["model"] for e in note["excluded"]} == violating
    metrics = json.loads((out / "best" / "metrics.json").read_text())
    assert metrics["latency"]["ms"]["1"] == lat[metrics["model"]] <= limit
    assert (out / "latency_front.png").is_file()
    report = (out / "report.html").read_text()
    assert 'id="plot-latency_front"' in report and "<h2>Deployment limits</h2>" in report
    assert all(f"<td>{m}</td>" in report for m in violating)

    stamp = (out / "latency.json").stat().st_mtime_ns
    res = _run(out, "--max-latency-ms", str(limit), models=models, budget="30")  # resume
    assert res.exit_code == 0, res.output
    assert (out / "latency.json").stat().st_mtime_ns == stamp  # not re-measured
    again = json.loads((out / "latency.json").read_text())
    assert again == cache
    assert "measuring latency" not in res.output
    assert not _trained_models(out) & violating
    assert len(_constraints_notes(out)) == 2  # one per session, the same decisions
    assert _constraints_notes(out)[1]["excluded"] == note["excluded"]


@pytest.mark.slow
def test_changed_limit_on_resume_is_refused(tmp_path):
    out = tmp_path / "run"
    assert _run(out, "--max-params", "0.4", budget="20",
                models=["test_efficientnet", "test_convnext"]).exit_code == 0
    res = _run(out, "--max-params", "0.3", budget="20",
               models=["test_efficientnet", "test_convnext"])
    assert res.exit_code == 2 and "max_params" in res.output


def test_decide_gflops_and_latency_limits_use_descriptor_and_measured_figures():
    latency = {m: {"ms": {"1": ms, "32": 10 * ms}} for m, ms in
               (("test_resnet", 1.0), ("test_efficientnet", 2.0), ("test_nfnet", 9.0))}
    d = decide(MODELS, Limits(max_gflops=0.3, max_latency_ms=5.0), latency)
    assert d.allowed == ["test_resnet", "test_efficientnet"]  # nfnet: 0.57 GFLOPs, 9 ms
    (ex,) = d.excluded
    assert ex["model"] == "test_nfnet" and len(ex["why"]) == 2
    assert ex["latency_batch32_ms"] == 90.0
    with pytest.raises(RunError, match=r"fastest, test_resnet, has 1 ms.*cheapest, test_efficientnet"):
        decide(MODELS, Limits(max_gflops=0.01, max_latency_ms=0.5), latency)
