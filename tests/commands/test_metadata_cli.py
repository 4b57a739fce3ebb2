"""``hubtune metadata info`` / ``convert`` on the small fixtures."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.metadata import load_metadata
from tests.helpers.paths import FIXTURES

RELEASE = FIXTURES / "metadata" / "release"
runner = CliRunner()


def test_info_summarises_datasets_models_and_unmapped() -> None:
    result = runner.invoke(app, ["metadata", "info", str(RELEASE)])
    assert result.exit_code == 0, result.output
    assert "(release layout): 2 datasets, 6 runs, up to 12 epochs, 5 models, 2 unmapped runs" in result.output
    assert "edge-lamb: invalid configuration" in result.output
    data = json.loads(runner.invoke(app, ["metadata", "info", str(RELEASE), "--json"]).output)
    assert data["runs"] == 6 and data["unmapped"] == 2 and data["layout"] == "release"
    assert [r["runs"] for r in data["per_dataset"]] == [3, 3]


def test_info_bad_path_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["metadata", "info", str(tmp_path / "missing")])
    assert result.exit_code == 2
    assert "error:" in result.output and "no such file or directory" in result.output
    assert "Traceback" not in result.output


def test_convert_writes_own_format(tmp_path: Path) -> None:
    result = runner.invoke(app, ["metadata", "convert", str(RELEASE), str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    back, original = load_metadata(tmp_path / "out"), load_metadata(RELEASE)
    assert back.datasets == original.datasets and back.unmapped == original.unmapped
    assert all(back[d].configs == original[d].configs for d in back.datasets)
