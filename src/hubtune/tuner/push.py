"""``hubtune push RUN REPO``: upload a run's ``best/`` to the Hugging Face Hub.

The upload is :meth:`huggingface_hub.HfApi.upload_folder` of a staged copy of
``best/``: the files a user loads (``model.safetensors``, ``config.json`` for
``timm.create_model("hf-hub:REPO", pretrained=True)``, the JSON files,
``README.md``, an ensemble's ``ensemble.json`` and ``ensemble/<trial>/``, an ONNX
export), never pickle-based files (``*.pt``, ``*.pth``, ``*.bin``, ``*.pkl``:
a TorchScript export stays local). The model card gets the Hub's metadata header
(``library_name: timm``, ``pipeline_tag: image-classification``, tags) when it has
none. Before anything is sent, ``best/`` is loaded and validated
(:func:`~hubtune.tuner.bestdir.load_best`) and the repository id is checked with
the library's own rule; each problem is one :class:`PushError` line.

Example::

    from hubtune.tuner.push import push
    url = push("runs/fashion", "me/fashion-mobilenet", private=True)
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

KEEP = ("*.safetensors", "*.json", "README.md", "*.onnx")
"""What is uploaded (anywhere under ``best/``)."""
NEVER = ("*.pt", "*.pth", "*.bin", "*.pkl", "*.pickle")
"""Never uploaded: pickle-based formats (nor hidden files, e.g. a staging leftover)."""
CARD_HEADER = """---
library_name: timm
pipeline_tag: image-classification
tags:
- image-classification
- timm
- hubtune
---

"""


class PushError(ValueError):
    """A push that cannot be done (one line)."""


@dataclass
class PushPlan:
    """What would be uploaded: the repository, the ``best/`` folder and its kept files."""

    repo_id: str
    best: Path
    files: list[str]
    """Paths relative to ``best``, sorted."""
    skipped: list[str]
    """Files of ``best`` that are not uploaded (pickle-based or hidden)."""


def _kept(rel: Path) -> bool:
    """Whether ``rel`` (a path under ``best/``) is uploaded."""
    if any(part.startswith(".") for part in rel.parts) or any(rel.match(p) for p in NEVER):
        return False
    return any(rel.match(p) for p in KEEP)


def plan_push(run_dir: str | Path, repo_id: str) -> PushPlan:
    """Check ``repo_id`` and the run's ``best/`` (a run folder or a ``best/`` folder)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    from hubtune.tuner.bestdir import ExportError, load_best

    try:
        validate_repo_id(repo_id)
    except HFValidationError as exc:
        raise PushError(f"bad repository id {repo_id!r}: {str(exc).splitlines()[0]}") from None
    if "/" not in repo_id:
        raise PushError(f"bad repository id {repo_id!r}: write it as OWNER/NAME")
    run_dir = Path(run_dir)
    best = run_dir / "best" if (run_dir / "best").is_dir() else run_dir
    if not (best / "model.safetensors").exists():
        raise PushError(f"{run_dir} has no exported model (no best/model.safetensors): "
                        "finish a hubtune run first")
    try:  # a damaged best/ (or ensemble) is refused before anything is sent
        loaded = load_best(best, device="cpu")
        if (best / "ensemble.json").exists():
            from hubtune.tuner.ensemble_load import load_ensemble

            load_ensemble(best, len(loaded.labels), int(loaded.pre["image_size"]), "cpu")
    except ExportError as exc:
        raise PushError(str(exc)) from None
    files, skipped = [], []
    for path in sorted(p for p in best.rglob("*") if p.is_file()):
        rel = path.relative_to(best)
        (files if _kept(rel) else skipped).append(rel.as_posix())
    if "README.md" not in files:
        raise PushError(f"{best} has no model card (README.md): export it again with hubtune run")
    return PushPlan(repo_id, best, files, skipped)


@contextmanager
def staged(plan: PushPlan) -> Iterator[Path]:
    """A temporary copy of the files to upload, the model card with the Hub's header."""
    with tempfile.TemporaryDirectory(prefix="hubtune-push-") as tmp:
        root = Path(tmp) / "best"
        for rel in plan.files:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(plan.best / rel, root / rel)
        card = (root / "README.md").read_text(encoding="utf-8")
        if not card.startswith("---\n"):
            (root / "README.md").write_text(CARD_HEADER + card, encoding="utf-8")
        yield root


def push(run_dir: str | Path, repo_id: str, *, private: bool = False,
         revision: str | None = None, commit_message: str | None = None,
         token: str | None = None, api: Any = None) -> str:
    """Create ``repo_id`` if needed and upload the run's ``best/`` to it; returns the commit URL.

    ``api``: the :class:`huggingface_hub.HfApi` to use (default: a new one, with
    ``token`` or the one ``huggingface-cli login`` stored). Network and Hub errors
    are raised as one-line :class:`PushError` s.
    """
    plan = plan_push(run_dir, repo_id)
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    message = commit_message or f"hubtune: upload {Path(run_dir).resolve().name} (best/)"
    with staged(plan) as folder:
        try:
            api.create_repo(repo_id, private=private, exist_ok=True)
            info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), revision=revision,
                                     commit_message=message)
        except Exception as exc:  # noqa: BLE001 - network, auth and Hub errors: one line
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise PushError(f"upload to {repo_id} failed: {type(exc).__name__}: {first}") from None
    return str(getattr(info, "commit_url", None) or info)
