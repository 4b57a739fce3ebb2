"""Every fenced code block of README.md and docs/, and what tests it (issue #15/#17: every
example in the docs is run by a test).

:data:`REGISTRY` names each block by its file and first line. A block is either
``run`` by the test named (``path::function``; the test extracts the block from
the markdown with :func:`block` and runs it for real, with tiny settings where the
documented ones take minutes), or ``not run`` with the reason (output samples,
signatures, hours-long benchmarks, GPU clusters, installers). A block missing
from the registry, or a registry entry whose block is gone, fails
``tests/docs/test_docs_blocks.py``: a new example needs a test or a stated reason.
Even blocks that are not run have every ``hubtune`` command line checked against
the CLI's real options there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tests.helpers.paths import ROOT

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


@dataclass(frozen=True)
class Block:
    """One fenced code block: its file (relative to the repository), line, language, text."""

    doc: str
    line: int
    lang: str
    text: str

    @property
    def key(self) -> tuple[str, str]:
        """(file, first non-empty line): how :data:`REGISTRY` names the block."""
        first = next((ln.strip() for ln in self.text.splitlines() if ln.strip()), "")
        return self.doc, first

    def commands(self, program: str = "hubtune") -> list[str]:
        """The block's ``program ...`` command lines (``\\`` continuations joined, comments cut)."""
        joined = re.sub(r"\\\n\s*", " ", self.text)
        out = []
        for ln in joined.splitlines():
            ln = re.sub(r"\s+#.*$", "", ln.strip())
            ln = re.sub(r"^(\w+=\S*\s+)+", "", ln)  # environment assignments before it
            if ln.startswith(program + " ") or ln == program:
                out.append(ln)
        return out


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_blocks() -> list[Block]:
    blocks = []
    for path in doc_files():
        text = path.read_text(encoding="utf-8")
        for m in _FENCE.finditer(text):
            blocks.append(Block(path.relative_to(ROOT).as_posix(), text[:m.start()].count("\n") + 1,
                                m.group(1), m.group(2)))
    return blocks


def block(doc: str, first_line: str) -> Block:
    """The block of ``doc`` whose first non-empty line starts with ``first_line``."""
    found = [b for b in all_blocks() if b.doc == doc and b.key[1].startswith(first_line)]
    assert len(found) == 1, f"{doc}: {len(found)} blocks start with {first_line!r}"
    return found[0]


EX = "tests/docs/test_docs_examples.py::"
RUN, NOT_RUN = "run", "not run"

