"""Tests for pvqae_lib.book.widgets.allocation, the allocation viewer of chapter 7 (no browser needed)."""
from dataclasses import replace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import fit_tiny, tiny_model_config, tiny_profile  # noqa: E402

import pvqae_lib.book.widgets.allocation as allocation  # noqa: E402
from pvqae_lib.config import ScoreConfig  # noqa: E402
from pvqae_lib.data import make_synthetic  # noqa: E402
from pvqae_lib.engine import pipeline  # noqa: E402
from pvqae_lib.engine.scoring import gaussian_blur  # noqa: E402

SIZE = 32


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def trained():
    return fit_tiny(tiny_profile(model=tiny_model_config(image_size=SIZE)), seed=0)


@pytest.fixture(scope="module")
def test_set():
    return make_synthetic("test", SIZE, num_per_category=3)


def test_shapes_and_types(trained, test_set):
    view = allocation.allocation_view(trained, test_set, 1)
    grid = SIZE // trained.model_config.coarse_stride
    assert view["image"].shape == view["recon"].shape == (SIZE, SIZE, 3)
    for key in ("mask", "s_prior", "s_recon", "s"):
        assert view[key].shape == (SIZE, SIZE), key
    for key in ("routed", "predicted", "disagree"):
        assert view[key].shape == (grid, grid), key
    assert view["mask"].dtype == bool
    assert set(np.unique(view["routed"])) <= {0, 1, 2}
    assert set(np.unique(view["predicted"])) <= {0, 1, 2}
    np.testing.assert_array_equal(view["disagree"], view["routed"] != view["predicted"])
    assert view["index"] == 1 and view["prior"] == "universal"
    assert view["kind"] == test_set.kinds[1] and view["label"] == int(test_set.labels[1])
    assert view["category"] == test_set.category_names[int(test_set.categories[1])]
    np.testing.assert_allclose(view["image"], test_set.images[1].permute(1, 2, 0).numpy())


@pytest.mark.parametrize("prior", ["universal", "per-class"])
def test_s_is_the_smoothed_product(trained, test_set, prior):
    view = allocation.allocation_view(trained, test_set, 4, prior=prior)
    assert view["sigma"] == pytest.approx(ScoreConfig().smooth_sigma * SIZE / 64)
    product = torch.from_numpy(view["s_prior"] * view["s_recon"])[None]
    expected = gaussian_blur(product, view["sigma"])[0].numpy()
    np.testing.assert_allclose(view["s"], expected, rtol=1e-5, atol=1e-7)
    assert view["image_score"] == pytest.approx(float(view["s"].max()))
    # S_prior is a distribution over the coarse patches, up-sampled bilinearly: mean = 1 / (h·w)
    assert view["s_prior"].mean() == pytest.approx(1 / view["routed"].size, rel=1e-3)
    # S_recon is the squared error of the reconstruction the view returns
    np.testing.assert_allclose(view["s_recon"], ((view["recon"] - view["image"]) ** 2).sum(-1), rtol=1e-4,
                               atol=1e-6)


def test_matches_the_evaluation_scores(trained, test_set):
    """The widget shows exactly what pipeline.score (and so evaluate) computes for that image."""
    subset = test_set.subset([2, 5])
    ref = pipeline.score(trained, subset, "per-class")
    for row, index in enumerate([2, 5]):
        view = allocation.allocation_view(trained, test_set, index, prior="per-class")
        for key in ("s", "s_prior", "s_recon", "routed", "predicted"):
            np.testing.assert_allclose(view[key], ref[key][row], rtol=1e-4, atol=1e-6, err_msg=key)


def test_without_prior_s_is_the_smoothed_recon(trained, test_set):
    view = allocation.allocation_view(trained, test_set, 0, prior="none")
    np.testing.assert_array_equal(view["s_prior"], np.ones((SIZE, SIZE), dtype=np.float32))
    np.testing.assert_array_equal(view["routed"], view["predicted"])
    assert not view["disagree"].any()
    expected = gaussian_blur(torch.from_numpy(view["s_recon"])[None], view["sigma"])[0].numpy()
    np.testing.assert_allclose(view["s"], expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("index", [-1, 9, 10_000])
def test_index_out_of_range_raises_a_clear_error(trained, test_set, index):
    with pytest.raises(IndexError, match=rf"index {index} is out of range: the test set has 9 images"):
        allocation.allocation_view(trained, test_set, index)


@pytest.mark.parametrize("index", [1.0, "2", True, None])
def test_index_must_be_an_integer(trained, test_set, index):
    with pytest.raises(TypeError, match="index must be an integer"):
        allocation.allocation_view(trained, test_set, index)


def test_numpy_integer_index_is_accepted(trained, test_set):
    assert allocation.allocation_view(trained, test_set, np.int64(3))["index"] == 3


def test_bad_prior_names(trained, test_set):
    with pytest.raises(ValueError, match="prior must be one of"):
        allocation.allocation_view(trained, test_set, 0, prior="per_class")
    no_priors = replace(trained, priors={})
    with pytest.raises(ValueError, match="has no universal prior"):
        allocation.allocation_view(no_priors, test_set, 0)


def test_plots_draw_every_panel(trained, test_set):
    views = [allocation.allocation_view(trained, test_set, i) for i in (0, 3)]
    fig = allocation.plot_allocation_view(views[0])
    assert len(fig.axes) == 6 + 3              # six panels, a colorbar beside each of the three heat maps
    plt.close(fig)
    fig = allocation.plot_allocation_views(views)
    assert len(fig.axes) == 12 + 6
    plt.close(fig)


def test_budget_maps_one_row_per_image_and_counts_differences(test_set):
    routed = torch.zeros(2, 4, 4, dtype=torch.long)
    predicted = {"universal": routed.clone(), "per-class": routed.clone()}
    predicted["per-class"][1, 0, 0] = 2          # one patch differs in the second image
    fig = allocation.plot_budget_maps(test_set, [0, 3], routed, predicted)
    assert len(fig.axes) == 2 * 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[7] == "1 differ" and titles[6] == "0 differ"
    plt.close(fig)


def test_factors_figure_has_a_colorbar_per_heat_map(test_set):
    sub = test_set.subset([0, 3])
    maps = np.random.default_rng(0).random((2, SIZE, SIZE))
    fig = allocation.plot_factors(sub, maps, maps, maps)
    assert len(fig.axes) == 2 * 4 + 2 * 3          # panels, then one colorbar per heat map
    plt.close(fig)
