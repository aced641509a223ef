"""Tests for pvqae_lib.engine.segmentation: Dice and Focal losses (LFQUIAD Eq. 3), the head, its training and maps."""
import math

import pytest
import torch

from pvqae_lib.config import HeadConfig, ModelConfig
from pvqae_lib.data import make_synthetic
from pvqae_lib.data.anomaly import AnomalySynthesizer
from pvqae_lib.engine.segmentation import (
    SegmentationHead,
    dice_focal_loss,
    dice_loss,
    evaluate_head,
    focal_loss,
    head_maps,
    train_head,
)
from pvqae_lib.nn.factory import build_model

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return build_model(ModelConfig(image_size=32)).eval()


def test_dice_loss_perfect_prediction_is_near_zero():
    target = torch.zeros(2, 1, 8, 8)
    target[0, 0, 2:5, 3:6] = 1
    target[1, 0, 0, 0] = 1
    logits = 30 * (2 * target - 1)
    assert dice_loss(logits, target) < 1e-3
    assert dice_loss(-logits, target) > 0.9


def test_dice_loss_hand_value():
    logits = torch.tensor([[[[30.0, -30.0]]]])            # p = [1, 0]
    target = torch.tensor([[[[1.0, 1.0]]]])
    assert dice_loss(logits, target, smooth=0.0).item() == pytest.approx(1 - 2 / 3, abs=1e-6)
    # smoothing: 1 - (2·1 + 1) / (1 + 2 + 1)
    assert dice_loss(logits, target, smooth=1.0).item() == pytest.approx(1 - 3 / 4, abs=1e-6)


def test_focal_loss_two_pixel_hand_value():
    logits = torch.tensor([math.log(3.0), 0.0])           # p = 0.75 (anomalous pixel), 0.5 (normal pixel)
    target = torch.tensor([1.0, 0.0])
    a, g = 0.25, 2.0
    pixel1 = a * (1 - 0.75) ** g * -math.log(0.75)        # α (1 − p_t)^γ (−log p_t)
    pixel2 = (1 - a) * (1 - 0.5) ** g * -math.log(0.5)
    assert focal_loss(logits, target, alpha=a, gamma=g).item() == pytest.approx((pixel1 + pixel2) / 2, rel=1e-5)
    assert focal_loss(logits, target, alpha=a, gamma=g).item() == pytest.approx(0.0672330, rel=1e-4)


def test_focal_loss_with_gamma_zero_is_cross_entropy():
    logits, target = torch.randn(4, 1, 5, 5), (torch.rand(4, 1, 5, 5) < 0.3).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target)
    assert torch.allclose(focal_loss(logits, target, alpha=None, gamma=0.0), bce)


def test_dice_focal_loss_is_the_weighted_sum():
    logits, target = torch.randn(2, 1, 6, 6), (torch.rand(2, 1, 6, 6) < 0.3).float()
    loss, logs = dice_focal_loss(logits, target, dice_weight=0.3)
    expected = 0.3 * dice_loss(logits, target) + 0.7 * focal_loss(logits, target)
    assert torch.allclose(loss, expected)
    assert logs["dice"] == pytest.approx(dice_loss(logits, target).item())


def test_head_shapes_and_gradients():
    head = SegmentationHead(width=4)
    x, recon = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32)
    logits = head(x, recon)
    assert logits.shape == (2, 1, 32, 32)
    logits.sum().backward()
    assert all(p.grad is not None for p in head.parameters())


def test_a_few_steps_reduce_the_loss():
    torch.manual_seed(0)
    data = make_synthetic("train", 32, num_per_category=2)
    x, m = AnomalySynthesizer(data, seed=0).sample(8)
    recon = data.images[:1].expand(8, -1, -1, -1)        # a fixed stand-in reconstruction
    head = SegmentationHead(width=4)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss, _ = dice_focal_loss(head(x, recon), m)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.85 * losses[0]


def test_train_head_freezes_the_autoencoder_and_returns_history(tiny_model):
    data = make_synthetic("train", 32, num_per_category=2)
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    head, history = train_head(tiny_model, data, HeadConfig(steps=3, batch_size=4, width=4), seed=0)
    assert len(history["loss"]) == len(history["dice"]) == len(history["focal"]) == 3
    assert not head.training
    assert all(torch.equal(before[k], v) for k, v in tiny_model.state_dict().items())
    assert all(p.grad is None for p in tiny_model.parameters())


def test_head_maps_and_evaluation(tiny_model):
    test = make_synthetic("test", 32, num_per_category=6)
    head = SegmentationHead(width=4).eval()
    for mode in ("max", "topk", "mean"):
        maps, scores = head_maps(head, tiny_model, test.images[:4], image_score=mode)
        assert maps.shape == (4, 32, 32) and scores.shape == (4,)
        assert maps.min() >= 0 and maps.max() <= 1
    maps, scores = head_maps(head, tiny_model, test.images[:4], sigma=0)
    assert torch.allclose(scores, maps.flatten(1).amax(1))
    result = evaluate_head(head, tiny_model, test)
    assert {"image_auroc", "pixel_auroc", "pro", "per_category"} <= set(result)
    assert 0 <= result["image_auroc"] <= 1 and len(result["per_category"]) == 3