REGISTRY: dict[tuple[str, str], tuple[str, str]] = {
    # ---------------------------------------------------------------- README.md
    ("README.md", "make demo   # fresh machine: install, then run the main job on the built-in offline default"):
        (NOT_RUN, "installs a virtual environment and runs the 8-minute demo / the whole suite"),
    ("README.md", "pip install -r requirements/torch.txt && pip install -e .   # or: scripts/setup-env.sh"):
        (RUN, EX + "test_readme_quickstart"),
    ("README.md", "from hubtune import HubTuner"):
        (RUN, EX + "test_readme_python_api"),
    ("README.md", "pip install -e '.[ray]'"):
        (NOT_RUN, "CUDA GPUs and a Ray cluster; --workers on CPU is run by tests/e2e/test_run_ray.py"),
    # ---------------------------------------------------------------- docs/api.md
    ("docs/api.md", "from hubtune import HubTuner, load, SearchResult"):
        (RUN, EX + "test_api_example"),
    ("docs/api.md", "hubtune predict runs/mydata photo.jpg more/ --top 3                  # tab-separated"):
        (RUN, EX + "test_api_predict_commands"),
    ("docs/api.md", "from hubtune.tuner.export import Predictor"):
        (RUN, EX + "test_api_predict_commands"),
    # ---------------------------------------------------------------- docs/benchmark.md
    ("docs/benchmark.md", "hubtune bench --metadata ../shared/metadata/quicktune-extended \\"):
        (RUN, EX + "test_benchmark_commands"),
    ("docs/benchmark.md", "OMP_NUM_THREADS=1 python -m hubtune.bench.parallel --metadata ../shared/metadata/quicktune-extended \\"):
        (NOT_RUN, "the parallel benchmark takes hours (tests/bench/test_bench_parallel.py runs it on a small grid)"),
    # ---------------------------------------------------------------- docs/constraints.md
    ("docs/constraints.md", "hubtune run path/to/images --out runs/edge --budget 30m --max-latency-ms 15          # batch-1 forward pass on --device"):
        (RUN, EX + "test_constraints_commands"),
    ("docs/constraints.md", "hubtune run digits:200 --out runs/constrained --budget 20 --hub test --models test_resnet,test_efficientnet,test_nfnet --max-epochs 2 --image-size 32 --no-pretrained --threads 1 --optimizer asha --max-params 0.4"):
        (RUN, "tests/tuner/test_constraints.py::test_docs_max_params_example_never_trains_a_violating_model"),
    ("docs/constraints.md", "error: every model violates the deployment limits (--max-latency-ms 0.0001): the fastest, test_efficientnet, has 1.16 ms; relax a limit or choose other models"):
        (RUN, EX + "test_constraints_commands"),
    ("docs/constraints.md", "python benchmarks/latency_repeatability.py --image-size 64 --threads 1 --repeats 3"):
        (RUN, EX + "test_latency_repeatability_script"),
    # ---------------------------------------------------------------- docs/data.md
    ("docs/data.md", "from hubtune.data import load_dataset"):
        (RUN, EX + "test_data_example"),
    ("docs/data.md", "load_dataset(source, *, image_size, subset=None, seed=0, val_fraction=0.15,"):
        (RUN, EX + "test_data_example"),
    # ---------------------------------------------------------------- docs/ensemble.md
    ("docs/ensemble.md", "hubtune run digits:600 --out runs/digits --hub test --no-pretrained --image-size 32 \\"):
        (RUN, EX + "test_ensemble_example"),
    ("docs/ensemble.md", "import json, timm, torch"):
        (RUN, "tests/tuner/test_ensemble.py::test_predictions_equal_the_weighted_average_of_plain_timm_members"),
    ("docs/ensemble.md", "for S in 0 1 2; do"):
        (NOT_RUN, "the measurement: nine 4-minute runs; its commands' options are checked"),
    ("docs/ensemble.md", "python benchmarks/ensemble_vs_single.py runs/ens/*"):
        (RUN, EX + "test_ensemble_example"),
    # ---------------------------------------------------------------- docs/export.md
    ("docs/export.md", "import timm"):
        (RUN, EX + "test_export_examples"),
    ("docs/export.md", "pip install 'hubtune[export]'            # onnx + onnxruntime (TorchScript needs nothing)"):
        (RUN, EX + "test_export_examples"),
    ("docs/export.md", "hubtune push RUN me/fashion-classifier --dry-run   # check everything, list what would be sent"):
        (RUN, EX + "test_export_examples"),
    # ---------------------------------------------------------------- docs/from-runs.md
    ("docs/from-runs.md", "hubtune run digits:300 --out runs/digits --hub test --models test_resnet,test_convnext,test_efficientnet --no-pretrained --image-size 32 --max-epochs 3 --budget 30 --threads 1 --log quiet"):
        (RUN, "tests/docs/test_from_runs_docs.py::test_the_documented_example_runs"),
    ("docs/from-runs.md", "hubtune run digits:500 --out runs/digits-500 --hub test --models test_resnet,test_convnext,test_efficientnet --no-pretrained --image-size 32 --max-epochs 3 --budget 30 --threads 1 --log quiet --surrogate my-surrogate"):
        (RUN, "tests/docs/test_from_runs_docs.py::test_the_documented_example_runs"),
    ("docs/from-runs.md", "error: --surrogate /abs/my-surrogate was meta-trained on the same source data (digits) (dataset 'digits-300' from run folder /abs/runs/digits); searching it with that surrogate would reuse its own learning curves: use a surrogate trained without it, or other data"):
        (RUN, "tests/docs/test_from_runs_docs.py::test_the_documented_example_runs"),
    ("docs/from-runs.md", "from hubtune.metagen.runfolder import load_run_folders"):
        (RUN, "tests/docs/test_from_runs_docs.py::test_the_documented_example_runs"),
    ("docs/from-runs.md", 'H="runs/ens/animal-mnist-3000-s0 runs/ens/animal-mnist-3000-s1 runs/ens/animal-mnist-3000-s2 runs/ens/digits-s0 runs/ens/digits-s1 runs/ens/digits-s2"'):
        (NOT_RUN, "the measurement: nine 4-minute searches (options checked; the same commands on "
                  "tiny data are the example above)"),
    ("docs/from-runs.md", "python benchmarks/from_runs_search.py runs/fr/fashion-default-s* runs/fr/fashion-runs-s* runs/fr/fashion-runs-offline-s*"):
        (RUN, EX + "test_ensemble_example"),
    ("docs/from-runs.md", "python benchmarks/from_runs_replay.py runs/ens/* runs/fr/fashion-* --budget 4m --seeds 0,1,2 --out frr"):
        (RUN, "tests/docs/test_from_runs_docs.py::test_the_documented_example_runs"),
    ("docs/from-runs.md", "hubtune metatrain --from-runs runs/a runs/b [--metadata DIR ...] --out DIR"):
        (NOT_RUN, "a synopsis (its options are checked)"),
    # ---------------------------------------------------------------- docs/hub.md
    ("docs/hub.md", "from hubtune.hub import create_model, get_descriptor, list_models, available_offline"):
        (RUN, EX + "test_hub_examples"),
    ("docs/hub.md", "hubtune hub list                    # every registered model"):
        (RUN, EX + "test_hub_examples"),
    ("docs/hub.md", "python -m hubtune.hub.build_descriptors      # ~30 s on a CPU; writes src/hubtune/assets/hub/descriptors.json"):
        (NOT_RUN, "rewrites a shipped asset of the source tree (tests/hub/test_hub.py checks the descriptors)"),
    # ---------------------------------------------------------------- docs/integrations.md
    ("docs/integrations.md", "pip install 'hubtune[tensorboard]' 'hubtune[mlflow]'"):
        (RUN, EX + "test_integrations_log_to_example"),
    ("docs/integrations.md", "import json"):
        (RUN, "tests/docs/test_integrations_docs.py::test_the_ray_tune_example_runs"),
    # ---------------------------------------------------------------- docs/metadata-format.md
    ("docs/metadata-format.md", "from hubtune.metadata import load_metadata"):
        (RUN, EX + "test_metadata_format_example"),
    ("docs/metadata-format.md", "{"):
        (NOT_RUN, "an excerpt of metadata.json ('...' stands for the rest); "
                  "tests/metadata/test_metadata.py round-trips the real format"),
    # ---------------------------------------------------------------- docs/metadata-generate.md
    ("docs/metadata-generate.md", "hubtune metadata generate --datasets fashion-mnist:600,animal-mnist:600,digits \\"):
        (RUN, EX + "test_metadata_generate_example"),
    ("docs/metadata-generate.md", "OUT/metadata.json, OUT/arrays.safetensors    the meta-dataset, hubtune's own format"):
        (RUN, EX + "test_metadata_generate_example"),
    ("docs/metadata-generate.md", "dataset                      planned   ok diverged failed    best    run s"):
        (RUN, EX + "test_metadata_generate_example"),  # generate's end-of-run table: header checked
    ("docs/metadata-generate.md", "# from scratch, on the generated data alone or mixed with the Quick-Tune meta-dataset"):
        (NOT_RUN, "metatrain variants (tests/metagen/test_metadata_generate.py runs all three on generated data; "
                  "options checked)"),
    ("docs/metadata-generate.md", "OMP_NUM_THREADS=1 HUBTUNE_OFFLINE=1 hubtune metadata generate \\"):
        (NOT_RUN, "the measurement: about an hour of offline-hub training (options checked)"),
    ("docs/metadata-generate.md", "HUBTUNE_SURROGATE_CACHE=/tmp/h10_surcache hubtune bench --metadata /tmp/h10_meta \\"):
        (NOT_RUN, "the measurement's replay, on the generated data above (options checked)"),
    # ---------------------------------------------------------------- docs/optimizer.md
    ("docs/optimizer.md", "from hubtune.optim.registry import get_method"):
        (RUN, EX + "test_optimizer_protocol_example"),
    ("docs/optimizer.md", "hubtune metatrain --metadata ../shared/metadata/quicktune-extended --out my-surrogate \\"):
        (NOT_RUN, "a synopsis; meta-training on the whole table takes about an hour (options checked)"),
    ("docs/optimizer.md", "hubtune bench --metadata ../shared/metadata/quicktune-extended --out bench-qt \\"):
        (NOT_RUN, "the measurement (573 s of replay; options checked)"),
    ("docs/optimizer.md", "hubtune bench --metadata ../shared/metadata/quicktune-extended --out bench-qt-ablations \\"):
        (NOT_RUN, "the ablation measurement (each ablation meta-trains per fold; options checked)"),
    ("docs/optimizer.md", "python -m hubtune.surrogate.evaluate calibration     # leave-one-dataset-out surrogates"):
        (NOT_RUN, "meta-trains 20 leave-one-out surrogates (hours)"),
    ("docs/optimizer.md", "python -m hubtune.surrogate.evaluate unseen-models \\"):
        (NOT_RUN, "meta-trains surrogates without the named models (hours)"),
    ("docs/optimizer.md", "python benchmarks/optimizer_overhead.py --epochs 100,500,1000,2000 --decisions 15"):
        (NOT_RUN, "the overhead measurement (minutes; tests/optim/test_quicktune.py bounds the overhead)"),
    ("docs/optimizer.md", "python benchmarks/qt_replay.py --out qtr --budget 16h --seeds 0 --surrogate-seeds 0,1,2 \\"):
        (NOT_RUN, "the issue #13 replay: 80 cells of 16 simulated hours and 20 fold surrogates per seed "
                  "(tens of minutes; its statistics are tested in tests/benchmarks/test_qt_replay_bench.py)"),
    ("docs/optimizer.md", "python benchmarks/qt_replay.py --out qtr --budget 16h --seeds 0,1,2 --workers 4 --speedup \\"):
        (NOT_RUN, "the issue #13 parallel replay: 120 cells of 16 simulated hours (tens of minutes)"),
    ("docs/optimizer.md", "python benchmarks/demo_vs_defaults.py --tasks fashion-mnist:2000@8m --seeds 0,1,2 --threads 1 --out runs-real"):
        (NOT_RUN, "the issue #13 real runs: nine 8-minute searches (the script's grid and scoring are tested in "
                  "tests/benchmarks/test_large_test_bench.py)"),
    ("docs/optimizer.md", "python benchmarks/qt_replay.py --out qtr --budget 16h --seeds 0,1,2 --workers 4 --speedup --json par4.json \\"):
        (NOT_RUN, "the issue #13 parallel replay of the first-installment change: 120 cells of 16 simulated "
                  "hours (tens of minutes)"),
    ("docs/optimizer.md", "python benchmarks/qt_replay.py --out qtr --budget 16h --seeds 0,1,2,3,4,5,6,7,8,9 \\"):
        (NOT_RUN, "the issue #13 replay: 400 cells of 16 simulated hours (tens of minutes)"),
    ("docs/optimizer.md", "python benchmarks/qt_replay.py --out qtr --budget 16h --seeds 0 --surrogate-seeds 0,1,2 --json refits.json \\"):
        (NOT_RUN, "the issue #13 replay of refits, cost cooling, calibration weights and longer "
                  "meta-training: 780 cells of 16 simulated hours and 240 more fold surrogates (an hour; "
                  "its statistics are tested in tests/benchmarks/test_qt_replay_bench.py)"),
    ("docs/optimizer.md", "python benchmarks/prediction_replay.py RUNS/v15-seed{0,1,2} --quiet \\"):
        (NOT_RUN, "needs the real runs' folders (8-minute searches); --final-truth is run by "
                  "tests/benchmarks/test_prediction_replay_bench.py"),
    # ---------------------------------------------------------------- docs/parallel.md
    ("docs/parallel.md", "pip install 'hubtune[ray]'          # plain `ray`, no dashboard extras"):
        (NOT_RUN, "GPUs and clusters; --workers on CPU is run by tests/e2e/test_run_ray.py (options checked)"),
    # ---------------------------------------------------------------- docs/peers.md
    ("docs/peers.md", "scripts/setup-peers-venv.sh --bench-into \"$VENV\"   # DEHB, SMAC3, Optuna into hubtune's venv"):
        (NOT_RUN, "installs packages into a virtual environment"),
    # ---------------------------------------------------------------- docs/trainer.md
    ("docs/trainer.md", "from hubtune.data import load_dataset"):
        (RUN, EX + "test_trainer_example"),
    ("docs/trainer.md", "hubtune finetune DATA --model NAME [--config cfg.json] [--epochs N] [--max-epochs M]"):
        (NOT_RUN, "a synopsis (options checked; tests/commands/test_finetune_cli.py runs the commands)"),
    ("docs/benchmarks/parallel/README.md", "OMP_NUM_THREADS=1 python -m hubtune.bench.parallel --metadata ../shared/metadata/quicktune-extended \\"):
        (NOT_RUN, "the parallel benchmark takes hours (tests/bench/test_bench_parallel.py runs it on a small grid)"),
    # ---------------------------------------------------------------- docs/benchmarks/README.md
    ("docs/benchmarks/README.md", "OMP_NUM_THREADS=1 hubtune bench --metadata ../shared/metadata/quicktune-extended \\"):
        (NOT_RUN, "the published benchmark (hours; options checked)"),
    ("docs/benchmarks/README.md", "python -m hubtune.bench.peers.qtt_peer prefit --metadata ../shared/metadata/quicktune-extended --folds 5"):
        (NOT_RUN, "Quick-Tune-Tool's own venv and hours of replay (options checked)"),
}
