"""pvqae_lib.viz: the pictures that are files rather than figures (figures are exercised by the chapters)."""
import numpy as np
import torch

from pvqae_lib.viz import heat_overlay, to_numpy_image


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
