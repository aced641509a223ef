"""Tests for pvqae_lib.engine.scoring: S_prior, S_recon, their product, smoothing and anomaly_maps."""
import math

import numpy as np
import pytest
import torch
from conftest import tiny_model_config, tiny_prior_config, tiny_train_config, tiny_train_set

from pvqae_lib.config import ScoreConfig
from pvqae_lib.data import make_synthetic
from pvqae_lib.engine.pipeline import autoencode
from pvqae_lib.engine.scoring import (
    anomaly_maps,
    border_band,
    combine,
    gaussian_blur,
    mean_colour_error,
    peak_in_mask,
    peak_on_border,
    prior_score,
    score_dataset,
    standardize,
)
from pvqae_lib.engine.train import collect_budgets, train_autoencoder
from pvqae_lib.nn.model import recon_score
from pvqae_lib.nn.prior import fit_prior

pytestmark = pytest.mark.usefixtures("one_thread")


def test_prior_score_hand_computation():
    routed = torch.tensor([[[0, 1], [2, 0]]])                        # (1, 2, 2)
    probs = torch.tensor([[[0.5, 0.25, 0.25],
                           [0.1, 0.8, 0.1],
                           [0.7, 0.2, 0.1],
                           [0.9, 0.05, 0.05]]])                      # (1, 4, 3), row-major positions
    ce = [-math.log(0.5), -math.log(0.8), -math.log(0.1), -math.log(0.9)]
    expected = torch.tensor([c / sum(ce) for c in ce]).view(1, 2, 2)
    s = prior_score(routed, probs)
    torch.testing.assert_close(s, expected)
    assert s.sum().item() == pytest.approx(1.0)
    assert s[0, 1, 0] == s.max()                                     # the unexpected level stands out


def test_prior_score_sums_to_one_per_image():
    torch.manual_seed(0)
    routed = torch.randint(0, 3, (4, 3, 5))
    probs = torch.rand(4, 15, 3).softmax(-1)
    s = prior_score(routed, probs)
    assert s.shape == (4, 3, 5)
    torch.testing.assert_close(s.sum(dim=(1, 2)), torch.ones(4))


def test_recon_score():
    images = torch.zeros(1, 3, 2, 2)
    recon = torch.zeros(1, 3, 2, 2)
    recon[0, :, 0, 1] = torch.tensor([1.0, 2.0, 3.0])
    recon[0, 0, 1, 1] = -0.5
    expected = torch.tensor([[[0.0, 14.0], [0.0, 0.25]]])
    torch.testing.assert_close(recon_score(recon, images), expected)


def test_mean_colour_error_separates_a_colour_cast_from_texture_error():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 8, 8, generator=g)
    cast = torch.tensor([0.1, -0.2, 0.0]).view(1, 3, 1, 1)
    noise = torch.tensor([1.0, -1.0]).repeat(32).view(8, 8) * 0.1     # zero-mean in every channel
    recon = torch.stack([images[0] + cast[0], images[1] + noise])
    err = mean_colour_error(recon, images)
    mse = recon_score(recon, images).mean((1, 2)) / 3
    torch.testing.assert_close(err[0], torch.tensor((0.01 + 0.04 + 0.0) / 3))
    torch.testing.assert_close(err[0], mse[0])          # a pure colour cast: all of the error
    assert err[1] < 1e-12 < mse[1]                      # a zero-mean error: none of it
    assert (err <= mse + 1e-9).all()


def test_combine_is_the_product():
    a, b = torch.rand(2, 4, 4), torch.rand(2, 4, 4)
    torch.testing.assert_close(combine(a, b), a * b)


def test_gaussian_blur():
    const = torch.full((2, 16, 16), 3.0)
    torch.testing.assert_close(gaussian_blur(const, 2.0), const)
    maps = torch.rand(2, 16, 16)
    assert gaussian_blur(maps, 0) is maps
    delta = torch.zeros(1, 21, 21)
    delta[0, 10, 10] = 1.0
    out = gaussian_blur(delta, 1.5)
    assert out.shape == delta.shape
    assert out.sum().item() == pytest.approx(1.0, abs=1e-5)           # interior mass is kept
    assert out[0, 10, 10] == out.max() and out.max() < 0.2
    torch.testing.assert_close(out[0], out[0].t())                   # isotropic
    torch.testing.assert_close(out[0, 10, 8], out[0, 10, 12])


def test_standardize_removes_a_frame_that_every_normal_map_has():
    rng = np.random.default_rng(0)
    frame = np.zeros((8, 8))
    frame[0, :] = frame[-1, :] = frame[:, 0] = frame[:, -1] = 5.0            # high error on the border
    normal = frame + rng.normal(1.0, 0.1, (50, 8, 8))
    test = frame + rng.normal(1.0, 0.1, (2, 8, 8))
    test[1, 4, 4] += 1.0                                                      # a defect in the middle
    assert np.unravel_index(test[1].argmax(), (8, 8)) != (4, 4)              # raw: the frame wins
    z = standardize(test, normal)
    assert np.unravel_index(z[1].argmax(), (8, 8)) == (4, 4)                 # standardized: the defect wins
    assert z[1].max() > 5 and z[0].max() < 4
    mean, std = normal.mean(0), normal.std(0)
    np.testing.assert_allclose(z, (test - mean) / (std + 1e-3 * std.mean() + 1e-12))
    flat = standardize(np.ones((1, 4, 4)), np.ones((3, 4, 4)))               # no spread: finite, zero
    assert np.isfinite(flat).all() and np.abs(flat).max() == 0


