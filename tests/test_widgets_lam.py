"""Tests for pvqae_lib.book.widgets.lam: the λ explorer's callback and plots (Chapter 5), without a browser."""
import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from conftest import fit_tiny, tiny_model_config, tiny_prior_config, tiny_profile, tiny_train_set  # noqa: E402

from pvqae_lib.book.widgets import lam as lam_widget  # noqa: E402
from pvqae_lib.config import TrainConfig  # noqa: E402
from pvqae_lib.data import make_synthetic  # noqa: E402
from pvqae_lib.nn.model import recon_score  # noqa: E402

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


def lam_profile(lambda_max: float):
    return tiny_profile(model=tiny_model_config(image_size=SIZE, width=4),
                        train=TrainConfig(epochs=1, batch_size=4, lambda_max=lambda_max),
                        prior=tiny_prior_config(steps=3))


def force_level(trained, level: int):
    """Make the router pick ``level`` everywhere (zero last weights, a large bias), so two models
    are known to allocate differently."""
    last = trained.model.router.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(-10.0)
        last.bias[level] = 10.0
    return trained


@pytest.fixture(scope="module")
def models():
    train = tiny_train_set(SIZE)                                           # 12 images
    trained = {lam: fit_tiny(lam_profile(lam), train) for lam in (0.5, 2.5)}
    return {0.5: force_level(trained[0.5], 2), 2.5: force_level(trained[2.5], 0)}   # fine vs coarse


@pytest.fixture(scope="module")
def image():
    return make_synthetic("test", SIZE, num_per_category=2).images[1]


def test_shapes(models, image):
    view = lam_widget.lambda_view(models, 0.5, image)
    grid = SIZE // models[0.5].model_config.coarse_stride
    assert view["levels"].shape == (grid, grid)
    assert view["recon"].shape == (3, SIZE, SIZE)
    assert view["error"].shape == (SIZE, SIZE)
    assert view["shares"].shape == (3,)
    assert view["lam"] == 0.5


def test_error_is_squared_error_of_returned_recon(models, image):
    view = lam_widget.lambda_view(models, 2.5, image)
    expected = ((view["recon"] - image.numpy()) ** 2).sum(0)
    np.testing.assert_allclose(view["error"], expected, rtol=1e-5, atol=1e-7)
    assert view["error"].max() > 0                                         # a tiny model is not perfect
    np.testing.assert_allclose(view["mse"], ((view["recon"] - image.numpy()) ** 2).mean(), rtol=1e-5)


def test_shares_sum_to_one_and_match_levels(models, image):
    for lam in models:
        view = lam_widget.lambda_view(models, lam, image)
        assert view["shares"].sum() == pytest.approx(1.0)
        counts = np.bincount(view["levels"].ravel(), minlength=3) / view["levels"].size
        np.testing.assert_allclose(view["shares"], counts)


def test_picking_lambda_returns_that_models_allocation(models, image):
    fine = lam_widget.lambda_view(models, 0.5, image)
    coarse = lam_widget.lambda_view(models, 2.5, image)
    assert (fine["levels"] == 2).all() and (coarse["levels"] == 0).all()
    np.testing.assert_allclose(fine["shares"], [0, 0, 1])
    np.testing.assert_allclose(coarse["shares"], [1, 0, 0])
    # the same as the model's own routing and reconstruction of that image
    model = models[2.5].model.eval()
    with torch.no_grad():
        out = model(image[None])
    np.testing.assert_array_equal(coarse["levels"], out.scores.argmax(1)[0].numpy())
    np.testing.assert_allclose(coarse["recon"], out.recon[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(coarse["error"], recon_score(out.recon, image[None])[0].numpy(), rtol=1e-5, atol=1e-7)


def test_lambda_is_matched_by_value(models, image):
    assert lam_widget.pick_model(models, 0.5 + 1e-12) is models[0.5]
    assert lam_widget.pick_model(models, 2.5) is models[2.5]
    with pytest.raises(KeyError, match="trained: 0.5, 2.5"):
        lam_widget.lambda_view(models, 1.25, image)


def test_rejects_a_batch(models, image):
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        lam_widget.lambda_view(models, 0.5, image[None])


def test_plots_draw(models, image):
    view = lam_widget.lambda_view(models, 0.5, image)
    fig = lam_widget.plot_lambda_view(view, image)
    assert len(fig.axes) == 5                                              # 4 panels and a colour bar
    plt.close(fig)
    fig = lam_widget.plot_lambda_views(models, image)
    assert len(fig.axes) == 3 * (len(models) + 1) + 1
    assert "λmax=0.5" in fig.axes[1].get_title() and "λmax=2.5" in fig.axes[2].get_title()
    plt.close(fig)


def test_seed_spread_and_beyond_spread():
    import pandas as pd
    rows = pd.DataFrame({"lambda_max": [0.5, 0.5, 0.5, 2.5, 2.5, 2.5],
                         "mean level": [1.9, 2.0, 1.8, 1.0, 1.1, 0.9],
                         "image AUROC": [0.55, 0.60, 0.50, 0.56, 0.58, 0.54]})
    spread = lam_widget.seed_spread(rows, "lambda_max", ("mean level", "image AUROC"))
    assert list(spread["seeds"]) == [3, 3]
    assert spread.loc[0.5, "mean level mean"] == pytest.approx(1.9)
    assert spread.loc[0.5, "mean level std"] == pytest.approx(0.1)
    assert lam_widget.beyond_spread(spread, 0.5, 2.5, "mean level")
    assert not lam_widget.beyond_spread(spread, 0.5, 2.5, "image AUROC")


def test_sweep_settings_and_profile():
    import pvqae_lib as pv
    runs = lam_widget.sweep_settings()
    assert len(runs) == 3 + 3 * 3 - 1                       # the linear λmax=1 seed-0 run is Table II's
    assert {"schedule": "linear", "lambda_max": 1.0} in runs
    assert {"schedule": "linear", "lambda_max": 2.5, "seed": 2} in runs
    profile = pv.get_profile("quick")
    sp = lam_widget.sweep_profile(profile)
    assert sp.train.epochs == profile.sweep_epochs and sp.num_train == profile.num_train // 3
    assert sp.train.batch_size == max(1, profile.train.batch_size // 2)
