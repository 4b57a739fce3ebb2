"""The examples of README.md and docs/ run for real (the blocks tests/helpers/docs_blocks.py
registers to these tests).

Each test reads its block from the markdown and runs it: shell lines through the
CLI (in-process, in a temporary folder), Python blocks with ``exec``. Where the
documented settings take minutes, they are made tiny by :func:`tiny_run` (a few
seconds of budget, timm's tiny test models, 32 px) or by a named, asserted string
substitution in the Python source; ``path/to/images`` becomes a small generated
image folder. Lines that need what a test machine lacks (CUDA, ``pip install``,
a server) are left out and listed in each test. What the blocks' comments claim
(shapes, reprs, output formats) is checked where it is cheap.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from hubtune.cli import app
from tests.helpers.docs_blocks import ROOT, block
from tests.helpers.run import make_folder

SHARED = ROOT.parent / "shared" / "metadata" / "quicktune-extended"
TEST_MODELS = "test_resnet,test_efficientnet"


# ------------------------------------------------------------------ helpers
@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every example runs in a fresh folder, offline."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBTUNE_OFFLINE", "1")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """A small ImageFolder (4 colour classes, 32 px) standing in for ``path/to/images``."""
    return make_folder(tmp_path_factory.mktemp("docs") / "images", per_class=12, size=32)


def _set(args: list[str], name: str, value: str) -> None:
    if name in args:
        args[args.index(name) + 1] = value
    else:
        args += [name, value]


def tiny_run(args: list[str], images: Path, budget: int = 20) -> list[str]:
    """A documented ``hubtune run`` argument list with tiny settings: ``budget`` seconds,
    timm test models (random init, 32 px, at most 2 epochs), one thread, quiet."""
    out = [str(images) if a == "path/to/images" else a for a in args]
    _set(out, "--budget", str(budget))
    if "--hub" not in out or out[out.index("--hub") + 1] != "test":
        _set(out, "--hub", "test")
        if "--models" not in out:
            out += ["--models", TEST_MODELS]
    if "--no-pretrained" not in out:
        out.append("--no-pretrained")
    _set(out, "--image-size", "32")
    _set(out, "--threads", "1")
    epochs = int(out[out.index("--max-epochs") + 1]) if "--max-epochs" in out else 2
    _set(out, "--max-epochs", str(min(epochs, 2)))
    if "--log" not in out:
        out += ["--log", "quiet"]
    return out


def cli(args: list[str], expect: int = 0) -> str:
    """Run ``hubtune ARGS`` in this process; returns its output."""
    res = CliRunner().invoke(app, args)
    assert res.exit_code == expect, f"hubtune {shlex.join(args)}\n{res.output}"
    return res.output


def words(line: str) -> list[str]:
    """``hubtune ...`` line -> its arguments (shell redirection cut)."""
    return shlex.split(line.split(" > ")[0])[1:]


def make_images(*names: str) -> None:
    """Files (``x.jpg``) and folders (``photos/``: two images) named by an example."""
    for name in names:
        if name.endswith("/"):
            Path(name).mkdir(parents=True, exist_ok=True)
            for i in range(2):
                Image.new("RGB", (40, 30), (200, 30 * i, 10)).save(Path(name) / f"{i}.png")
        else:
            Image.new("RGB", (32, 32), (10, 200, 30)).save(name)


def substitute(code: str, *pairs: tuple[str, str]) -> str:
    """``code`` with each (old, new) replaced; every ``old`` must occur (the doc changed if not)."""
    for old, new in pairs:
        assert old in code, f"the example no longer contains {old!r}"
        code = code.replace(old, new)
    return code


def run_python(code: str, scope: dict | None = None) -> dict:
    scope = {} if scope is None else scope
    exec(compile(code, "<docs example>", "exec"), scope)  # noqa: S102 - the docs' own example
    return scope


def script(args: list[str], timeout: int = 600) -> str:
    """Run ``python ARGS`` (a benchmark script) with this checkout's hubtune; returns stdout."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, *args], env=env, capture_output=True, text=True,
                          timeout=timeout, cwd=Path.cwd())
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


