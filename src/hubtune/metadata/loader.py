"""``load_metadata``: read any supported meta-dataset layout, detected from its files."""

from __future__ import annotations

from pathlib import Path

from hubtune.metadata.errors import MetadataError
from hubtune.metadata.layouts import compact, native, qtt_csv, release, runfolder
from hubtune.metadata.metadataset import MetaDataset

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
    if runfolder.is_run_folder(directory):
        return "run"
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
    if layout == "run":
        return runfolder.load_run_folder(directory)
    return qtt_csv.load_qtt(directory)


def save_metadata(meta: MetaDataset, directory: str | Path) -> None:
    """Write ``meta`` in hubtune's own format (docs/metadata-format.md) into ``directory``.

    :func:`load_metadata` reads it back.
    """
    native.save_native(meta, Path(directory))
