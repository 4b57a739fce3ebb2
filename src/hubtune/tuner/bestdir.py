"""The exported model folder ``best/``: swapped in atomically, validated when loaded.

Writing (:func:`publish_best`): the export is written to a sibling folder
``RUN/.best.tmp-PID``, fsynced, then swapped in with two renames (the old
``best/`` moved aside to ``RUN/.best.old-PID``, the new folder renamed to
``best/``) and the old folder removed. A reader therefore sees one complete
export (weights, configs and ``metrics.json`` of one model), never a mix.
:func:`recover_best` repairs what a kill between those steps leaves behind.

Loading (:func:`load_best`): every file is checked and a problem is reported as
one :class:`ExportError` line naming the file and what is wrong with it.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

TMP_PREFIX = ".best.tmp-"
ASIDE_PREFIX = ".best.old-"
REQUIRED = ("model.safetensors", "config.json", "hubtune.json", "labels.json", "preprocessing.json")


class ExportError(RuntimeError):
    """The exported model folder is missing pieces or cannot be used."""


# ------------------------------------------------------------------ writing
def staging_dir(best: Path) -> Path:
    """A fresh, empty sibling folder of ``best`` to write a new export into."""
    tmp = best.parent / f"{TMP_PREFIX}{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    return tmp


def fsync_tree(folder: Path) -> None:
    """Flush every file of ``folder`` and the folder entry itself to disk."""
    for p in folder.iterdir():
        if p.is_file():
            with open(p, "rb") as fh:
                os.fsync(fh.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def publish_best(staged: Path, best: Path) -> None:
    """Swap the complete export ``staged`` in as ``best`` (see the module doc).

    Steps: fsync ``staged``; rename the old ``best`` aside; rename ``staged`` to
    ``best``; fsync the run folder; remove the old folder. A kill after any step
    leaves a state :func:`recover_best` turns back into one complete ``best/``.
    """
    fsync_tree(staged)
    aside = best.parent / f"{ASIDE_PREFIX}{os.getpid()}"
    if aside.exists():
        shutil.rmtree(aside)
    if best.exists():
        os.replace(best, aside)
    os.replace(staged, best)
    _fsync_dir(best.parent)
    if aside.exists():
        shutil.rmtree(aside)


def fingerprint(best: Path) -> str | None:
    """SHA-256 over the relative paths and bytes of every file under ``best`` (sorted);
    ``None`` when ``best`` is not a folder. Tells whether an export is still as written."""
    if not best.is_dir():
        return None
    digest = hashlib.sha256()
    for p in sorted(q for q in best.rglob("*") if q.is_file()):
        digest.update(f"{p.relative_to(best).as_posix()}\0{p.stat().st_size}\0".encode())
        with open(p, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def recover_best(run_dir: Path) -> list[str]:
    """Repair ``run_dir/best`` after an interrupted :func:`publish_best`; returns what was done.

    A staged (``.best.tmp-*``) folder is incomplete by definition and removed.
    When ``best/`` is missing but an old folder was moved aside, the newest one
    is restored; other moved-aside folders are removed.
    """
    run_dir = Path(run_dir)
    best = run_dir / "best"
    done: list[str] = []
    if not run_dir.is_dir():
        return done
    for tmp in sorted(run_dir.glob(f"{TMP_PREFIX}*")):
        shutil.rmtree(tmp, ignore_errors=True)
        done.append(f"removed the unfinished export {tmp.name}")
    asides = sorted(run_dir.glob(f"{ASIDE_PREFIX}*"), key=lambda p: p.stat().st_mtime)
    if asides and not best.exists():
        os.replace(asides.pop(), best)
        done.append("restored best/ from the previous export (the swap was interrupted)")
    for old in asides:
        shutil.rmtree(old, ignore_errors=True)
        done.append(f"removed the replaced export {old.name}")
    return done


# ------------------------------------------------------------------ loading
@dataclass
class LoadedBest:
    """A validated ``best/``: the model (eval mode, on ``device``) and its metadata."""

    model: torch.nn.Module
    labels: list[str]
    pre: dict[str, Any]
    timm_config: dict[str, Any]
    meta: dict[str, Any]


def _read_json(d: Path, name: str) -> Any:
    try:
        return json.loads((d / name).read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ExportError(f"{d / name}: invalid JSON ({exc})") from None
    except OSError as exc:
        raise ExportError(f"{d / name}: cannot be read ({exc.strerror or exc})") from None


def _check_triplet(d: Path, name: str, where: str, value: Any) -> tuple[float, float, float]:
    ok = isinstance(value, (list, tuple)) and len(value) == 3 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ExportError(f"{d / name}: {where} must be 3 numbers (one per RGB channel), got {value!r}")
    if where.endswith("std") and any(v <= 0 for v in value):
        raise ExportError(f"{d / name}: {where} must be positive, got {value!r}")
    return tuple(float(v) for v in value)  # type: ignore[return-value]


def _check_metadata(d: Path, cfg: dict, pre: dict, meta: dict, labels: Any) -> int:
    """Cross-check the JSON files; returns the number of classes."""
    for name, obj in (("config.json", cfg), ("preprocessing.json", pre), ("hubtune.json", meta)):
        if not isinstance(obj, dict):
            raise ExportError(f"{d / name}: expected a JSON object, got {type(obj).__name__}")
    model, arch = meta.get("model"), meta.get("architecture")
    if not isinstance(model, str) or not isinstance(arch, str):
        raise ExportError(f"{d / 'hubtune.json'}: needs the hub 'model' name and its timm 'architecture'")
    if cfg.get("architecture") != arch:
        raise ExportError(f"{d / 'config.json'}: architecture {cfg.get('architecture')!r} does not match "
                          f"the exported model {model!r} ({arch!r}, hubtune.json)")
    if pre.get("model") != model:
        raise ExportError(f"{d / 'preprocessing.json'}: model {pre.get('model')!r} does not match "
                          f"{model!r} (hubtune.json)")
    n = cfg.get("num_classes")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ExportError(f"{d / 'config.json'}: num_classes must be a whole number >= 1, got {n!r}")
    pcfg = cfg.get("pretrained_cfg")
    if not isinstance(pcfg, dict):
        raise ExportError(f"{d / 'config.json'}: pretrained_cfg (timm preprocessing) is missing")
    for key in ("mean", "std"):
        _check_triplet(d, "config.json", f"pretrained_cfg.{key}", pcfg.get(key))
        _check_triplet(d, "preprocessing.json", key, pre.get(key))
    size = pre.get("image_size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise ExportError(f"{d / 'preprocessing.json'}: image_size must be a whole number >= 1, got {size!r}")
    if not isinstance(labels, list) or not all(isinstance(s, str) for s in labels):
        raise ExportError(f"{d / 'labels.json'}: expected a list of class names")
    if len(labels) != n:
        raise ExportError(f"{d / 'labels.json'}: {len(labels)} class names for a head of {n} classes "
                          f"(config.json num_classes)")
    return n


def _load_weights(d: Path, model: torch.nn.Module, model_name: str) -> None:
    """Load ``model.safetensors`` into ``model``; a wrong or damaged file is an ExportError."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = d / "model.safetensors"
    try:
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ExportError(f"{path}: not a readable safetensors file ({exc})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(tensors))
    extra = sorted(set(tensors) - set(own))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected {extra[0]}"
        raise ExportError(f"{path}: weights are not those of {model_name} ({what}; "
                          f"{len(missing)} missing, {len(extra)} unexpected tensors)")
    for k, t in tensors.items():
        if tuple(t.shape) != tuple(own[k].shape):
            raise ExportError(f"{path}: tensor {k} has shape {list(t.shape)}, {model_name} "
                              f"needs {list(own[k].shape)} (weights from another run?)")
    model.load_state_dict(tensors)


def load_best(best_dir: str | Path, device: str = "cpu") -> LoadedBest:
    """Validate ``best_dir`` and build its model; any problem raises a one-line ExportError."""
    from hubtune.hub import HubError, create_model

    d = Path(best_dir)
    if not d.is_dir():
        raise ExportError(f"{d} does not exist or is not a folder (no exported model)")
    missing = [n for n in REQUIRED if not (d / n).exists()]
    if missing == ["hubtune.json"]:
        raise ExportError(f"{d} is not an exported hubtune model (missing hubtune.json; written by "
                          f"an older hubtune? run the same 'hubtune run' again to re-export it)")
    if missing:
        raise ExportError(f"{d} is not an exported hubtune model (missing {', '.join(missing)})")
    cfg, pre, meta, labels = (_read_json(d, n) for n in
                              ("config.json", "preprocessing.json", "hubtune.json", "labels.json"))
    n = _check_metadata(d, cfg, pre, meta, labels)
    try:
        model = create_model(meta["model"], num_classes=n, pretrained=False).model
    except HubError as exc:
        raise ExportError(f"{d / 'hubtune.json'}: model {meta['model']!r} cannot be built ({exc})") from None
    _load_weights(d, model, meta["model"])
    model.to(device).eval()
    return LoadedBest(model=model, labels=labels, pre=pre, timm_config=cfg, meta=meta)
