"""PVQAE's codebooks as a learned memory bank (pvqae_lib.nn.codebank) and k-means (pvqae_lib.nn.quantize)."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from pvqae_lib.config import ModelConfig, TrainConfig, get_profile, with_backbone
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine.pipeline import evaluate, fit, load_trained, save_trained, score
from pvqae_lib.nn.codebank import CodeBankPVQAE, coarse_distances, router_loss, train_router
from pvqae_lib.nn.factory import build_model
from pvqae_lib.nn.quantize import kmeans

pytestmark = pytest.mark.usefixtures("one_thread")

CHANNELS = (6, 4, 2)          # a toy pyramid, coarsest first, on 2 / 4 / 8 grids


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("PVQAE_CACHE", str(tmp_path / "cache"))


def toy_levels(n=16, seed=0, shift=0.0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, s, s, generator=g) + shift for c, s in zip(CHANNELS, (2, 4, 8))]


def toy_config(**kw):
    return ModelConfig(**{"model": "pvqae", "backbone": "efficientnet-lite0", "image_size": 64,
                          "feature_model": "bank", "bank_size": 32, "bank_samples": 500, **kw})


# ------------------------------------------------------------------------------------------ k-means

def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = torch.cat([c + 0.1 * torch.randn(50, 2, generator=g) for c in centres])
    codes = kmeans(x, 3, iters=10, seed=1)
    nearest = torch.cdist(centres, codes).min(1).values
    assert nearest.max() < 0.2                       # one code on each cluster


def test_kmeans_restarts_dead_codes_and_checks_k():
    x = torch.cat([torch.zeros(20, 2), torch.ones(1, 2) * 5])     # 20 identical rows and one outlier
    codes = kmeans(x, 2, iters=3, seed=0)
    assert torch.cdist(torch.tensor([[5.0, 5.0]]), codes).min() < 1e-6   # the outlier got its own code
    with pytest.raises(ValueError, match="k-means needs 1 <= k"):
        kmeans(x, 22)


# -------------------------------------------------------------------------------------- the bank

def test_bank_scores_unlike_features_higher_and_round_trips():
    model = CodeBankPVQAE(toy_config(), CHANNELS)
    model.fit(toy_levels(32), seed=0)
    assert [len(model.codebook(r)) for r in range(3)] == [32, 32, 32]
    model.eval()
    normal = model(toy_levels(8, seed=5), every_level=True)
    odd = model(toy_levels(8, seed=5, shift=3.0), every_level=True)
    for r in range(3):     # each level's map is a distance over its training median: typical normal ≈ 1
        assert 0.5 < normal.distances[r].median() < 2
        assert odd.distances[r].mean() > 2 * normal.distances[r].mean()
    again = CodeBankPVQAE(toy_config(), CHANNELS)
    again.load_state_dict(model.state_dict())       # the bank's sizes come from the file
    assert isinstance(build_model(toy_config()), CodeBankPVQAE)
    assert torch.equal(again.eval()(toy_levels(8, seed=5), every_level=True).distances[2], normal.distances[2])


def test_bank_computes_only_the_routed_levels_and_the_ablations():
    model = CodeBankPVQAE(toy_config(), CHANNELS)
    model.fit(toy_levels(16), seed=0)
    model.eval()
    x = toy_levels(4, seed=3)
    route = torch.zeros(4, 2, 2, dtype=torch.long)
    out = model(x, route=route)
    assert out.distances[0] is not None and out.distances[1] is None and out.distances[2] is None
    routed = model.error_map(out, x, "router")
    assert torch.allclose(routed, model.error_map(out, x, "coarse"))
    mean = model.error_map(out, x, "mean")
    parts = [model.error_map(out, x, r) for r in ("coarse", "middle", "fine")]
    assert torch.allclose(mean, sum(parts) / 3) and routed.shape == (4, 1, 8, 8)


def test_the_coarse_level_can_keep_more_codes():
    model = CodeBankPVQAE(toy_config(bank_size=8, coarse_bank_size=20), CHANNELS)
    model.fit(toy_levels(16), seed=0)
    assert [len(model.codebook(r)) for r in range(3)] == [20, 8, 8]
    with pytest.raises(ValueError, match="coarse_bank_size must be >= 0"):
        toy_config(coarse_bank_size=-1)


def test_membank_is_one_level_and_all_keeps_every_position():
    model = CodeBankPVQAE(toy_config(model="membank", vq_level=0, bank_memory="all"), CHANNELS)
    model.fit(toy_levels(10), seed=0)
    assert model.used == [0] and len(model.codebook(0)) == 10 * 2 * 2 and model.router is None
    out = model.eval()(toy_levels(2, seed=1))
    assert out.scores[:, 0].eq(1).all()
    with pytest.raises(ValueError, match="no codebook at that level"):
        model.error_map(out, toy_levels(2, seed=1), "fine")


def test_config_refuses_a_bank_without_features():
    with pytest.raises(ValueError, match="needs a feature backbone"):
        ModelConfig(feature_model="bank")
    with pytest.raises(ValueError, match="membank.*needs feature_model 'bank'"):
        ModelConfig(model="membank", backbone="efficientnet-lite0", image_size=64)


# ------------------------------------------------------------------------------------- the router

def test_router_loss_charges_fine_levels_and_rewards_a_margin():
    B, h = 2, 2
    entropy = torch.full((B, h, h), 0.5)
    normal = torch.ones(B, 3, h, h)
    coarse = torch.zeros(B, 3, h, h)
    coarse[:, 0] = 1
    fine = torch.zeros(B, 3, h, h)
    fine[:, 2] = 1
    lc, _, bc = router_loss(coarse, normal, entropy, 1.0, 32)
    lf, _, bf = router_loss(fine, normal, entropy, 1.0, 32)
    assert bf > 10 * bc and lf > lc                  # c^r: the finest level costs 16 x the coarsest
    anomalous = torch.ones(B, 3, h, h)
    anomalous[:, 2] = 5.0                            # the fine level separates the painted anomaly
    weight = torch.ones(B, h, h)
    _, term_c, _ = router_loss(coarse, normal, entropy, 0.0, 32, coarse, anomalous, weight, entropy)
    _, term_f, _ = router_loss(fine, normal, entropy, 0.0, 32, fine, anomalous, weight, entropy)
    assert term_f < term_c                           # the margin objective prefers the separating level


def test_router_learns_the_cheapest_distance_and_lambda_moves_it():
    """A tiny router really learns: when the fine level's distances are four times smaller, the
    distance objective with λ = 0 sends patches there; a large λ brings them back to the cheap
    coarse level (the budget), and the margin objective trains without error."""
    model = CodeBankPVQAE(toy_config(), CHANNELS)
    model.fit(toy_levels(32), seed=0)
    model.scale[2] *= 4
    held_out = toy_levels(32, seed=1)               # normal images the codebooks were not fitted on
    entropy = torch.full((32, 2, 2), 0.5)
    levels_of = {}
    for lam in (0.0, 20.0):
        torch.manual_seed(0)
        m = CodeBankPVQAE(toy_config(), CHANNELS)
        m.load_state_dict(model.state_dict())
        history = train_router(m, held_out, entropy, TrainConfig(epochs=30, lr=1e-2, lambda_max=lam,
                                                                  schedule="constant", router_objective="distance"),
                               batch_size=16)
        levels_of[lam] = m.eval()(held_out).scores.argmax(1).float().mean().item()
        assert np.isfinite(history["loss"]).all() and len(history["loss"]) == 30 * 2
    assert levels_of[0.0] > 1.8 and levels_of[20.0] < 0.2
    painted = (toy_levels(8, seed=9, shift=2.0), torch.ones(8, 2, 2), torch.full((8, 2, 2), 0.5))
    history = train_router(model, held_out, entropy, TrainConfig(epochs=2), painted=painted, batch_size=16)
    assert np.isfinite(history["term"]).all()


def test_coarse_distances_average_each_level_over_a_coarse_patch():
    model = CodeBankPVQAE(toy_config(), CHANNELS)
    model.fit(toy_levels(8), seed=0)
    out = model.eval()(toy_levels(2, seed=1), every_level=True)
    d = coarse_distances(out, (2, 2))
    assert d.shape == (2, 3, 2, 2)
    assert torch.allclose(d[:, 2, 0, 0], out.distances[2][:, :4, :4].mean((1, 2)))


# --------------------------------------------------------------------------- end to end (Lite0)

SIZE = 64


def lite0_profile(**model):
    p = with_backbone(get_profile("quick"), "efficientnet-lite0")
    return replace(p, model=replace(p.model, image_size=SIZE, feature_model="bank", bank_size=64, bank_samples=2000,
                                    **model),
                   train=replace(p.train, epochs=3, painted_images=8), prior=replace(p.prior, steps=20))


def test_code_bank_pvqae_detects_synthetic_defects_saves_and_scores_ablations(tmp_path):
    train = make_synthetic("train", SIZE, categories=["tile"], num_per_category=24, seed=0)
    test = make_synthetic("test", SIZE, categories=["tile"], num_per_category=40, seed=0)
    trained = fit(train, lite0_profile(), progress=False)
    assert set(trained.priors) == {"universal", "per-class"} and "router_seconds" in trained.history
    result = evaluate(trained, test, prior="none")
    assert result["image_auroc"] > 0.8 and result["pixel_auroc"] > 0.65     # well above chance (0.5)
    for route in ("coarse", "middle", "fine", "mean"):
        sc = score(trained, test, "none", replace(get_profile("quick").score, route=route))
        assert sc["s"].shape == (len(test), SIZE, SIZE) and np.isfinite(sc["s"]).all()
    mild = score(trained, test, "universal", replace(get_profile("quick").score, prior_power=0.5))
    assert np.isfinite(mild["s"]).all()
    save_trained(trained, tmp_path / "model.pt")
    again = load_trained(tmp_path / "model.pt")
    assert np.array_equal(score(again, test, "universal")["s"], score(trained, test, "universal")["s"])
    json.dumps(trained.history)          # the history is written as JSON by train