TINY_API = (
    ('hub="offline"', f'hub="test", models={TEST_MODELS.split(",")!r}, pretrained=False, '
                      'image_size=32, num_threads=1'),
    ('budget="10m"', "budget=20"),
    ("max_epochs=6", "max_epochs=2"),
)


# ------------------------------------------------------------------ README.md
def test_readme_quickstart(images):
    """README's command block. Left out: pip install, and the ``--device cuda --hub
    quicktune`` line (a GPU and the Quick-Tune hub's downloads)."""
    lines = block("README.md", "pip install -r requirements").commands()
    ran = []
    for line in lines:
        args = words(line)
        if "cuda" in args:
            continue
        if args[0] == "run":
            cli(tiny_run(args, images))
        elif args[0] == "predict":
            make_images(*[a for a in args[2:] if not a.startswith("-") and not a.isdigit()
                          and a not in ("json",)])
            out = json.loads(cli(args))
            assert len(out) == 3  # some.jpg and the two images of photos/
            assert all(len(p["top"]) == 3 for p in out)
        else:
            cli(args)
        ran.append(args[0])
    assert ran == ["run", "predict", "report"]
    assert Path("runs/mydata/report.html").is_file()


def test_readme_python_api():
    code = substitute(block("README.md", "from hubtune import HubTuner").text, *TINY_API)
    scope = run_python(code)
    assert scope["result"].best_dir is not None and scope["result"].config is not None


# ------------------------------------------------------------------ docs/api.md
def test_api_example():
    code = substitute(block("docs/api.md", "from hubtune import HubTuner, load").text, *TINY_API)
    make_images("a.jpg", "photos/")
    scope = run_python(code)
    assert scope["result"].metric == "balanced_accuracy"
    assert len(scope["preds"]) == 3 and all(len(p.top) == 3 for p in scope["preds"])
    board = scope["board"]
    assert len(board) >= 1


def test_api_predict_commands(images):
    cli(tiny_run(["run", "path/to/images", "--out", "runs/mydata"], images))
    lines = block("docs/api.md", "hubtune predict runs/mydata photo.jpg").commands()
    assert len(lines) == 3
    make_images("photo.jpg", "more/", "photos/")
    tsv = cli(words(lines[0]))
    assert len(tsv.strip().splitlines()) >= 3 and "\t" in tsv
    json_out = cli(words(lines[1]))
    Path("predictions.json").write_text(json_out)  # the line's "> predictions.json"
    assert len(json.loads(Path("predictions.json").read_text())) == 2
    csv = cli(words(lines[2]))
    assert csv.splitlines()[0].count(",") >= 2
    run_python(block("docs/api.md", "from hubtune.tuner.export import Predictor").text)


# ------------------------------------------------------------------ docs/benchmark.md
def test_benchmark_commands():
    """The bench command on a tiny grid (one dataset, one seed, two cheap methods, 1 h of
    simulated budget), and --list-methods as written."""
    if not SHARED.exists():
        pytest.skip(f"the shared Quick-Tune meta-dataset is absent: {SHARED}")
    lines = block("docs/benchmark.md", "hubtune bench --metadata").commands()
    assert len(lines) == 2
    args = words(lines[0])
    args[args.index("--metadata") + 1] = str(SHARED)
    for name, value in (("--methods", "random,asha"), ("--budget", "1h"), ("--seeds", "1"),
                        ("--jobs", "1"), ("--datasets", "APL")):
        _set(args, name, value)
    cli(args)
    assert any(Path("bench-out").rglob("*.json"))
    assert "quicktune" in cli(words(lines[1]))


