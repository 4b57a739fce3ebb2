"""docs/from-runs.md's example runs as written: two histories, metatrain --from-runs, a search, a refusal."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from tests.helpers.paths import BENCHMARKS, DOCS, ROOT

DOC = DOCS / "from-runs.md"


def _bash_blocks() -> list[list[str]]:
    blocks = re.findall(r"```bash\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    return [[ln for ln in b.splitlines() if ln.startswith("hubtune ")] for b in blocks]


@pytest.mark.slow
def test_the_documented_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HUBTUNE_OFFLINE", "1")
    ok, refused = _bash_blocks()[:2]
    assert any("--from-runs" in c for c in ok) and len(refused) == 1
    for line in ok:
        res = CliRunner().invoke(app, shlex.split(line)[1:])
        assert res.exit_code == 0, f"{line}\n{res.output}"
    assert json.loads(Path("runs/fashion/run.json").read_text())["surrogate"] == str(
        Path("my-surrogate").resolve())
    res = CliRunner().invoke(app, shlex.split(refused[0])[1:])
    assert res.exit_code == 2, res.output
    assert "meta-trained on the same source data (digits)" in res.output
    assert str(Path("runs/digits").resolve()) in res.output
    assert not Path("runs/digits-500/run.json").exists()
    # the replay of the measurement, on these three folders (30 s simulated, one seed)
    m = re.search(r"```bash\npython benchmarks/from_runs_replay.py (.*?)\n```",
                  DOC.read_text(encoding="utf-8"))
    args = shlex.split(m.group(1))
    args = [a for a in args if "*" not in a]  # the measurement's run folders
    args[args.index("--budget") + 1], args[args.index("--seeds") + 1] = "30", "0"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(BENCHMARKS / "from_runs_replay.py"),
                           "runs/digits", "runs/animal", "runs/fashion", *args], env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| horizon | qt_shipped | qt_specialised |" in proc.stdout
    assert "held out together: " in proc.stdout
