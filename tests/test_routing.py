"""Tests for pvqae_lib.nn.routing: Gumbel-Softmax sampling and the Dynamic Routing Module."""
import pytest
import torch
import torch.nn.functional as F

from pvqae_lib.nn.routing import DynamicRouter, gumbel_softmax_sample


def test_hard_sample_is_one_hot_and_gradient_flows():
    torch.manual_seed(0)
    logits = torch.randn(64, 3, requires_grad=True)
    b = gumbel_softmax_sample(logits, tau=1.0, hard=True)
    assert set(b.detach().unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(b.sum(-1), torch.ones(64))
    (b * torch.randn(64, 3)).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_hard_sample_along_channel_dim():
    torch.manual_seed(0)
    b = gumbel_softmax_sample(torch.randn(2, 3, 4, 5), tau=0.5, hard=True, dim=1)
    assert b.shape == (2, 3, 4, 5)
    torch.testing.assert_close(b.sum(1), torch.ones(2, 4, 5))


def test_soft_sample_approaches_one_hot_as_tau_shrinks():
    logits = torch.tensor([0.5, 0.0, -0.5]).repeat(2000, 1)
    torch.manual_seed(1)
    sharp = gumbel_softmax_sample(logits, tau=0.01, hard=False).max(-1).values
    torch.manual_seed(1)
    smooth = gumbel_softmax_sample(logits, tau=5.0, hard=False).max(-1).values
    assert sharp.mean() > 0.99
    assert smooth.mean() < 0.6


def test_gumbel_max_frequencies_match_softmax():
    """argmax(logits + Gumbel noise) is a sample of softmax(logits), for any tau."""
    torch.manual_seed(2)
    n = 40000
    logits = torch.tensor([1.0, 0.0, -1.0])
    for tau in (1.0, 0.3):
        idx = gumbel_softmax_sample(logits.repeat(n, 1), tau=tau, hard=True).argmax(-1)
        freq = torch.bincount(idx, minlength=3).float() / n
        # 4 standard errors of a proportion (at most 0.0025 for n = 40000)
        torch.testing.assert_close(freq, logits.softmax(0), atol=0.01, rtol=0)


@pytest.mark.parametrize("tau", [0.0, -1.0])
def test_non_positive_tau_raises(tau):
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax_sample(torch.zeros(2, 3), tau=tau)


def _features():
    torch.manual_seed(3)
    return [torch.randn(2, 4, 2, 2), torch.randn(2, 5, 4, 4), torch.randn(2, 6, 8, 8)]   # coarsest first


def test_router_output_shape():
    router = DynamicRouter([4, 5, 6], hidden=16)
    assert router(_features()).shape == (2, 3, 2, 2)


def test_router_pools_by_average():
    torch.manual_seed(4)
    router = DynamicRouter([4, 5, 6], hidden=16)
    f0, f1, f2 = _features()
    # manual average pooling to the 2x2 grid
    p1 = f1.view(2, 5, 2, 2, 2, 2).mean(dim=(3, 5))
    p2 = f2.view(2, 6, 2, 4, 2, 4).mean(dim=(3, 5))
    expected = router.mlp(torch.cat([f0, p1, p2], 1))
    torch.testing.assert_close(router([f0, f1, f2]), expected)
    # max pooling would give something else
    wrong = router.mlp(torch.cat([f0, F.max_pool2d(f1, 2), F.max_pool2d(f2, 4)], 1))
    assert not torch.allclose(router([f0, f1, f2]), wrong)


def test_router_acts_per_patch():
    """The MLP is 1x1: changing one coarse patch's features changes only that patch's logits."""
    torch.manual_seed(5)
    router = DynamicRouter([4, 5, 6], hidden=16)
    feats = _features()
    base = router(feats)
    feats[2] = feats[2].clone()
    feats[2][:, :, :4, :4] += 1.0                # the top-left coarse patch of the finest level
    changed = (router(feats) - base).abs().sum(1) > 1e-6
    assert changed[:, 0, 0].all() and changed.sum() == 2


def test_route_eval_is_deterministic_argmax():
    torch.manual_seed(6)
    logits = torch.randn(2, 3, 4, 4)
    a = DynamicRouter.route(logits, tau=1.0, training=False)
    b = DynamicRouter.route(logits, tau=1.0, training=False)
    assert torch.equal(a, b)
    assert torch.equal(a.argmax(1), logits.argmax(1))
    torch.testing.assert_close(a.sum(1), torch.ones(2, 4, 4))
    assert set(a.unique().tolist()) == {0.0, 1.0}


def test_route_training_samples():
    torch.manual_seed(7)
    logits = torch.zeros(4, 3, 8, 8)             # uniform: sampling must differ from argmax somewhere
    b = DynamicRouter.route(logits, tau=1.0, training=True)
    torch.testing.assert_close(b.sum(1), torch.ones(4, 8, 8))
    assert len(b.argmax(1).unique()) == 3
