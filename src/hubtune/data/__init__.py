"""Data layer: image datasets decoded once into uint8 tensors, split reproducibly.

Entry point: :func:`load_dataset` (ImageFolder trees or built-in datasets).
"""

from hubtune.data.builtin import BUILTIN_DATASETS, parse_builtin_name
from hubtune.data.dataset import ImageDataset, ImageSplit
from hubtune.data.errors import DataError, DataWarning, SkippedFile
from hubtune.data.images import IMAGE_EXTENSIONS, decode_count, decode_image
from hubtune.data.loader import load_dataset

__all__ = [
    "BUILTIN_DATASETS",
    "IMAGE_EXTENSIONS",
    "DataError",
    "DataWarning",
    "ImageDataset",
    "ImageSplit",
    "SkippedFile",
    "decode_count",
    "decode_image",
    "load_dataset",
    "parse_builtin_name",
]
