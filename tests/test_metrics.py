"""Tests for pvqae_lib.engine.metrics: AUROC against sklearn, AUPRO against a brute-force reference
and hand computations."""
import doctest

import numpy as np
import pytest
import torch
from scipy import ndimage
from sklearn.metrics import roc_auc_score

from pvqae_lib.engine import metrics
from pvqae_lib.engine.metrics import aupro, auroc, image_auroc, pixel_auroc, pro_curve, summarize

# ---------------------------------------------------------------- references

def brute_force_aupro(maps, masks, fpr_limit):
    """Reference AUPRO: every distinct score as a threshold, per-region overlaps in plain Python.

    Deliberately independent of the fast version: regions are labelled image by image, the prediction
    is "score >= t", the curve is sorted as (fpr, pro) tuples, and clipping/trapezoid is a plain loop.
    """
    maps, masks = np.asarray(maps, dtype=float), np.asarray(masks).astype(bool)
    regions = []  # (image index, boolean region mask)
    for n in range(maps.shape[0]):
        labelled, count = ndimage.label(masks[n], structure=np.ones((3, 3)))  # 8-connectivity
        regions += [(n, labelled == r) for r in range(1, count + 1)]
    normal = ~masks
    points = [(0.0, 0.0)]  # threshold +inf: nothing predicted
    for t in sorted(set(maps.ravel().tolist()), reverse=True):
        predicted = maps >= t
        fpr = (predicted & normal).sum() / normal.sum()
        overlaps = [predicted[n][region].sum() / region.sum() for n, region in regions]
        points.append((float(fpr), sum(overlaps) / len(overlaps)))
    points.sort()
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:  # clip the last segment at fpr_limit
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def random_case(seed, num_images=3, size=12, ties=False):
    """Random rectangular defects (some images defect-free) and noisy maps that are higher on defects."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((num_images, size, size), dtype=np.int64)
    for i in range(num_images):
        for _ in range(rng.integers(0, 3)):
            y, x = rng.integers(0, size - 3, size=2)
            dy, dx = rng.integers(1, 5, size=2)
            masks[i, y:y + dy, x:x + dx] = 1
    masks[0, 0, 0] = 1  # at least one defective pixel
    maps = rng.normal(size=masks.shape) + 1.0 * masks
    if ties:
        maps = np.round(maps, 1)
    return maps, masks


# ---------------------------------------------------------------- AUROC

@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auroc_matches_sklearn_with_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=500)
    tied = rng.integers(0, 6, size=500) + labels  # few distinct values: heavy ties, both classes
    continuous = rng.normal(size=500) + 0.5 * labels
    for scores in (tied, continuous, tied.astype(np.float32)):
        assert auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_perfect_inverted_constant():
    labels = np.array([0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.8, 0.9])
    assert image_auroc(scores, labels) == 1.0
    assert image_auroc(-scores, labels) == 0.0
    assert image_auroc(np.full(5, 0.7), labels) == 0.5  # all tied: every pair counts one half
    assert image_auroc(torch.tensor(scores), torch.tensor(labels)) == 1.0


def test_auroc_errors():
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.5, 0.9], [1, 1, 1])
    with pytest.raises(ValueError, match="both classes"):
        auroc([0.1, 0.5, 0.9], [0, 0, 0])
    with pytest.raises(ValueError, match="same shape"):
        auroc([0.1, 0.5, 0.9], [0, 1])
    with pytest.raises(ValueError, match="only 0"):
        auroc([0.1, 0.5, 0.9], [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        auroc([0.1, np.nan, 0.9], [0, 1, 1])


def test_pixel_auroc_matches_sklearn():
    rng = np.random.default_rng(3)
    masks = (rng.random((6, 1, 16, 16)) < 0.2).astype(np.float32)  # (N, 1, H, W), float 0/1
    maps = np.round(rng.normal(size=masks.shape) + masks, 1).astype(np.float32)  # with ties
    expected = roc_auc_score(masks.ravel(), maps.ravel())
    assert pixel_auroc(maps, masks) == pytest.approx(expected, abs=1e-12)
    assert pixel_auroc(maps[:, 0], masks[:, 0]) == pytest.approx(expected, abs=1e-12)  # (N, H, W)
    assert pixel_auroc(torch.from_numpy(maps), torch.from_numpy(masks)) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(maps[:, 0], masks)
    with pytest.raises(ValueError, match="both classes"):
        pixel_auroc(maps, np.zeros_like(masks))


# ---------------------------------------------------------------- PRO / AUPRO

def test_known_answer_one_image_1x4():
    # Scores [0.1, 0.9, 0.3, 0.5], mask [0, 1, 1, 0]: normal scores {0.1, 0.5}, one region {0.9, 0.3}.
    # Lowering the threshold: +inf -> (FPR 0, PRO 0); 0.9 -> (0, 1/2); 0.5 -> (1/2, 1/2);
    # 0.3 -> (1/2, 1); 0.1 -> (1, 1).
    # AUPRO at 0.3: PRO is 1/2 on [0, 0.3], area 0.15, divided by 0.3 -> 0.5.
    # AUPRO at 1.0: 0.5 * 0.5 + 0.5 * 1 = 0.75, which equals the pixel AUROC (3 of 4 pairs ordered),
    # as it must with a single region.
    maps = np.array([[[0.1, 0.9, 0.3, 0.5]]])
    masks = np.array([[[0, 1, 1, 0]]])
    fpr, pro = pro_curve(maps, masks)
    assert fpr.tolist() == [0.0, 0.0, 0.5, 0.5, 1.0]
    assert pro.tolist() == [0.0, 0.5, 0.5, 1.0, 1.0]
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.5, abs=1e-12)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.75, abs=1e-12)
    assert pixel_auroc(maps, masks) == pytest.approx(0.75, abs=1e-12)


def test_stripe_masks():
    # 8 x 8 image scored by column index (8 pixels tie in each column); the defect is columns 3-4.
    # Lowering the threshold switches on normal columns 7, 6, 5 first (FPR 1/6, 2/6, 3/6, PRO 0), so
    # PRO stays 0 up to FPR 0.3 -> AUPRO(0.3) = 0. Over the whole range the curve rises to 1 at FPR 1/2,
    # so AUPRO(1.0) = 1/2.
    maps = np.tile(np.arange(8.0), (1, 8, 1))  # (1, 8, 8)
    masks = np.zeros((1, 8, 8), dtype=int)
    masks[:, :, 3:5] = 1
    assert aupro(maps, masks, fpr_limit=0.3) == pytest.approx(0.0, abs=1e-12)
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.5, abs=1e-12)
    assert brute_force_aupro(maps, masks, 1.0) == pytest.approx(0.5, abs=1e-12)
    # Stripe on the right edge: the highest columns are the defect -> perfect; flipped -> zero.
    masks_right = np.zeros_like(masks)
    masks_right[:, :, 6:] = 1
    assert aupro(maps, masks_right) == pytest.approx(1.0, abs=1e-12)
    assert aupro(-maps, masks_right) == pytest.approx(0.0, abs=1e-12)
    assert brute_force_aupro(maps, masks_right, 0.3) == pytest.approx(1.0, abs=1e-12)


def test_mean_is_over_regions_not_pixels():
    # A 9-pixel region fully detected and a 1-pixel region missed (scored below every normal pixel).
    # Per region: (1 + 0) / 2 = 0.5 at every FPR below 1. Per pixel it would be 9 / 10.
    masks = np.zeros((1, 8, 8), dtype=int)
    masks[0, 0:3, 0:3] = 1
    masks[0, 6, 6] = 1
    maps = np.where(masks == 1, 2.0, 0.5) + np.linspace(0, 0.1, 64).reshape(1, 8, 8)
    maps[0, 6, 6] = -1.0
    assert aupro(maps, masks) == pytest.approx(0.5, abs=1e-12)
    assert brute_force_aupro(maps, masks, 0.3) == pytest.approx(0.5, abs=1e-12)


def test_eight_connectivity_and_no_linking_across_images():
    # Pixels (0,0) and (1,1) touch diagonally, (1,1) and (1,2) share an edge: one 3-pixel region with
    # 8-connectivity. Only (0,0) is detected: PRO = 1/3 (4-connectivity would give (1 + 0) / 2).
    masks = np.zeros((1, 5, 5), dtype=int)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[0, 1, 2] = 1
    maps = np.zeros((1, 5, 5))
    maps[0, 0, 0] = 1.0
    maps[0, 1, 1] = maps[0, 1, 2] = -1.0
    assert aupro(maps, masks) == pytest.approx(1 / 3, abs=1e-12)
    # Same positions in two images are two regions: image 0 detected, image 1 (2 pixels) missed.
    masks2 = np.zeros((2, 4, 4), dtype=int)
    masks2[0, 0, 0] = masks2[1, 0, 0] = masks2[1, 0, 1] = 1
    maps2 = np.zeros((2, 4, 4))
    maps2[0, 0, 0] = 1.0
    maps2[1, 0, :2] = -1.0
    assert aupro(maps2, masks2) == pytest.approx(0.5, abs=1e-12)  # merged across images: 1/3


def test_perfect_and_inverse_maps():
    maps, masks = random_case(seed=4)
    perfect = masks + 0.01 * np.random.default_rng(0).random(masks.shape)
    assert aupro(perfect, masks) == pytest.approx(1.0, abs=1e-12)
    assert aupro(-perfect, masks) == pytest.approx(0.0, abs=1e-12)
    # (N, 1, H, W) and torch tensors give the same value as (N, H, W) NumPy.
    value = aupro(maps, masks)
    assert aupro(torch.from_numpy(maps[:, None]), torch.from_numpy(masks[:, None])) == pytest.approx(value)


@pytest.mark.parametrize("seed, ties", [(0, False), (1, False), (2, True), (3, True)])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_aupro_matches_brute_force(seed, ties, fpr_limit):
    maps, masks = random_case(seed, ties=ties)
    reference = brute_force_aupro(maps, masks, fpr_limit)
    assert 0.05 < reference < 0.999  # a non-trivial case
    # The default grid is close; a grid with more levels than normal pixels is exact.
    assert aupro(maps, masks, fpr_limit=fpr_limit) == pytest.approx(reference, abs=1e-2)
    assert aupro(maps, masks, fpr_limit=fpr_limit, num_thresholds=5000) == pytest.approx(reference, abs=1e-9)


def test_pro_curve_shape_and_errors():
    maps, masks = random_case(seed=5)
    fpr, pro = pro_curve(maps, masks, num_thresholds=50)
    assert fpr.shape == pro.shape and 50 <= fpr.size <= 2 * 51 + 2
    assert (fpr[0], pro[0], fpr[-1], pro[-1]) == (0.0, 0.0, 1.0, 1.0)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(pro) >= 0)
    with pytest.raises(ValueError, match="no defective pixels"):
        aupro(maps, np.zeros_like(masks))
    with pytest.raises(ValueError, match="no normal pixels"):
        aupro(maps, np.ones_like(masks))
    with pytest.raises(ValueError, match="fpr_limit"):
        aupro(maps, masks, fpr_limit=0.0)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(maps[0], masks[0])


# ---------------------------------------------------------------- summary and doctests

def test_summarize():
    maps, masks = random_case(seed=6)
    scores = maps.reshape(len(maps), -1).max(axis=1)
    labels = np.array([1, 0, 1])
    result = summarize(scores, labels, maps, masks)
    assert result == {"image_auroc": image_auroc(scores, labels), "pixel_auroc": pixel_auroc(maps, masks),
                      "pro": aupro(maps, masks)}
    assert summarize(scores, [0, 0, 0], maps, np.zeros_like(masks)) == {
        "image_auroc": None, "pixel_auroc": None, "pro": None}
    assert summarize(scores, labels)["pixel_auroc"] is None
    assert summarize(scores, labels)["image_auroc"] == result["image_auroc"]


def test_doctests():
    failures, attempted = doctest.testmod(metrics)
    assert attempted >= 10 and failures == 0
