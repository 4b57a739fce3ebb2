"""``hubtune push RUN REPO``: everything up to the upload, with the real huggingface_hub.

No Hub is reachable from the tests. What is checked: the repository id (the
library's own rule), ``best/`` validated before anything is sent, which files are
staged (no pickle-based ones) and the model card's Hub header; the upload itself
is ``HfApi.upload_folder`` of the staged folder: a recording API object stands in
for the Hub's endpoint and checks the folder it is handed at call time, and a real
``HfApi`` against an unreachable endpoint shows how a network failure is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from huggingface_hub import CommitInfo, HfApi
from typer.testing import CliRunner

from hubtune.cli import app
from hubtune.tuner.push import PushError, plan_push, push
from tests.helpers.run import finished_run, one_model_defaults_args


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    _data, out = finished_run(tmp_path_factory.mktemp("push"), one_model_defaults_args,
                              per_class=8, size=24)
    res = CliRunner().invoke(app, ["export", str(out), "--format", "torchscript"])
    assert res.exit_code == 0, res.output  # a pickle-based file in best/, never uploaded
    (out / "best" / ".staging-leftover.json").write_text("{}")
    return out


class RecordingHub:
    """Stands in for the Hub's endpoint: records the calls and what the folder held."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []
        self.uploaded: dict[str, bytes] = {}

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", {"repo_id": repo_id, **kwargs}))

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        root = Path(kwargs["folder_path"])
        self.uploaded = {p.relative_to(root).as_posix(): p.read_bytes()
                         for p in root.rglob("*") if p.is_file()}
        return CommitInfo(commit_url=f"https://huggingface.co/{kwargs['repo_id']}/commit/abc",
                          commit_message=kwargs["commit_message"], commit_description="",
                          oid="abc")


def test_the_plan_keeps_the_loadable_files_and_never_pickles(run):
    plan = plan_push(run, "me/tiny-model")
    assert plan.best == run / "best"
    assert {"model.safetensors", "config.json", "README.md", "labels.json", "metrics.json",
            "preprocessing.json", "hubtune.json"} <= set(plan.files)
    assert "model.torchscript.pt" in plan.skipped and ".staging-leftover.json" in plan.skipped
    assert not [f for f in plan.files if f.endswith((".pt", ".pth", ".bin", ".pkl"))]
    assert plan_push(run / "best", "me/tiny-model").files == plan.files  # best/ itself works too


def test_upload_folder_is_handed_the_staged_best_with_the_hub_card_header(run):
    hub = RecordingHub()
    card = (run / "best" / "README.md").read_text()
    url = push(run, "me/tiny-model", private=True, revision="v1", api=hub)
    assert url == "https://huggingface.co/me/tiny-model/commit/abc"
    (create, kwargs_c), (upload, kwargs_u) = hub.calls
    assert create == "create_repo" and kwargs_c == {"repo_id": "me/tiny-model", "private": True,
                                                    "exist_ok": True}
    assert upload == "upload_folder" and kwargs_u["repo_id"] == "me/tiny-model"
    assert kwargs_u["revision"] == "v1" and "run" in kwargs_u["commit_message"]
    plan = plan_push(run, "me/tiny-model")
    assert sorted(hub.uploaded) == plan.files
    for rel in plan.files:
        if rel != "README.md":
            assert hub.uploaded[rel] == (run / "best" / rel).read_bytes()
    sent = hub.uploaded["README.md"].decode()
    assert sent.startswith("---\nlibrary_name: timm\npipeline_tag: image-classification\n")
    assert sent.endswith(card) and (run / "best" / "README.md").read_text() == card  # not edited
    assert not Path(kwargs_u["folder_path"]).exists()  # the staged copy is gone afterwards
    assert json.loads(hub.uploaded["config.json"])["architecture"]  # timm's config


def test_a_real_hub_client_that_cannot_connect_is_one_error_line(run):
    api = HfApi(endpoint="http://127.0.0.1:9", token="hf_not_a_token")  # nothing listens there
    with pytest.raises(PushError, match=r"^upload to me/tiny-model failed: \w+") as exc:
        push(run, "me/tiny-model", api=api)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("repo", "expected"), [
    ("no slash", "bad repository id 'no slash'"),
    ("justaname", "write it as OWNER/NAME"),
    ("me/--bad--", "bad repository id"),
])
def test_bad_repository_ids_are_refused_before_anything(run, repo, expected):
    res = CliRunner().invoke(app, ["push", str(run), repo])
    assert res.exit_code == 2 and expected in res.output and "Traceback" not in res.output


def test_a_folder_without_an_export_or_with_a_damaged_one_is_refused(run, tmp_path):
    res = CliRunner().invoke(app, ["push", str(tmp_path), "me/x"])
    assert res.exit_code == 2 and "no exported model" in res.output
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(run, broken)
    (broken / "best" / "model.safetensors").write_bytes(b"not safetensors")
    res = CliRunner().invoke(app, ["push", str(broken), "me/x"])
    assert res.exit_code == 2 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_dry_run_lists_what_would_be_sent(run):
    res = CliRunner().invoke(app, ["push", str(run), "me/tiny-model", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "model.safetensors" in res.output and "(not uploaded: model.torchscript.pt)" in res.output
