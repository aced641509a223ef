"""Tests for pvqae_lib.data.anomaly: Perlin noise and masks, blending, foreground restriction, batches."""

import numpy as np
import pytest
import torch

from pvqae_lib.data import make_synthetic, render
from pvqae_lib.data.anomaly import (
    AnomalyConfig,
    AnomalySynthesizer,
    anomaly_mask,
    blend,
    estimate_foreground,
    paint_anomalies,
    perlin_mask,
    perlin_noise,
    synthesize_anomaly,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def gen(seed):
    return torch.Generator().manual_seed(seed)


def test_perlin_noise_is_seeded_and_in_range():
    a = perlin_noise((48, 64), (4, 8), gen(3))
    b = perlin_noise((48, 64), (4, 8), gen(3))
    c = perlin_noise((48, 64), (4, 8), gen(4))
    assert a.shape == (48, 64)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.abs().max() <= 1.0 + 1e-6          # √2 · (2-D Perlin bound √2/2)
    assert a.abs().max() > 0.3                  # not degenerate
    assert abs(float(a.mean())) < 0.2           # gradient noise is centred


def test_perlin_noise_is_smooth_at_cell_scale():
    n = perlin_noise((64, 64), 2, gen(0))       # 32 px cells: neighbouring pixels barely differ
    assert (n[1:] - n[:-1]).abs().max() < 0.15
    assert (n[:, 1:] - n[:, :-1]).abs().max() < 0.15


def test_perlin_mask_soft_alpha_and_binary_mask():
    alpha, mask = perlin_mask(64, gen(1), threshold=0.5, scale_range=(2, 4))
    assert alpha.shape == mask.shape == (64, 64)
    assert alpha.min() >= 0 and alpha.max() <= 1
    assert ((alpha > 0) & (alpha < 1)).any()    # soft edges
    assert torch.equal(mask, (alpha > 0.5).float())
    assert set(mask.unique().tolist()) <= {0.0, 1.0}


def test_perlin_mask_is_seeded_and_dilation_grows_it():
    a1, m1 = perlin_mask(64, gen(7))
    a2, m2 = perlin_mask(64, gen(7))
    assert torch.equal(a1, a2) and torch.equal(m1, m2)
    for seed in range(20):                      # find a seed with a non-empty, non-full mask
        _, m = perlin_mask(64, gen(seed))
        if 0 < m.sum() < 64 * 64 / 2:
            break
    alpha_d, md = perlin_mask(64, gen(seed), dilation=2)
    assert torch.equal(md, (alpha_d > 0.5).float())
    assert (md >= m).all() and md.sum() > m.sum()


def test_blend_hand_value_and_untouched_outside():
    image, texture = torch.full((3, 2, 2), 0.2), torch.full((3, 2, 2), 1.0)
    weight = torch.tensor([[1.0, 0.0], [0.5, 0.0]])
    out = blend(image, texture, weight, beta=0.25)        # N + (1-β) M (A - N)
    assert torch.allclose(out[:, 0, 0], torch.full((3,), 0.2 + 0.75 * 0.8))
    assert torch.allclose(out[:, 1, 0], torch.full((3,), 0.2 + 0.75 * 0.5 * 0.8))
    assert torch.equal(out[:, :, 1], image[:, :, 1])


def test_synthesize_anomaly_changes_only_inside_the_mask():
    image = make_synthetic("train", 64, categories=["tile"], num_per_category=1).images[0]
    out, mask = synthesize_anomaly(image, gen(0), cfg=AnomalyConfig(beta_range=(0.0, 0.0)))
    assert out.shape == image.shape and mask.shape == (1, 64, 64)
    assert mask.sum() >= 1
    outside = mask[0] == 0
    assert torch.equal(out[:, outside], image[:, outside])
    assert (out[:, ~outside] - image[:, ~outside]).abs().max() > 0.05
    assert out.min() >= 0 and out.max() <= 1


def test_synthesize_anomaly_is_seeded():
    image = make_synthetic("train", 32, categories=["weave"], num_per_category=1).images[0]
    a = synthesize_anomaly(image, gen(5))
    b = synthesize_anomaly(image, gen(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


def test_foreground_restriction_keeps_the_mask_on_the_object():
    image, _, foreground = render("disc", "good", 64, np.random.default_rng(0))
    image = torch.from_numpy(image).permute(2, 0, 1)
    fg = torch.from_numpy(foreground)
    g = gen(2)
    for _ in range(10):
        out, mask = synthesize_anomaly(image, g, foreground=fg)
        assert mask.sum() >= 1
        assert (mask[0] <= (fg > 0.5).float()).all()
        assert torch.equal(out[:, mask[0] == 0], image[:, mask[0] == 0])


def test_estimate_foreground_finds_the_disc():
    image, _, foreground = render("disc", "good", 64, np.random.default_rng(1))
    est = estimate_foreground(torch.from_numpy(image).permute(2, 0, 1))
    truth = torch.from_numpy(foreground > 0.5)
    iou = (est.bool() & truth).sum() / (est.bool() | truth).sum()
    assert iou > 0.75
    assert not est[0].any() and not est[:, 0].any()       # the border is background


def test_anomaly_mask_rejects_empty_foreground():
    with pytest.raises(ValueError, match="foreground is empty"):
        anomaly_mask(16, gen(0), torch.zeros(16, 16))


def test_synthesizer_batches_are_seeded_and_mixed():
    data = make_synthetic("train", 32, num_per_category=4)
    x1, m1 = AnomalySynthesizer(data, seed=3).sample(16)
    x2, m2 = AnomalySynthesizer(data, seed=3).sample(16)
    assert x1.shape == (16, 3, 32, 32) and m1.shape == (16, 1, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(m1, m2)
    anomalous = m1.flatten(1).amax(1) > 0
    assert 0 < anomalous.sum() < 16                       # anomaly_prob = 0.5: some of each
    assert x1.min() >= 0 and x1.max() <= 1


def test_synthesizer_restricts_objects_to_their_foreground():
    data = make_synthetic("train", 32, categories=["disc"], num_per_category=3)
    fg = (torch.rand(3, 1, 32, 32, generator=gen(0)) < 0).float()
    fg[:, :, 8:24, 8:24] = 1                              # a given foreground: the central square
    synth = AnomalySynthesizer(data, AnomalyConfig(anomaly_prob=1.0), seed=0, foregrounds=fg)
    _, masks = synth.sample(12)
    assert (masks.flatten(1).sum(1) > 0).all()
    assert masks[:, :, :8].sum() == 0 and masks[:, :, 24:].sum() == 0   # flips keep the square in place
    assert masks[:, :, :, :8].sum() == 0 and masks[:, :, :, 24:].sum() == 0


def test_paint_anomalies_on_a_batch():
    data = make_synthetic("train", 32, num_per_category=4)            # tile, weave, disc
    is_object = [data.category_names[c] == "disc" for c in data.categories.tolist()]
    before = data.images.clone()
    x1, m1 = paint_anomalies(data.images, gen(5), is_object)
    x2, m2 = paint_anomalies(data.images, gen(5), is_object)
    assert torch.equal(x1, x2) and torch.equal(m1, m2)                  # seeded
    assert torch.equal(data.images, before)                             # the batch is not modified
    anomalous = m1.flatten(1).amax(1) > 0
    assert 0 < anomalous.sum() < len(data)                              # about half of them
    outside = (m1 == 0).expand_as(x1)
    assert torch.equal(x1[outside], before[outside])                     # nothing changes outside the masks
    assert torch.equal(x1[~anomalous], before[~anomalous])
    _, always = paint_anomalies(data.images, gen(1), is_object, AnomalyConfig(anomaly_prob=1.0))
    assert (always.flatten(1).amax(1) > 0).all()
    for i in np.flatnonzero(is_object):                                 # the disc's anomalies stay on the disc
        assert (always[i, 0] * (1 - estimate_foreground(data.images[i]))).sum() == 0
