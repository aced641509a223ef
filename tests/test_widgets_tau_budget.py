"""Tests for the widget callbacks of Chapters 3 and 4 (pvqae_lib.book.widgets.tau / .budget), without a browser."""
import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from pvqae_lib.book.widgets import budget as wbudget  # noqa: E402
from pvqae_lib.book.widgets import tau as wtau  # noqa: E402
from pvqae_lib.nn.budget import budget_loss, patch_entropy  # noqa: E402

LOGITS = np.array([1.0, 0.0, -1.0])


# ------------------------------------------------------------------------------------------ tau


def test_tau_explorer_shapes_and_simplex():
    r = wtau.tau_explorer(np.zeros((4, 5, 3)), tau=0.7, num_samples=50, seed=0)
    assert r["probs"].shape == r["frequencies"].shape == r["soft_mean"].shape == (4, 5, 3)
    assert r["samples"].shape == (50, 4, 5, 3)
    assert r["hard_allocation"].shape == (50, 4, 5)
    assert r["peak"].shape == (4, 5)
    np.testing.assert_allclose(r["samples"].sum(-1), 1.0, atol=1e-9)
    np.testing.assert_allclose(r["frequencies"].sum(-1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(r["hard_allocation"], r["samples"].argmax(-1))


def test_frequencies_approach_softmax_as_samples_grow():
    probs = torch.softmax(torch.tensor(LOGITS), 0).numpy()
    errors = [np.abs(wtau.tau_explorer(LOGITS, 0.5, n, seed=3)["frequencies"] - probs).max()
              for n in (20, 200_000)]
    assert errors[1] < 0.005                       # ~4 standard errors at 200k samples
    assert errors[1] < errors[0]


def test_hard_choice_does_not_depend_on_tau():
    """argmax((g + δ)/τ) = argmax(g + δ): with the same seed every τ gives the same hard samples."""
    a = wtau.tau_explorer(LOGITS, 0.05, 500, seed=7)["hard_allocation"]
    b = wtau.tau_explorer(LOGITS, 20.0, 500, seed=7)["hard_allocation"]
    np.testing.assert_array_equal(a, b)


def test_low_tau_is_near_one_hot_and_high_tau_near_uniform():
    cold = wtau.tau_explorer(LOGITS, 0.01, 4000, seed=1)
    hot = wtau.tau_explorer(LOGITS, 100.0, 4000, seed=1)
    assert cold["peak"] > 0.99                     # every soft sample is almost one-hot
    # ... so the mean soft score is the hard frequency vector
    np.testing.assert_allclose(cold["soft_mean"], cold["frequencies"], atol=0.01)
    assert hot["peak"] < 0.36                      # close to 1/3: the scores wash out
    np.testing.assert_allclose(hot["soft_mean"], 1 / 3, atol=0.01)


def test_tau_explorer_is_seeded_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    r1 = wtau.tau_explorer(LOGITS, 1.0, 100, seed=5)
    after = torch.rand(3)
    r2 = wtau.tau_explorer(LOGITS, 1.0, 100, seed=5)
    torch.testing.assert_close(after, expected)
    np.testing.assert_array_equal(r1["samples"], r2["samples"])


def test_tau_explorer_rejects_non_positive_tau():
    with pytest.raises(ValueError, match="tau"):
        wtau.tau_explorer(LOGITS, 0.0)


def test_plot_tau_draws_two_panels():
    fig = wtau.plot_tau(wtau.tau_explorer(LOGITS, 1.0, 100), tau=1.0)
    assert len(fig.axes) == 2
    plt.close(fig)
    with pytest.raises(ValueError):
        wtau.plot_tau(wtau.tau_explorer(np.zeros((2, 3)), 1.0, 10))


def test_simplex_corners():
    np.testing.assert_allclose(wtau.simplex_xy(np.eye(3)), [[0, 0], [1, 0], [0.5, np.sqrt(3) / 2]])


# --------------------------------------------------------------------------------------- budget


def _image(seed=0, size=32):
    g = torch.Generator().manual_seed(seed)
    x = torch.full((3, size, size), 0.5)
    x[:, : size // 2, : size // 2] = torch.rand(3, size // 2, size // 2, generator=g)   # one textured quarter
    return x


@pytest.mark.parametrize("seed", [0, 1])
def test_budget_total_equals_budget_loss(seed):
    patch = 8
    x = _image(seed)
    g = torch.Generator().manual_seed(seed)
    levels = torch.randint(0, 3, (4, 4), generator=g).numpy()
    r = wbudget.budget_explorer(x, levels, patch)
    scores = F.one_hot(torch.as_tensor(levels), 3).permute(2, 0, 1)[None].float()
    expected = budget_loss(scores, patch_entropy(x[None], patch), patch).item()
    assert r["total"] == pytest.approx(expected, rel=1e-6)
    assert r["cost_map"].sum() == pytest.approx(expected, rel=1e-5)


def test_budget_explorer_shapes_and_fields():
    r = wbudget.budget_explorer(_image(), np.full((4, 4), 2), patch=8)
    for key in ("entropy", "richness", "cost_map"):
        assert r[key].shape == (4, 4), key
    assert r["richness"].mean() == pytest.approx(1.0, rel=1e-5)
    np.testing.assert_allclose(r["level_share"], [0, 0, 1])
    assert r["codes"] == pytest.approx(1.0)
    # a textured patch is cheaper at the same level than a flat one
    assert r["cost_map"][0, 0] < r["cost_map"][3, 3]


def test_finer_levels_cost_more():
    x = _image()
    totals = [wbudget.budget_explorer(x, np.full((4, 4), r), 8)["total"] for r in range(3)]
    assert totals[0] < totals[1] < totals[2]
    assert totals[2] / totals[1] == pytest.approx(4.0)   # c = 2^(R-1) = 4


def test_level_presets():
    entropy = np.arange(16, dtype=float).reshape(4, 4) / 16
    presets = wbudget.level_presets(entropy)
    assert set(presets) == {"all coarse", "all middle", "all fine", "by entropy"}
    by_entropy = presets["by entropy"]
    assert by_entropy.shape == (4, 4)
    assert by_entropy[0, 0] == 0 and by_entropy[3, 3] == 2
    assert (np.diff(by_entropy.ravel()) >= 0).all()       # richer patch, never a coarser level


def test_budget_explorer_rejects_bad_level_maps():
    with pytest.raises(ValueError, match="one level per coarse patch"):
        wbudget.budget_explorer(_image(), np.zeros((2, 2), int), patch=8)
    with pytest.raises(ValueError, match="levels must lie"):
        wbudget.budget_explorer(_image(), np.full((4, 4), 3), patch=8)


def test_plot_budget_draws():
    x = _image()
    levels = np.full((4, 4), 1)
    fig = wbudget.plot_budget(x, levels, wbudget.budget_explorer(x, levels, 8), title="t")
    assert len(fig.axes) >= 4
    plt.close(fig)


def test_widgets_package_lazy_optional_modules():
    import pvqae_lib.book.widgets as widgets
    assert widgets.tau is wtau and widgets.budget is wbudget
    with pytest.raises(AttributeError):
        _ = widgets.no_such_module
