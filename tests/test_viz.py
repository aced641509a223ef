"""pvqae_lib.book.viz: the pictures that are files rather than figures (figures are exercised by the chapters)."""
import numpy as np
import torch

from pvqae_lib.book.viz import heat_overlay, to_numpy_image


def test_to_numpy_image_is_channels_last_and_clipped():
    image = torch.full((3, 4, 5), 2.0)
    out = to_numpy_image(image)
    assert out.shape == (4, 5, 3) and out.max() == 1.0


def test_heat_overlay_blends_the_map_colours_over_the_image():
    image = torch.zeros(3, 4, 4)                       # black: the picture is the colours times alpha
    heat = np.zeros((4, 4))
    heat[0, 0] = 5.0                                   # above vmax: the colour scale's top (dark red)
    picture = heat_overlay(image, heat, vmax=1.0, alpha=0.5)
    assert picture.shape == (4, 4, 3) and picture.dtype == np.uint8
    red, cold = picture[0, 0], picture[3, 3]
    assert red[0] > red[2] and cold[2] > cold[0]       # hot is red, zero is blue
    assert picture.max() <= 128                        # alpha 0.5 of at most 255
    white = heat_overlay(torch.ones(3, 4, 4), heat, vmax=1.0, alpha=0.0)
    assert (white == 255).all()                        # alpha 0: the image alone


def test_level_grid_draws_the_codes_each_level_spends():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pvqae_lib.book.viz import draw_level_grid, level_handles

    for level, lines in [(0, 0), (1, 2), (2, 6)]:            # 2**r - 1 cuts each way
        fig, ax = plt.subplots()
        draw_level_grid(ax, np.full((1, 1), level), (0, 16, 16, 0))
        assert len(ax.lines) == lines and len(ax.patches) == 2   # fill + outline
        plt.close(fig)
    assert [h.get_label().split()[0] for h in level_handles()] == ["coarse", "middle", "fine"]


def test_heat_maps_carry_a_colorbar():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pvqae_lib.book.viz import heatmap_figure, show_heat, show_patch_map

    fig, (a, b) = plt.subplots(1, 2)
    im = show_heat(a, torch.zeros(3, 8, 8), np.ones((8, 8)), vmax=2.0, colorbar=True)
    assert im.get_clim() == (0.0, 2.0)
    show_patch_map(b, torch.zeros(3, 8, 8), np.ones((2, 2)), colorbar=True)
    assert len(fig.axes) == 4                                   # two panels, two colorbars
    fig = heatmap_figure(torch.zeros(2, 3, 8, 8), [None, None], {"x": np.random.rand(2, 8, 8),
                                                                 "y": np.random.rand(2, 8, 8)})
    assert len(fig.axes) == 2 * 3 + 2                           # one colorbar per map column
    plt.close("all")


def test_level_share_by_bins_patches_by_their_value():
    from pvqae_lib.book.viz import level_share_by

    values = np.arange(10.0)
    levels = np.array([0] * 5 + [1, 1, 2, 2, 2])                 # the richer half is routed finer
    table = level_share_by(values, levels, bins=2)
    assert list(table["patches"]) == [5, 5]
    assert list(table["finer than coarse"]) == [0.0, 1.0]
    assert np.isclose(table.loc[1, "fine"], 0.6) and np.isclose(table["mean"][0], 2.0)


def test_share_gap_interval_sees_a_clear_rise_and_no_rise():
    from pvqae_lib.book.viz import share_gap_interval

    rng = np.random.default_rng(1)
    values = rng.random((40, 5, 5))
    rising = (values > 0.6).astype(int)                          # richer patches routed finer
    gap, low, high = share_gap_interval(values, rising)
    assert gap == 1.0 and low > 0.5 and high <= 1.0
    flat = rng.integers(0, 2, (40, 5, 5))                        # routing that ignores the values
    gap, low, high = share_gap_interval(values, flat)
    assert low < 0 < high


def test_router_logits_of_a_pixel_pvqae_match_its_forward_pass():
    from pvqae_lib.book import router_logits
    from pvqae_lib.config import ModelConfig
    from pvqae_lib.engine.pipeline import Trained
    from pvqae_lib.nn.factory import build_model

    torch.manual_seed(0)
    cfg = ModelConfig(model="pvqae", image_size=32, width=8)
    model = build_model(cfg).eval()
    images = torch.rand(5, 3, 32, 32)
    logits = router_logits(Trained(model, cfg, ["tile"]), images, batch_size=2)
    with torch.no_grad():
        assert torch.allclose(logits, model(images).logits, atol=1e-5)
    assert logits.shape[:2] == (5, cfg.num_levels)


def test_show_image_outlines_the_mask_outside_the_defect():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pvqae_lib.book.viz import show_image

    mask = np.zeros((16, 16))
    mask[6:10, 6:10] = 1
    fig, (a, b) = plt.subplots(1, 2)
    show_image(a, torch.zeros(3, 16, 16), mask=mask)
    show_image(b, torch.zeros(3, 16, 16), mask=mask, color="red", margin=2)
    width = [np.ptp(ax.collections[0].get_paths()[0].vertices[:, 0]) for ax in (a, b)]
    assert width[1] > width[0] + 3                        # two pixels further out on each side
    plt.close(fig)


def test_plot_level_share_draws_the_finer_share_against_the_bin_means():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pvqae_lib.book.viz import level_share_by, plot_level_share

    table = level_share_by(np.arange(10.0), np.array([0] * 5 + [1] * 5), bins=2)
    fig, ax = plt.subplots()
    plot_level_share(ax, table)
    x, y = ax.lines[0].get_data()
    assert list(x) == [2.0, 7.0] and list(y) == [0.0, 1.0]
    plt.close(fig)