# ------------------------------------------------------------------ docs/constraints.md
def test_constraints_commands(images):
    for line in block("docs/constraints.md", "hubtune run path/to/images --out runs/edge").commands():
        args = tiny_run(words(line), images)
        cli(args)
        notes = [json.loads(x) for x in Path(args[args.index("--out") + 1], "journal.jsonl")
                 .read_text().splitlines()]
        assert any(n.get("what") == "constraints" for n in notes)
    # the documented refusal, from the run that limits latency
    doc_error = block("docs/constraints.md", "error: every model violates").text.strip()
    limit = re.search(r"--max-latency-ms ([\d.]+)", doc_error).group(1)
    args = tiny_run(["run", "path/to/images", "--out", "runs/too-fast", "--max-latency-ms", limit],
                    images)
    out = cli(args, expect=2)
    pattern = re.escape(doc_error).replace("test_efficientnet", r"\S+").replace(
        re.escape("1.16"), r"[\d.]+")
    assert re.search(pattern, " ".join(out.split())), out


def test_latency_repeatability_script():
    (line,) = block("docs/constraints.md", "python benchmarks/latency_repeatability.py").commands(
        "python")
    args = shlex.split(line)[1:]
    args[0] = str(ROOT / args[0])
    _set(args, "--image-size", "32")
    _set(args, "--repeats", "2")
    args += ["--models", TEST_MODELS]
    out = script(args)
    for model in TEST_MODELS.split(","):
        assert model in out


# ------------------------------------------------------------------ docs/data.md
def test_data_example():
    import torch

    from hubtune.data import ImageDataset, load_dataset

    scope = run_python(block("docs/data.md", "from hubtune.data import load_dataset").text)
    ds = scope["ds"]
    assert ds.train.images.dtype == torch.uint8 and tuple(ds.train.images.shape) == (2000, 3, 32, 32)
    assert ds.train.labels.dtype == torch.int64 and tuple(ds.train.labels.shape) == (2000,)
    assert repr(ds.meta_features) == (
        "DatasetMetaFeatures(n_images=2000, n_classes=10, mean_resolution=28.0, channels=1)")
    doc_sig = " ".join(block("docs/data.md", "load_dataset(source, *").text.split())
    params, seen_star = [], False
    for p in inspect.signature(load_dataset).parameters.values():
        if p.kind is p.KEYWORD_ONLY and not seen_star:
            params.append("*")
            seen_star = True
        params.append(p.name if p.default is p.empty else f"{p.name}={p.default!r}")
    assert doc_sig == f"load_dataset({', '.join(params)}) -> ImageDataset"
    assert inspect.signature(load_dataset).return_annotation in ("ImageDataset", ImageDataset)


# ------------------------------------------------------------------ docs/ensemble.md
def test_ensemble_example():
    """The example run (25 s instead of 90), predict with and without --single, and the
    measurements' benchmark scripts (ensemble.md, from-runs.md) on that run."""
    lines = block("docs/ensemble.md", "hubtune run digits:600 --out runs/digits").commands()
    make_images("photos/")
    run_args = words(lines[0])
    _set(run_args, "--budget", "25")
    cli([*run_args, "--threads", "1", "--log", "quiet"])
    assert Path("runs/digits/best/ensemble.json").is_file()
    ens = json.loads(cli([*words(lines[1]), "--format", "json"]))
    single = json.loads(cli([*words(lines[2]), "--format", "json"]))
    assert len(ens) == len(single) == 2
    (bench,) = block("docs/ensemble.md", "python benchmarks/ensemble_vs_single.py").commands("python")
    args = shlex.split(bench)[1:]
    out = script([str(ROOT / args[0]), "runs/digits"])
    assert re.search(r"^digits\s+269\s", out, re.M), out
    assert "paired test top-1 difference" in out and "budget used at most" in out
    # docs/from-runs.md's search comparison script, on the same run
    (search,) = block("docs/from-runs.md", "python benchmarks/from_runs_search.py").commands("python")
    out = script([str(ROOT / shlex.split(search)[1]), "runs/digits"])
    assert re.search(r"^digits\s+default\s+test_\w+", out, re.M), out


