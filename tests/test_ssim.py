"""SSIM and LFQUIAD's Eq. 2 reconstruction loss (pvqae_lib.nn.ssim), and its use with --restore-anomalies."""
import numpy as np
import pytest
import torch

from pvqae_lib.nn.ssim import reconstruction_loss, ssim, ssim_map

C1, C2 = 0.01 ** 2, 0.03 ** 2


def reference_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM as skimage computes it (gaussian_weights=True, sigma=1.5,
    use_sample_covariance=False, data_range=1): scipy's Gaussian filter (truncate 3.5: an 11 px
    window), reflect-padded, the 5 px border cropped, the mean over channels and positions."""
    from scipy.ndimage import gaussian_filter
    out = []
    for a, b in zip(x, y):                       # channels
        def f(t):
            return gaussian_filter(t, 1.5, truncate=3.5, mode="reflect")
        mx, my = f(a), f(b)
        vx, vy, cxy = f(a * a) - mx ** 2, f(b * b) - my ** 2, f(a * b) - mx * my
        s = ((2 * mx * my + C1) * (2 * cxy + C2)) / ((mx ** 2 + my ** 2 + C1) * (vx + vy + C2))
        out.append(s[5:-5, 5:-5])
    return float(np.mean(out))


def test_identical_images_have_ssim_one():
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ssim(x, x), torch.ones(2))


def test_constant_images_give_the_luminance_term_alone():
    """Two flat images a and b: no variance, so SSIM = (2ab + C1) / (a² + b² + C1), by hand."""
    a, b = 0.2, 0.7
    x, y = (torch.full((1, 1, 16, 16), v, dtype=torch.float64) for v in (a, b))   # float32 sums leave ~1e-7 of variance
    expected = (2 * a * b + C1) / (a * a + b * b + C1)          # 0.53 / 0.5301 ... = 0.5284
    assert ssim(x, y).item() == pytest.approx(expected, rel=1e-5)


def test_matches_the_gaussian_window_reference_on_textured_images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 40, 40, generator=g)
    y = (0.7 * x + 0.3 * torch.rand(3, 40, 40, generator=g)).clamp(0, 1)
    got = ssim(x[None], y[None]).item()
    assert got == pytest.approx(reference_ssim(x.double().numpy(), y.double().numpy()), abs=1e-5)
    assert 0.2 < got < 0.95                      # a partial match, not a degenerate case


def test_ssim_map_is_valid_positions_only_and_refuses_small_images():
    assert ssim_map(torch.rand(1, 3, 20, 24), torch.rand(1, 3, 20, 24)).shape == (1, 3, 10, 14)
    with pytest.raises(ValueError, match="smaller than"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


def test_reconstruction_loss_is_eq2_and_differentiable():
    g = torch.Generator().manual_seed(2)
    target = torch.rand(2, 3, 32, 32, generator=g)
    recon = torch.rand(2, 3, 32, 32, generator=g).requires_grad_()
    mse = torch.nn.functional.mse_loss(recon, target)
    torch.testing.assert_close(reconstruction_loss(recon, target, 0.0), mse)
    loss = reconstruction_loss(recon, target, 0.25)
    torch.testing.assert_close(loss, 0.75 * mse + 0.25 * (1 - ssim(recon, target).mean()))
    loss.backward()
    assert torch.isfinite(recon.grad).all() and recon.grad.abs().sum() > 0


def test_restore_anomalies_trains_with_the_ssim_term(monkeypatch):
    """train_step's reconstruction term goes through Eq. 2 with cfg.ssim_weight when restoring
    anomalies, and stays the plain MSE otherwise."""
    from conftest import tiny_model_config, tiny_train_config, tiny_train_set

    from pvqae_lib.engine import train as train_module
    calls = []
    real = train_module.reconstruction_loss
    monkeypatch.setattr(train_module, "reconstruction_loss",
                        lambda recon, target, weight: calls.append(weight) or real(recon, target, weight))
    data = tiny_train_set(32, 2)
    train_module.train_autoencoder(data, tiny_model_config(), tiny_train_config(), progress=False)
    assert calls == []
    restoring = tiny_train_config(restore_anomalies=True, ssim_weight=0.3)
    train_module.train_autoencoder(data, tiny_model_config(), restoring, progress=False)
    assert calls == [0.3]                        # one step: 6 images, batches of 6
