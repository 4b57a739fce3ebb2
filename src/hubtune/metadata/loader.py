"""``load_metadata``: read any supported meta-dataset layout, detected from its files."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from hubtune.metadata.errors import MetadataError
from hubtune.metadata.layouts import compact, native, qtt_csv, release
from hubtune.metadata.metadataset import MetaDataset

_REGISTERED: dict[str, tuple[Callable[[Path], bool], Callable[[Path], MetaDataset]]] = {}
"""Layouts read by packages above this one (a ``hubtune run`` folder:
:mod:`hubtune.metagen.runfolder`, which needs the data and journal readers)."""


def register_layout(name: str, detect: Callable[[Path], bool],
                    load: Callable[[Path], MetaDataset]) -> None:
    """Let :func:`load_metadata` read a layout implemented in a higher package."""
    _REGISTERED[name] = (detect, load)

LAYOUTS_HELP = (
    "hubtune's own format (metadata.json + arrays.safetensors), "
    "the Quick-Tune compact layout (table.csv + curves/perf.json + curves/cost.json), "
    "the official Quick-Tune release (eval_top1.json, eval_time.json, train_time.json, args.json), "
    "Quick-Tune-Tool CSVs (config.csv, curve.csv, cost.csv, optional meta.csv), "
    "or a 'hubtune run' folder (run.json + journal.jsonl)"
)


def detect_layout(directory: Path) -> str:
    """Name of the layout in ``directory``: native, compact, release, qtt or run."""
    if native.is_native(directory):
        return "native"
    for name, (detect, _load) in _REGISTERED.items():
        if detect(directory):
            return name
    if (directory / "run.json").is_file() and (directory / "journal.jsonl").is_file():
        raise MetadataError(f"{directory} is a 'hubtune run' folder: read it with "
                            "hubtune.metagen.runfolder.load_run_folders (importing that module "
                            "also lets load_metadata read run folders)")
    if compact.is_compact(directory):
        return "compact"
    if release.is_release(directory):
        return "release"
    if qtt_csv.is_qtt(directory):
        return "qtt"
    present = sorted(p.name for p in directory.iterdir())[:12]
    raise MetadataError(
        f"{directory}: unknown meta-dataset layout (found: {', '.join(present) or 'nothing'}); expected "
        + LAYOUTS_HELP
    )


def load_metadata(path: str | Path) -> MetaDataset:
    """Load a meta-dataset directory, detecting its layout.

    Raises:
        MetadataError: the path is missing, the layout is unknown, or a file is
            malformed (the message names the file and the problem).

    Example:
        >>> meta = load_metadata("../shared/metadata/quicktune-extended")  # doctest: +SKIP
        >>> meta["APL"].scores.shape                                        # doctest: +SKIP
        (210, 50)
    """
    directory = Path(path).expanduser()
    if not directory.exists():
        raise MetadataError(f"{directory}: no such file or directory")
    if not directory.is_dir():
        raise MetadataError(f"{directory}: a meta-dataset is a directory, not a file")
    layout = detect_layout(directory)
    if layout == "native":
        return native.load_native(directory)
    if layout == "compact":
        return compact.load_compact(directory)
    if layout == "release":
        return release.load_release(directory)
    if layout in _REGISTERED:
        return _REGISTERED[layout][1](directory)
    return qtt_csv.load_qtt(directory)


def save_metadata(meta: MetaDataset, directory: str | Path) -> None:
    """Write ``meta`` in hubtune's own format (docs/metadata-format.md) into ``directory``.

    :func:`load_metadata` reads it back.
    """
    native.save_native(meta, Path(directory))