# ------------------------------------------------------------------ docs/export.md
def test_export_examples(images):
    cli(tiny_run(["run", "path/to/images", "--out", "RUN"], images))
    make_images("x.jpg")
    scope = run_python(block("docs/export.md", "import timm").text)
    probs = scope["probs"]
    classes = json.loads(Path("RUN/best/labels.json").read_text())
    assert tuple(probs.shape) == (1, len(classes)) and abs(float(probs.sum()) - 1) < 1e-5
    ran = []
    for line in block("docs/export.md", "pip install 'hubtune[export]'").commands():
        args = words(line)
        if "onnx" in args:
            pytest.importorskip("onnxruntime", reason="the ONNX line needs hubtune[export]")
        cli(args)
        ran.append(args[args.index("--format") + 1])
    assert ran == ["onnx", "torchscript"]
    assert Path("RUN/best/model.onnx").is_file() and Path("model.pt").is_file()
    # push: the dry run for real; the upload line needs the Hub (tests/tuner/test_push.py)
    dry, upload = block("docs/export.md", "hubtune push RUN").commands()
    assert "--dry-run" in dry and "--dry-run" not in upload
    out = cli(words(dry))
    assert "model.safetensors" in out and "model.onnx" in out


# ------------------------------------------------------------------ docs/hub.md
def test_hub_examples():
    import torch

    code = block("docs/hub.md", "from hubtune.hub import create_model").text
    scope = run_python(code, {"x": torch.rand(2, 3, 224, 224)})  # the example's input batch
    documented = re.search(r"^# (ModelDescriptor\(.*?\))$", code, re.S | re.M).group(1)
    assert repr(scope["get_descriptor"]("volo_d1_384")) == " ".join(
        ln.lstrip("# ").strip() for ln in documented.splitlines()).replace("( ", "(")
    cfg = scope["hm"].data_config
    assert (cfg["input_size"], cfg["interpolation"], cfg["crop_pct"], cfg["crop_mode"]) == (
        (3, 224, 224), "bilinear", 0.875, "center")
    for line in block("docs/hub.md", "hubtune hub list").commands():
        # the glob's ~30 efficientnet variants are each built once to count parameters and
        # GFLOPs (half a minute): three of them show the same
        out = cli([w.replace("efficientnet_*", "efficientnet_b0*") for w in words(line)])
        if "--json" in line:  # one JSON object per model
            rows = [json.loads(x) for x in out.splitlines() if x.strip()]
            assert rows and all(r["name"].startswith("efficientnet_") for r in rows)


# ------------------------------------------------------------------ docs/integrations.md
def test_integrations_log_to_example():
    """The --log-to run (tiny); left out: pip install and the two viewers (servers), whose
    input paths are checked instead."""
    pytest.importorskip("tensorboard", reason="needs hubtune[tensorboard]")
    pytest.importorskip("mlflow", reason="needs hubtune[mlflow]")
    lines = block("docs/integrations.md", "pip install 'hubtune[tensorboard]'").text.splitlines()
    (run_line,) = [ln for ln in lines if ln.startswith("hubtune run")]
    args = words(run_line)
    _set(args, "--budget", "30")  # the trackers' set-up is charged too
    args += ["--hub", "test", "--models", TEST_MODELS, "--no-pretrained", "--image-size", "32",
             "--threads", "1", "--max-epochs", "1", "--log", "quiet"]
    cli(args)
    logdir = re.search(r"tensorboard --logdir (\S+)", "\n".join(lines)).group(1)
    store = re.search(r"sqlite:///(\S+)", "\n".join(lines)).group(1)
    assert any(Path(logdir).rglob("events.out.tfevents.*")) and Path(store).is_file()


