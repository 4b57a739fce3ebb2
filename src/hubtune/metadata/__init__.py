"""The meta-dataset layer: recorded finetuning runs, loaded from any supported layout.

>>> from hubtune.metadata import load_metadata
>>> meta = load_metadata("../shared/metadata/quicktune-extended")   # doctest: +SKIP
>>> runs = meta["APL"]                 # DatasetRuns: configs, scores [n, 50], seconds, lengths
>>> train = meta.without(["APL"])      # doctest: +SKIP
"""

from hubtune.metadata.errors import MetadataError, UnmappedRun
from hubtune.metadata.loader import load_metadata, save_metadata
from hubtune.metadata.mapping import config_from_hyperparameters
from hubtune.metadata.metadataset import MetaDataset
from hubtune.metadata.runs import DatasetRuns

__all__ = [
    "DatasetRuns",
    "MetaDataset",
    "MetadataError",
    "UnmappedRun",
    "config_from_hyperparameters",
    "load_metadata",
    "save_metadata",
]