def test_peak_on_border():
    maps = np.zeros((4, 10, 12))
    maps[0, 0, 5] = maps[1, 5, 11] = maps[2, 5, 6] = maps[3, 2, 2] = 1.0
    np.testing.assert_array_equal(peak_on_border(maps, 1), [True, True, False, False])
    np.testing.assert_array_equal(peak_on_border(maps, 3), [True, True, False, True])
    assert peak_on_border(torch.from_numpy(maps), 3).tolist() == [True, True, False, True]


def test_border_band_scales_with_the_image():
    assert border_band(64) == (4, 1 - (56 / 64) ** 2)
    assert border_band(256)[0] == 16 and border_band(256)[1] == border_band(64)[1]
    assert border_band(8)[0] == 1                      # never narrower than one pixel


def test_peak_in_mask():
    maps = np.zeros((3, 6, 6))
    maps[0, 1, 2] = maps[1, 4, 4] = maps[2, 0, 0] = 1.0
    masks = np.zeros((3, 6, 6), dtype=bool)
    masks[0, 1, 2] = masks[1, 0, 0] = masks[2, 0, 0] = True
    np.testing.assert_array_equal(peak_in_mask(maps, masks), [True, False, True])
    assert peak_in_mask(torch.from_numpy(maps), torch.from_numpy(masks)).tolist() == [True, False, True]


@pytest.fixture(scope="module")
def trained():
    """A PVQAE trained for a few steps and a prior fitted on its own budgets."""
    torch.manual_seed(0)
    data = tiny_train_set()
    model, _ = train_autoencoder(data, tiny_model_config(), tiny_train_config(), progress=False)
    levels = collect_budgets(model, data.images)
    prior, _ = fit_prior(levels, torch.zeros(len(levels), dtype=torch.long), 3, 1, tiny_prior_config(), seed=0)
    test = make_synthetic("test", 32, num_per_category=3)
    return model, prior, test


def test_anomaly_maps_shapes_and_image_score(trained):
    model, prior, test = trained
    x = test.images[:5]
    sc = anomaly_maps(model, x, prior)
    assert not model.training
    for name in ("s", "s_prior", "s_recon"):
        assert getattr(sc, name).shape == (5, 32, 32), name
    assert sc.routed.shape == sc.predicted.shape == (5, 4, 4)
    assert sc.recon.shape == x.shape
    torch.testing.assert_close(sc.image, sc.s.flatten(1).max(1).values)
    assert (sc.s >= 0).all()
    # S_prior is an up-sampled per-image distribution: mean over pixels = 1/N
    torch.testing.assert_close(sc.s_prior.mean(dim=(1, 2)), torch.full((5,), 1 / 16), atol=1e-3, rtol=0)


def test_anomaly_maps_without_prior(trained):
    model, prior, test = trained
    x = test.images[:3]
    for sc in (anomaly_maps(model, x), anomaly_maps(model, x, None, cfg=ScoreConfig())):
        assert torch.equal(sc.predicted, sc.routed)
        torch.testing.assert_close(sc.s_prior, torch.ones(3, 32, 32))
        torch.testing.assert_close(sc.recon, model(x).recon)
    sc = anomaly_maps(model, x, cfg=ScoreConfig(smooth_sigma=0))
    torch.testing.assert_close(sc.s, recon_score(model(x).recon, x))


def test_anomaly_maps_reconstructs_with_the_predicted_budget(trained, monkeypatch):
    model, prior, test = trained
    x = test.images[:4]
    routed = model.eval()(x).scores.argmax(1)
    wanted = (routed + 1) % 3                                       # a prediction unlike the routing
    probs = torch.nn.functional.one_hot(wanted.flatten(1), 3).float() * 0.8 + 0.2 / 3
    seen = {}

    def fake_predict(levels, classes, chunk=4096):
        seen["levels"], seen["classes"] = levels.clone(), classes.clone()
        return probs

    calls = []
    original = type(model).forward

    def spy(self, images, route=None):
        calls.append(None if route is None else route.clone())
        return original(self, images, route)

    monkeypatch.setattr(prior, "predict", fake_predict)
    monkeypatch.setattr(type(model), "forward", spy)
    sc = anomaly_maps(model, x, prior, classes=torch.tensor([0, 0, 0, 0]))
    assert torch.equal(seen["levels"], routed.flatten(1))
    assert torch.equal(sc.routed, routed)
    assert torch.equal(sc.predicted, wanted) and not torch.equal(sc.predicted, sc.routed)
    assert calls[0] is None and torch.equal(calls[-1], wanted)
    monkeypatch.undo()
    torch.testing.assert_close(sc.recon, model(x, route=wanted).recon)
    torch.testing.assert_close(sc.s_recon, recon_score(model(x, route=wanted).recon, x))
    # S_prior: every routed level has probability 0.2/3, so it is uniform 1/N
    torch.testing.assert_close(sc.s_prior, torch.full((4, 32, 32), 1 / 16))


def test_score_dataset_batches_agree(trained):
    model, prior, test = trained
    a = score_dataset(model, test, prior, batch_size=4)
    b = score_dataset(model, test, prior, batch_size=len(test))
    assert a["s"].shape == (len(test), 32, 32) and a["image"].shape == (len(test),)
    for k in a:
        assert a[k].shape == b[k].shape
    torch.testing.assert_close(torch.from_numpy(a["s"]), torch.from_numpy(b["s"]), atol=1e-5, rtol=1e-4)


def test_autoencode_batches_agree_with_one_pass(trained):
    model, _, test = trained
    recon, indices = autoencode(model, test.images, batch_size=4)
    out = model.eval()(test.images)
    assert recon.shape == test.images.shape and len(indices) == len(out.indices) == 3
    torch.testing.assert_close(recon, out.recon, atol=1e-5, rtol=1e-4)
    for mine, theirs in zip(indices, out.indices):
        assert torch.equal(mine, theirs)
