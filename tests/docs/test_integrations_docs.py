"""docs/integrations.md's Ray Tune example runs as written (a real local Ray instance).

The code block after ``<!-- tested: ray-tune-example -->`` is written to a file and
run in a fresh interpreter (it calls ``ray.init`` itself), in a temporary folder.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.paths import ROOT

DOC = ROOT / "docs" / "integrations.md"


def doc_example() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- tested: ray-tune-example -->\n```python\n(.*?)```", text, re.S)
    assert m, "docs/integrations.md lost its tested Ray Tune example"
    return m.group(1)


def test_the_readme_links_the_integrations_doc() -> None:
    assert "(docs/integrations.md)" in (ROOT / "README.md").read_text(encoding="utf-8")


def test_the_ray_tune_example_runs(tmp_path: Path) -> None:
    pytest.importorskip("ray.tune", reason="needs Ray Tune (pip install 'hubtune[ray]')")
    pytest.importorskip("timm")
    script = tmp_path / "example.py"
    script.write_text(doc_example(), encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert re.search(r"^best: test_(resnet|efficientnet) lr=\S+ val_acc=0\.\d+ at epoch \d",
                     proc.stdout, re.M), proc.stdout[-2000:]
    m = re.search(r"FreezeThawScheduler: (\d+) steps told, (\d+) trials paused", proc.stdout)
    assert m and int(m.group(1)) == 5 and int(m.group(2)) >= 1, proc.stdout[-2000:]
    assert (tmp_path / "ray-results").is_dir()
