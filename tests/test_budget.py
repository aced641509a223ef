"""Tests for pvqae_lib.nn.budget: Haar DWT, patch entropy, level costs, L_Budget and the λ schedules."""
import math

import numpy as np
import pytest
import pywt
import torch

from pvqae_lib.nn.budget import budget_loss, haar_dwt, lambda_at, level_costs, patch_entropy


def test_haar_dwt_matches_pywt():
    rng = np.random.default_rng(0)
    x = rng.random((2, 1, 8, 6))
    ours = haar_dwt(torch.from_numpy(x))
    for n in range(2):
        cA, (cH, cV, cD) = pywt.dwt2(x[n, 0], "haar")
        for name, ref, got in zip(("cA", "cH", "cV", "cD"), (cA, cH, cV, cD), ours):
            assert got.shape == (2, 1, 4, 3), name
            np.testing.assert_allclose(got[n, 0].numpy(), ref, atol=1e-12, err_msg=name)


def test_haar_dwt_is_orthonormal():
    torch.manual_seed(0)
    x = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    energy = sum((c ** 2).sum() for c in haar_dwt(x))
    torch.testing.assert_close(energy, (x ** 2).sum())


def test_patch_entropy_flat_is_zero_and_noise_is_high():
    torch.manual_seed(0)
    flat = torch.full((1, 3, 16, 16), 0.5)
    noise = torch.rand(1, 3, 16, 16)
    assert patch_entropy(flat, 8).abs().max() < 1e-6
    h = patch_entropy(noise, 8)
    assert h.min() > 0.6
    # a smooth ramp has constant (tiny) details: lower than noise
    ramp = torch.linspace(0, 1, 16).view(1, 1, 1, 16).expand(1, 3, 16, 16)
    assert patch_entropy(ramp, 8).max() < h.min()


def test_patch_entropy_shape_range_and_locality():
    torch.manual_seed(1)
    x = torch.full((2, 3, 32, 16), 0.5)
    x[1, :, 8:16, 0:8] = torch.rand(3, 8, 8)       # one textured patch in image 1
    h = patch_entropy(x, 8)
    assert h.shape == (2, 4, 2)
    assert ((h >= 0) & (h <= 1)).all()
    assert h[1, 1, 0] > 0.5
    h[1, 1, 0] = 0
    assert h.abs().max() < 1e-6                     # every other patch stays flat


@pytest.mark.parametrize("size,patch", [((30, 32), 8), ((32, 32), 6), ((32, 32), 3)])
def test_patch_entropy_rejects_bad_sizes(size, patch):
    with pytest.raises(ValueError):
        patch_entropy(torch.rand(1, 3, *size), patch)


def test_level_costs():
    torch.testing.assert_close(level_costs(3), torch.tensor([1 / 16, 1 / 4, 1.0]))
    torch.testing.assert_close(level_costs(2), torch.tensor([1 / 2, 1.0]))      # c = 2
    torch.testing.assert_close(level_costs(4), torch.tensor([1 / 512, 1 / 64, 1 / 8, 1.0]))   # c = 8


def test_budget_loss_hand_computation():
    levels = torch.tensor([[0, 1], [2, 2]])
    scores = torch.nn.functional.one_hot(levels, 3).permute(2, 0, 1)[None].float()   # (1, 3, 2, 2)
    entropy = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]])
    patch, eps = 8, 0.05
    mean = 0.5
    costs = [1 / 16, 1 / 4, 1.0, 1.0]
    richness = [0.2 / mean, 0.4 / mean, 0.6 / mean, 0.8 / mean]
    expected = sum(c / (r + eps) for c, r in zip(costs, richness)) / 4 / (3 * patch * patch)
    assert budget_loss(scores, entropy, patch, eps).item() == pytest.approx(expected, rel=1e-6)


def test_budget_loss_soft_scores_are_linear():
    entropy = torch.tensor([[[0.3, 0.7]]])
    s = torch.tensor([0.2, 0.3, 0.5])
    soft = s.view(1, 3, 1, 1).expand(1, 3, 1, 2)
    hard = [torch.nn.functional.one_hot(torch.full((1, 1, 2), r), 3).permute(0, 3, 1, 2).float() for r in range(3)]
    mix = sum(w * budget_loss(h, entropy, 8) for w, h in zip(s, hard))
    torch.testing.assert_close(budget_loss(soft, entropy, 8), mix)


def _all_at(level, shape=(1, 2, 2)):
    return torch.nn.functional.one_hot(torch.full(shape, level), 3).permute(0, 3, 1, 2).float()


def test_finer_routing_costs_more():
    entropy = torch.tensor([[[0.2, 0.4], [0.6, 0.8]]])
    losses = [budget_loss(_all_at(r), entropy, 8).item() for r in range(3)]
    assert losses[0] < losses[1] < losses[2]


def test_richer_context_costs_less():
    """Spending the fine level on the textured patch is cheaper than on the flat one."""
    entropy = torch.tensor([[[0.1, 0.9]]])
    fine_on_rich = torch.nn.functional.one_hot(torch.tensor([[[0, 2]]]), 3).permute(0, 3, 1, 2).float()
    fine_on_flat = torch.nn.functional.one_hot(torch.tensor([[[2, 0]]]), 3).permute(0, 3, 1, 2).float()
    assert budget_loss(fine_on_rich, entropy, 8) < budget_loss(fine_on_flat, entropy, 8)


def test_budget_loss_gradient_reaches_scores():
    scores = torch.full((1, 3, 2, 2), 1 / 3, requires_grad=True)
    budget_loss(scores, torch.rand(1, 2, 2), 8).backward()
    g = scores.grad[0, :, 0, 0]
    assert 0 < g[0] < g[1] < g[2]                   # pushing towards finer levels raises the loss most


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_lambda_end_points(schedule):
    assert lambda_at(0.0, 1.25, schedule) == pytest.approx(0.0)
    assert lambda_at(1.0, 1.25, schedule) == pytest.approx(1.25)
    assert lambda_at(2.0, 1.25, schedule) == pytest.approx(1.25)      # clamped
    assert lambda_at(-1.0, 1.25, schedule) == pytest.approx(0.0)


def test_lambda_constant_and_midpoints():
    for p in (0.0, 0.3, 1.0):
        assert lambda_at(p, 1.25, "constant") == 1.25
    assert lambda_at(0.5, 2.0, "cosine") == pytest.approx(1.0)
    assert lambda_at(0.5, 2.0, "linear") == pytest.approx(1.0)
    assert lambda_at(0.25, 2.0, "cosine") == pytest.approx(2.0 * (1 - math.cos(math.pi / 4)) / 2)
    assert lambda_at(0.25, 2.0, "cosine") < lambda_at(0.25, 2.0, "linear")   # cosine starts slower


def test_lambda_unknown_schedule_raises():
    with pytest.raises(ValueError, match="schedule"):
        lambda_at(0.5, 1.0, "exponential")
