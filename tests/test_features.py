"""PVQAE on a frozen feature pyramid: the model, its loss, training, resume and scoring."""
import numpy as np
import pytest
import torch

from pvqae_lib.config import ModelConfig, ScoreConfig, TrainConfig
from pvqae_lib.data import ImageSet
from pvqae_lib.engine.scoring import anomaly_maps
from pvqae_lib.engine.train import total_loss, train_autoencoder
from pvqae_lib.nn.backbones import backbone_channels
from pvqae_lib.nn.factory import build_model
from pvqae_lib.nn.model import FeatureAutoencoder
from pvqae_lib.nn.patchcore import PatchCore

CHANNELS = backbone_channels("efficientnet-lite0")     # the factory builds the models for this pyramid


def images_of(n, seed=0):
    """An ImageSet of ``n`` random normal images at 64 px, whose pyramid the tests make up."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 64, 64, generator=g)
    return ImageSet(x, torch.zeros(n, 1, 64, 64), torch.zeros(n, dtype=torch.long), torch.zeros(n, dtype=torch.long),
                    ["good"] * n, [f"x/{i}" for i in range(n)], ["tile"])


def pyramid(n, seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, c, size // s, size // s, generator=g) for c, s in zip(CHANNELS, (32, 16, 8))]


def cfg(model="pvqae", **kw):
    kw = {"image_size": 64, **kw}
    return ModelConfig(model=model, backbone="efficientnet-lite0", code_dim=8, codebook_size=16,
                       feature_hidden=16, router_hidden=8, **kw)


@pytest.mark.parametrize("model", ["pvqae", "vqvae", "ae"])
def test_feature_autoencoder_shapes(model):
    net = FeatureAutoencoder(cfg(model), CHANNELS)
    levels = pyramid(2)
    out = net(levels)
    assert out.recon.shape == net.target(levels).shape == (2, sum(CHANNELS), 8, 8)
    assert out.scores.shape == (2, 3, 2, 2)
    assert torch.allclose(out.scores.sum(1), torch.ones(2, 2, 2))
    assert len(out.indices) == (3 if model == "pvqae" else 1 if model == "vqvae" else 0)
    if model != "pvqae":
        assert out.logits is None and out.scores[:, 2].eq(1).all()


def test_route_override_changes_the_levels_used():
    net = FeatureAutoencoder(cfg(), CHANNELS).eval()
    levels = pyramid(1)
    coarse = net(levels, route=torch.zeros(1, 2, 2, dtype=torch.long))
    fine = net(levels, route=torch.full((1, 2, 2), 2, dtype=torch.long))
    assert coarse.scores[:, 0].eq(1).all() and fine.scores[:, 2].eq(1).all()
    assert not torch.allclose(coarse.recon, fine.recon)


def test_statistics_standardize_each_channel():
    net = FeatureAutoencoder(cfg(), CHANNELS)
    levels = [f * 5 + 3 for f in pyramid(40)]
    net.set_statistics(levels)
    z = net.standardized(levels)
    for f in z:
        assert torch.allclose(f.mean((0, 2, 3)), torch.zeros(f.shape[1]), atol=1e-4)
        assert torch.allclose(f.std((0, 2, 3), unbiased=False), torch.ones(f.shape[1]), atol=1e-3)


def test_total_loss_is_the_papers_sum():
    rec, vq, budget = torch.tensor(0.5), torch.tensor(0.25), torch.tensor(2.0)
    assert total_loss(rec, vq, budget, lam=0.5).item() == pytest.approx(1.75)
    assert total_loss(rec, vq, budget, 0.5, adv=torch.tensor(1.0), adv_weight=0.1).item() == pytest.approx(1.85)


def test_build_model_picks_the_feature_variants():
    assert isinstance(build_model(cfg("ae")), FeatureAutoencoder)
    assert isinstance(build_model(cfg("patchcore")), PatchCore)
    with pytest.raises(ValueError, match="model must be one of pvqae, vqvae with the pixel backbone"):
        ModelConfig(model="patchcore")
    with pytest.raises(ValueError, match="multiple of 32"):
        cfg(image_size=48)


def test_training_learns_and_resumes_bit_identically(tmp_path):
    g = torch.Generator().manual_seed(5)            # a normal "texture": a checkerboard of two feature
    base = []                                       # vectors per level, plus small variations
    for c, s in zip(CHANNELS, (32, 16, 8)):
        a, b = torch.randn(2, c, 1, 1, generator=g)
        board = ((torch.arange(64 // s)[:, None] + torch.arange(64 // s)[None]) % 2).float()
        base.append(a * board + b * (1 - board))
    levels = [bl + 0.1 * f for bl, f in zip(base, pyramid(32))]
    data = images_of(32)
    t = TrainConfig(epochs=16, batch_size=8, lr=3e-3, seed=0)
    model, hist = train_autoencoder(data, cfg(), t, out_dir=tmp_path / "a", progress=False, inputs=levels)
    assert np.mean(hist["rec"][-8:]) < 0.9 * np.mean(hist["rec"][:8])
    assert {"budget", "lambda", "share_0", "perplexity"} <= set(hist) and "g_loss" not in hist   # no discriminator
    # the same run stopped after 7 of 16 epochs, then resumed, ends with the same weights
    with pytest.raises(_Stop):
        train_autoencoder(data, cfg(), t, tmp_path / "b", progress=False, epoch_callback=_stop_after(7),
                          inputs=levels)
    resumed, _ = train_autoencoder(data, cfg(), t, tmp_path / "b", resume=True, progress=False, inputs=levels)
    for k, v in model.state_dict().items():
        assert torch.equal(v, resumed.state_dict()[k]), k


class _Stop(Exception):
    pass


def _stop_after(n):
    def callback(epoch, model):
        if epoch + 1 == n:
            raise _Stop
    return callback


def test_non_finite_loss_stops_with_the_step(monkeypatch):
    levels = pyramid(16)
    levels[0][3] = float("nan")
    from pvqae_lib.engine.train import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="at step 1 "):
        train_autoencoder(images_of(16), cfg(), TrainConfig(epochs=1, batch_size=16), progress=False, inputs=levels)


def test_feature_maps_and_scores():
    net = FeatureAutoencoder(cfg(), CHANNELS).eval()
    levels = pyramid(3)
    sc = anomaly_maps(net, levels, cfg=ScoreConfig(), size=(64, 64))
    assert sc.s.shape == sc.s_recon.shape == (3, 64, 64) and sc.routed.shape == (3, 2, 2)
    assert torch.equal(sc.image, sc.s.flatten(1).amax(1))
    halves = [anomaly_maps(net, [f[i:i + 2] for f in levels], size=(64, 64)).image for i in (0, 2)]
    assert torch.allclose(torch.cat(halves), sc.image, atol=1e-5)       # batch by batch, the same scores


def test_code_distance_is_zero_on_a_codebook_entry_and_grows_away_from_it():
    net = FeatureAutoencoder(cfg("vqvae"), CHANNELS).eval()
    levels = pyramid(2)
    out = net(levels)
    d = net.code_distance(out)
    assert d.shape == (2, 1, 8, 8) and (d >= 0).all()
    z, q = out.codes[0], net.quantizers[0].embed(out.indices[0])
    assert torch.allclose(d[:, 0], (z - q).pow(2).sum(1), atol=1e-5)
    sc = anomaly_maps(net, levels, cfg=ScoreConfig(feature_score="code"), size=(64, 64))
    assert sc.s.shape == (2, 64, 64)
    ae = FeatureAutoencoder(cfg("ae"), CHANNELS)
    with pytest.raises(ValueError, match="quantized model"):
        ae.code_distance(ae(levels))
    with pytest.raises(ValueError, match="feature_score"):
        ScoreConfig(feature_score="nearest")
