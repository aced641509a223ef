"""The patch discriminator and the adversarial losses (Sec. III-A.2, Chapter 5).

The paper's L_ADV = log D(x) + log(1 - D(x̂)) is the standard GAN objective; written with
logits it is a softplus (binary cross-entropy) loss, and the generator uses the usual
non-saturating form.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class PatchDiscriminator(nn.Module):
    """A PatchGAN (Isola et al. 2017, as used by VQGAN): one real/fake logit per overlapping patch.

    4x4 convolutions, LeakyReLU(0.2), channel multipliers min(2^n, 8), BatchNorm without bias
    before it, weights drawn from N(0, 0.02).
    """

    def __init__(self, width: int = 32, num_layers: int = 2):
        super().__init__()
        layers = [nn.Conv2d(3, width, 4, stride=2, padding=1), nn.LeakyReLU(0.2)]
        ch = width
        for n in range(1, num_layers + 1):
            out = width * min(2 ** n, 8)
            stride = 2 if n < num_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride=stride, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.LeakyReLU(0.2)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, stride=1, padding=1))
        self.net = nn.Sequential(*layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] → patch logits (B, 1, h, w)."""
        return self.net(x * 2 - 1)


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> tuple[torch.Tensor, dict]:
    """-[log D(x) + log(1 - D(x̂))], averaged over patches: the discriminator's side of L_ADV."""
    loss_real = F.softplus(-real_logits).mean()    # -log sigmoid(real)
    loss_fake = F.softplus(fake_logits).mean()     # -log(1 - sigmoid(fake))
    loss = loss_real + loss_fake
    return loss, {"d_loss": loss.detach(), "d_real": real_logits.detach().mean(), "d_fake": fake_logits.detach().mean()}


def generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """Non-saturating generator loss -log D(x̂) (Goodfellow et al. 2014)."""
    return F.softplus(-fake_logits).mean()


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last_layer: torch.Tensor,
                    max_weight: float = 1e4) -> torch.Tensor:
    """VQGAN's balance ||∇ rec|| / (||∇ g|| + 1e-4) at the decoder's last weight, clamped and detached."""
    rec_grad = torch.autograd.grad(rec_loss, last_layer, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last_layer, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0.0, max_weight).detach()
