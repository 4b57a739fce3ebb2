"""`hubtune metatrain`: writes a loadable surrogate; bad input is a one-line error."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.surrogate.model import Surrogate
from tests.helpers.paths import QT_EXTENDED

SHARED = QT_EXTENDED
ALL = ["APL", "AWA", "BCT", "BRD", "BTS", "CRS", "DOG", "FLW", "FNG", "INS_2", "MED_LF", "PLK",
       "PLT_DOC", "PLT_NET", "PLT_VIL", "PNU", "PRT", "TEX", "TEX_ALOT", "TEX_DTD"]
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"shared meta-dataset absent: {SHARED}")


@needs_shared
def test_metatrain_writes_a_loadable_surrogate(tmp_path):
    keep = {"BCT", "MED_LF", "PNU"}
    exclude = ",".join(d for d in ALL if d not in keep)
    out = tmp_path / "sur"
    res = CliRunner().invoke(app, ["metatrain", "--metadata", str(SHARED), "--out", str(out),
                                   "--exclude-datasets", exclude, "--steps", "20", "--seed", "1"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output.strip().splitlines()[-1])
    assert summary["datasets"] == 3
    sur = Surrogate.load(out)
    assert set(sur.record["datasets"]) == keep and sur.record["seed"] == 1
    assert "--exclude-datasets" in sur.record["command"]


@needs_shared
def test_metatrain_rejects_unknown_excluded_dataset(tmp_path):
    res = CliRunner().invoke(app, ["metatrain", "--metadata", str(SHARED), "--out", str(tmp_path),
                                   "--exclude-datasets", "NOPE", "--steps", "5"])
    assert res.exit_code == 2
    assert "unknown dataset(s): NOPE" in res.output


def test_metatrain_reports_missing_metadata(tmp_path):
    res = CliRunner().invoke(app, ["metatrain", "--metadata", str(tmp_path / "missing"),
                                   "--out", str(tmp_path / "o"), "--steps", "5"])
    assert res.exit_code == 2
    assert "error:" in res.output and "Traceback" not in res.output