# ------------------------------------------------------------------ docs/metadata-format.md
def test_metadata_format_example():
    if not SHARED.exists():
        pytest.skip(f"the shared Quick-Tune meta-dataset is absent: {SHARED}")
    code = substitute(block("docs/metadata-format.md", "from hubtune.metadata import").text,
                      ('"../shared/metadata/quicktune-extended"', repr(str(SHARED))))
    scope = run_python(code)
    assert scope["meta"].datasets == sorted(scope["meta"].datasets)


# ------------------------------------------------------------------ docs/metadata-generate.md
def test_metadata_generate_example():
    """generate (two tiny test-model configs of two epochs on two small built-ins), info,
    metatrain --init-surrogate shipped (3 steps); the files the doc lists exist."""
    lines = block("docs/metadata-generate.md", "hubtune metadata generate --datasets").commands()
    assert [words(ln)[:2] for ln in lines] == [["metadata", "generate"], ["metadata", "info"],
                                               ["metatrain", "--metadata"]]
    out_dir = words(lines[0])[words(lines[0]).index("--out") + 1]
    gen = words(lines[0])
    for name, value in (("--datasets", "digits:100,animal-mnist:100"), ("--hub", "test"),
                        ("--models", TEST_MODELS), ("--configs", "2"), ("--max-epochs", "2"),
                        ("--threads", "1"), ("--out", "meta-offline")):
        _set(gen, name, value)
    table = cli([*gen, "--no-pretrained"])
    header = block("docs/metadata-generate.md", "dataset                      planned").key[1]
    assert header.split() in [ln.split() for ln in table.splitlines()], table  # end-of-run table
    info = cli([w.replace(out_dir, "meta-offline") for w in words(lines[1])])
    assert "2 datasets" in info
    meta = [w.replace(out_dir, "meta-offline") for w in words(lines[2])]
    cli([*meta, "--steps", "3"])
    assert Path("my-surrogate/surrogate.safetensors").is_file()
    listing = block("docs/metadata-generate.md", "OUT/metadata.json").text
    for pattern in re.findall(r"^(OUT/\S+)", listing, re.M):
        for part in pattern.rstrip(",").split(", "):
            glob = re.sub(r"<[^>]+>", "*", part.replace("OUT/", ""))
            assert list(Path("meta-offline").glob(glob)), f"no {part} in the generated folder"


# ------------------------------------------------------------------ docs/optimizer.md
def test_optimizer_protocol_example():
    """The ask/tell protocol, with ``ctx`` a replay task of the shared meta-dataset and
    ``result`` the simulator's result of the asked step (both come from the caller)."""
    if not SHARED.exists():
        pytest.skip(f"the shared Quick-Tune meta-dataset is absent: {SHARED}")
    from hubtune.bench.simulator import SimulatedEvaluator
    from hubtune.metadata import load_metadata
    from hubtune.protocol.context import Candidate, TaskContext

    runs = load_metadata(SHARED)["MED_LF"]
    ctx = TaskContext(max_epochs=runs.scores.shape[1], seed=0,
                      candidates=[Candidate(r, c) for r, c in zip(runs.run_ids, runs.configs,
                                                                     strict=True)],
                      meta_features=runs.meta_features)
    code = block("docs/optimizer.md", "from hubtune.optim.registry import get_method").text
    head, tail = code.split("opt.tell(result)")
    scope = run_python(head, {"ctx": ctx})
    scope["result"] = SimulatedEvaluator(runs).advance(scope["step"])
    run_python("opt.tell(result)" + tail, scope)
    assert json.loads(json.dumps(scope["state"])) == scope["state"]


# ------------------------------------------------------------------ docs/trainer.md
def test_trainer_example():
    code = substitute(block("docs/trainer.md", "from hubtune.data import load_dataset").text,
                      ("image_size=64, subset=1000", "image_size=32, subset=200"))
    scope = run_python(code)
    assert scope["result"].status == "ok" and [r.epoch for r in scope["result"].records] == [1]
    from hubtune.finetune.checkpoint import read_state

    assert read_state(Path("runs/t1"))["epoch"] == 4
