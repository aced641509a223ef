"""Light training-time augmentation: random flips and mild colour jitter, seeded.

Only for *normal training images*: flips would also have to be applied to masks, and jittering a
test image would change what the anomaly score sees. The changes are mild on purpose: a defect
detector must still learn what "normal" looks like, and strong jitter would make real colour
defects (stains) look normal.
"""
from __future__ import annotations

import torch

JITTER = 0.1  # brightness, contrast and saturation factors are drawn from [1 - JITTER, 1 + JITTER]
LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights for the grey image used by saturation


def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per image: horizontal flip (p=1/2), vertical flip (p=1/2), brightness, contrast, saturation.

    images: (B, 3, H, W) in [0, 1]. The random numbers come from ``generator`` (a CPU generator;
    they are drawn on the CPU and moved to the images' device), so the same generator state gives
    the same result. Returns a new tensor in [0, 1]; the input is not modified.
    """
    B = images.shape[0]
    r = torch.rand(B, 5, generator=generator).to(images.device)  # (B, 5) uniform numbers
    hflip, vflip = (r[:, 0] < 0.5).view(B, 1, 1, 1), (r[:, 1] < 0.5).view(B, 1, 1, 1)
    brightness, contrast, saturation = (1 - JITTER + 2 * JITTER * r[:, 2:]).T.reshape(3, B, 1, 1, 1)

    x = torch.where(hflip, images.flip(-1), images)
    x = torch.where(vflip, x.flip(-2), x)
    x = x * brightness
    luma = torch.tensor(LUMA, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
    grey = (x * luma).sum(1, keepdim=True)  # (B, 1, H, W)
    mean = grey.mean((2, 3), keepdim=True)  # (B, 1, 1, 1)
    x = (x - mean) * contrast + mean  # contrast: stretch around the image's mean grey level
    grey = (x * luma).sum(1, keepdim=True)
    x = (x - grey) * saturation + grey  # saturation: move away from / towards the grey image
    return x.clamp(0, 1)
