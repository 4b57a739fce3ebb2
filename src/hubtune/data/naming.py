"""Names and identities of the images a run's ``data`` argument points at.

Used to name a run folder's data in a meta-dataset (:func:`dataset_base_name`)
and to recognise the same images again whatever the split seed, subset or
image size (:func:`data_source`, the surrogate's leak guard).
"""

from __future__ import annotations

from pathlib import Path

from hubtune.data.builtin import parse_builtin_name


def dataset_base_name(data: str, subset: int | None, seed: int) -> str:
    """Meta-dataset name of a run's data, as ``hubtune metadata generate`` names it.

    ``digits`` -> ``digits``, ``digits:300`` -> ``digits-300``, seed 1 adds ``-seed1``;
    an ImageFolder path gives its folder name.
    """
    try:
        builtin = parse_builtin_name(str(data))
    except Exception:
        builtin = None
    if builtin is not None:
        name, k = builtin
        k = subset if subset is not None else k
    else:
        name, k = Path(str(data)).expanduser().name or "data", subset
    return name + (f"-{k}" if k else "") + (f"-seed{seed}" if seed else "")


def data_source(data: str, base: Path | None = None) -> str | None:
    """An id of the images a run's ``data`` names, independent of split seed, subset and size.

    ``builtin:<name>`` for a built-in dataset, ``folder:<resolved path>`` for an
    ImageFolder that exists (relative paths against ``base``, else the working
    directory), else ``None``.
    """
    try:
        builtin = parse_builtin_name(str(data))
    except Exception:
        builtin = None
    if builtin is not None:
        return f"builtin:{builtin[0]}"
    path = Path(str(data)).expanduser()
    for candidate in ([path] if path.is_absolute() else [Path.cwd() / path] + ([base / path] if base else [])):
        if candidate.is_dir():
            return f"folder:{candidate.resolve()}"
    return None
