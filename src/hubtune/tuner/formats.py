"""Convert the exported model ``best/`` to ONNX or TorchScript (``hubtune export``).

Both take images as ``float32 [N, 3, S, S]``, already normalised with
``preprocessing.json``'s mean/std (S = its ``image_size``), and return logits
``[N, num_classes]``; the batch size N is free.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from hubtune.tuner.bestdir import ExportError, LoadedBest, load_best

FORMATS = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt"}
ONNX_OPSET = 17


def check_format(fmt: str) -> str:
    """``fmt`` if it is a known format, else a one-line ExportError listing them."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return fmt


def example_input(loaded: LoadedBest, batch: int = 1) -> torch.Tensor:
    """A normalised input batch of the exported model's shape (zeros)."""
    size = int(loaded.pre["image_size"])
    return torch.zeros(batch, 3, size, size)


def _to_onnx(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter's deprecation notes
        torch.onnx.export(
            model, (x,), str(path), dynamo=False, opset_version=ONNX_OPSET,
            input_names=["image"], output_names=["logits"],
            dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
        )


def _to_torchscript(model: torch.nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, x)
    traced.save(str(path))


def export_model(best_dir: str | Path, fmt: str, out: str | Path | None = None) -> Path:
    """Write ``best_dir``'s model as ``fmt`` to ``out`` (default: ``best_dir/FORMATS[fmt]``).

    The file is written next to ``out`` and renamed into place when complete.
    Raises :class:`ExportError` (one line) for an unknown format, an unusable
    ``best_dir`` or a failed conversion.
    """
    check_format(fmt)
    loaded = load_best(best_dir)
    path = Path(out) if out is not None else Path(best_dir) / FORMATS[fmt]
    if path.is_dir():
        raise ExportError(f"--out {path} is a folder; give a file name")
    if not path.parent.is_dir():
        raise ExportError(f"--out {path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    x = example_input(loaded, batch=2)
    try:
        with torch.no_grad():
            (_to_onnx if fmt == "onnx" else _to_torchscript)(loaded.model, x, tmp)
        os.replace(tmp, path)
    except (RuntimeError, ValueError, TypeError, ImportError, OSError) as exc:
        raise ExportError(f"{fmt} export of {loaded.meta['model']} failed: "
                          f"{(str(exc).splitlines() or [''])[0]}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return path
