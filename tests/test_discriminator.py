"""Tests for pvqae_lib.nn.discriminator: the PatchGAN and the adversarial losses."""
import pytest
import torch

from pvqae_lib.nn.discriminator import PatchDiscriminator, adaptive_weight, discriminator_loss, generator_loss


def test_output_is_a_patch_map():
    torch.manual_seed(0)
    d = PatchDiscriminator(width=16)
    out = d(torch.rand(2, 3, 32, 32))
    assert out.ndim == 4 and out.shape[:2] == (2, 1)
    assert out.shape[2] > 1 and out.shape[3] > 1
    # a larger image gives a larger map: one logit per patch, not per image
    assert d(torch.rand(2, 3, 64, 64)).shape[2] > out.shape[2]


def test_patch_logits_are_local():
    torch.manual_seed(1)
    d = PatchDiscriminator(width=16).eval()
    x = torch.rand(1, 3, 64, 64)
    y = x.clone()
    y[..., :8, :8] = 1 - y[..., :8, :8]                  # change only the top-left corner
    changed = (d(x) - d(y)).abs()[0, 0] > 1e-7
    assert changed[0, 0] and not changed[-1, -1]


def test_discriminator_loss_by_hand():
    torch.manual_seed(2)
    real, fake = torch.randn(2, 1, 3, 3), torch.randn(2, 1, 3, 3)
    loss, logs = discriminator_loss(real, fake)
    expected = -(torch.log(torch.sigmoid(real)) + torch.log(1 - torch.sigmoid(fake))).mean()
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(logs["d_loss"], expected)
    assert not logs["d_loss"].requires_grad
    # a perfect discriminator has nearly zero loss
    perfect, _ = discriminator_loss(torch.full((1, 1, 2, 2), 20.0), torch.full((1, 1, 2, 2), -20.0))
    assert perfect.item() < 1e-6


def test_generator_loss_by_hand():
    torch.manual_seed(3)
    fake = torch.randn(2, 1, 3, 3)
    torch.testing.assert_close(generator_loss(fake), -torch.log(torch.sigmoid(fake)).mean())
    assert generator_loss(torch.full((1, 1, 1, 1), 5.0)) < generator_loss(torch.full((1, 1, 1, 1), -5.0))


def test_adaptive_weight_is_the_hand_ratio_and_detached():
    torch.manual_seed(4)
    w = torch.randn(3, 4, requires_grad=True)
    x = torch.randn(5, 4)
    rec = ((x @ w.t()) ** 2).mean()
    g = (x @ w.t()).sin().sum()
    rec_grad, = torch.autograd.grad(rec, w, retain_graph=True)
    g_grad, = torch.autograd.grad(g, w, retain_graph=True)
    expected = rec_grad.norm() / (g_grad.norm() + 1e-4)
    weight = adaptive_weight(rec, g, w)
    torch.testing.assert_close(weight, expected)
    assert not weight.requires_grad
    # the graph is still usable after the call (retain_graph)
    (rec + weight * g).backward()
    assert w.grad is not None


def test_adaptive_weight_is_clamped():
    w = torch.ones(2, requires_grad=True)
    rec = (1e3 * w).sum()
    g = (1e-9 * w).sum()
    assert adaptive_weight(rec, g, w, max_weight=10.0).item() == pytest.approx(10.0)
