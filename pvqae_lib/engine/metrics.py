"""Evaluation metrics for unsupervised defect detection: image AUROC, pixel AUROC and AUPRO.

Chapter 1 (Defects without defect labels) introduces all three; chapter 7 uses them to score models.
Every function is a plain NumPy function. Torch tensors are accepted too and are moved to the CPU.
Scores follow the convention "higher = more anomalous", and labels and masks are 0 (normal) / 1 (defective).

- ``auroc`` / ``image_auroc``: area under the ROC curve, computed with the Mann-Whitney rank formula.
- ``pixel_auroc``: the same AUROC, with every pixel of every test image as one sample.
- ``pro_curve`` / ``aupro``: the per-region overlap curve of Bergmann et al. (MVTec AD, IJCV 2021), and
  its area up to a false-positive rate of 0.3. Each defect region counts equally, whatever its size.
- ``summarize``: all three numbers in one dict, with ``None`` for a metric the data cannot define.
"""
import numpy as np
import torch
from scipy import ndimage

__all__ = ["auroc", "image_auroc", "pixel_auroc", "pro_curve", "aupro", "summarize"]


def _to_numpy(x):
    """Return ``x`` as a NumPy array. A torch tensor is detached and copied to the CPU first."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def _as_binary(labels, name):
    """Check that ``labels`` holds only 0 and 1, and return it as a bool array."""
    if labels.dtype != bool and not np.all((labels == 0) | (labels == 1)):
        raise ValueError(f"{name} must contain only 0 (normal) and 1 (defective)")
    return labels.astype(bool)


def _as_maps(maps, masks):
    """Validate anomaly maps and ground-truth masks, and return them as (N, H, W) float and bool arrays."""
    maps, masks = _to_numpy(maps), _to_numpy(masks)
    if maps.shape != masks.shape:
        raise ValueError(f"maps and masks must have the same shape, got {maps.shape} and {masks.shape}")
    if maps.ndim == 4 and maps.shape[1] == 1:
        maps, masks = maps[:, 0], masks[:, 0]  # (N, 1, H, W) -> (N, H, W)
    if maps.ndim != 3:
        raise ValueError(f"maps must have shape (N, H, W) or (N, 1, H, W), got {maps.shape}")
    if not np.issubdtype(maps.dtype, np.floating):
        maps = maps.astype(np.float64)
    if np.isnan(maps).any():
        raise ValueError("maps contain NaN")
    return maps, _as_binary(masks, "masks")


def auroc(scores, labels):
    """Area under the ROC curve, computed with the Mann-Whitney U statistic.

    AUROC is the probability that a random defective sample scores higher than a random normal one,
    with ties counted as one half. With ranks r (1 = lowest score) and tied scores given their
    average rank, U = sum(r over positives) - P(P+1)/2 and AUROC = U / (P N). One sort and two
    binary searches make this O(n log n), with no threshold loop, so it handles millions of pixels.
    It equals ``sklearn.metrics.roc_auc_score``.

    Args:
        scores: any shape, higher = more anomalous.
        labels: same shape as ``scores``, 0 (normal) or 1 (defective).

    Raises:
        ValueError: if the shapes differ, scores contain NaN, labels are not 0/1, or only one class is present.

    >>> auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    0.75
    """
    scores, labels = _to_numpy(scores), _to_numpy(labels)
    if scores.shape != labels.shape:
        raise ValueError(f"scores and labels must have the same shape, got {scores.shape} and {labels.shape}")
    scores, positive = scores.ravel(), _as_binary(labels.ravel(), "labels")
    if np.isnan(scores).any():
        raise ValueError("scores contain NaN")
    num_pos = int(positive.sum())
    num_neg = positive.size - num_pos
    if num_pos == 0 or num_neg == 0:
        raise ValueError(f"AUROC needs both classes, but all {positive.size} labels are {int(num_pos > 0)}")
    # The average 1-based rank of a value v among all n scores is (#(scores < v) + #(scores <= v) + 1) / 2,
    # so one sort plus two binary searches give every positive's tie-averaged rank (no argsort needed).
    all_sorted = np.sort(scores)
    pos_sorted = np.sort(scores[positive])  # sorted queries keep the binary searches cache-friendly
    below = np.searchsorted(all_sorted, pos_sorted, side="left")  # (num_pos,) #(scores < v)
    below_or_tied = np.searchsorted(all_sorted, pos_sorted, side="right")  # (num_pos,) #(scores <= v)
    twice_rank_sum = int(below.sum()) + int(below_or_tied.sum()) + num_pos  # exact integer
    u_statistic = (twice_rank_sum - num_pos * (num_pos + 1)) / 2.0  # U = rank sum - P(P+1)/2
    return u_statistic / (num_pos * num_neg)


def image_auroc(scores, labels):
    """Image-level AUROC: one anomaly score per test image against its 0/1 label (see ``auroc``).

    This is the detection number of the PVQAE paper's tables: does the image contain a defect at all?

    >>> image_auroc([0.2, 0.9, 0.1, 0.7], [0, 1, 0, 1])
    1.0
    """
    return auroc(scores, labels)


def pixel_auroc(maps, masks):
    """Pixel-level AUROC: every pixel of every image is one sample, scored by its anomaly map value.

    This measures localization, but large defects dominate it because they hold most defective
    pixels. ``aupro`` corrects for that.

    Args:
        maps: (N, H, W) or (N, 1, H, W) anomaly maps, higher = more anomalous.
        masks: same shape, 1 on defective pixels and 0 elsewhere.

    >>> maps = np.array([[[0.1, 0.9], [0.2, 0.3]]])
    >>> masks = np.array([[[0, 1], [0, 0]]])
    >>> pixel_auroc(maps, masks)
    1.0
    """
    maps, masks = _as_maps(maps, masks)
    return auroc(maps, masks)


def pro_curve(maps, masks, num_thresholds=200, fpr_limit=1.0):
    """Per-region overlap (PRO) against false-positive rate, on one threshold grid shared by all regions.

    Bergmann et al. (MVTec AD, IJCV 2021). A pixel is predicted defective when its score exceeds a
    threshold t. Then PRO(t) is the mean over all ground-truth regions of |predicted ∩ region| / |region|,
    so a small scratch counts as much as a large stain, and FPR(t) = false positives / all normal
    (mask == 0) pixels, over all images together. The steps are:

    1. Regions: the connected components of each mask (``scipy.ndimage.label`` with 8-connectivity,
       as in the MVTec evaluation code, so diagonal neighbours belong to one region). A region never
       spans two images.
    2. Thresholds: ``num_thresholds`` quantiles of the normal pixels' scores, spaced so that the FPR
       steps evenly over [0, fpr_limit]. Each quantile t is used twice, as ``score > t`` and as
       ``score >= t``, so the curve also holds both ends of the jump where tied normal pixels switch
       on. Quantiles rather than a linspace over [min, max] keep the grid useful when a few outlier
       scores stretch the range. When the grid holds every distinct normal score, the curve is exact.
    3. Counting: each pixel is binned into the grid once (``searchsorted``), one ``bincount`` per region
       and one suffix sum give the counts at every threshold. There is no loop over thresholds.

    Args:
        maps: (N, H, W) or (N, 1, H, W) anomaly maps, higher = more anomalous.
        masks: same shape, 1 on defective pixels and 0 elsewhere.
        num_thresholds: number of quantile levels (about twice as many points end up on the curve).
        fpr_limit: the FPR range the grid covers. The curve also goes one point past it, so ``aupro`` can
            interpolate at the limit.

    Returns:
        (fpr, pro): 1-D arrays, both non-decreasing, from (0, 0) (threshold +inf) to (1, 1) (threshold -inf).

    >>> maps = np.array([[[0.1, 0.9, 0.3, 0.5]]])
    >>> masks = np.array([[[0, 1, 1, 0]]])
    >>> fpr, pro = pro_curve(maps, masks)
    >>> fpr.tolist(), pro.tolist()
    ([0.0, 0.0, 0.5, 0.5, 1.0], [0.0, 0.5, 0.5, 1.0, 1.0])
    """
    maps, masks = _as_maps(maps, masks)
    if num_thresholds < 2:
        raise ValueError(f"num_thresholds must be at least 2, got {num_thresholds}")
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    # 1. Connected components: 8-connected in each image, never linked across images.
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = True
    regions, num_regions = ndimage.label(masks, structure=structure)  # (N, H, W), 0 = background
    if num_regions == 0:
        raise ValueError("masks contain no defective pixels, so PRO is undefined")
    normal_scores = maps[~masks]  # (num_normal,)
    if normal_scores.size == 0:
        raise ValueError("masks contain no normal pixels, so the false-positive rate is undefined")
    # 2. Threshold grid: the normal score with m higher-or-equal ones, for m = floor(fpr * num_normal).
    descending = np.sort(normal_scores)[::-1]
    num_normal = descending.size
    levels = np.linspace(0.0, fpr_limit, num_thresholds)
    index = np.minimum(np.floor(levels * num_normal).astype(np.int64), num_normal - 1)
    index = np.r_[index, min(index[-1] + 1, num_normal - 1)]  # guarantees a point past fpr_limit
    grid = descending[index]
    inf = np.array([np.inf], dtype=maps.dtype)
    # "score > nextafter(t, -inf)" is "score >= t"; +inf and -inf add the end points (0, 0) and (1, 1).
    thresholds = np.unique(np.concatenate([grid, np.nextafter(grid, -inf), inf, -inf]))  # ascending
    num_points = thresholds.size
    # 3. bin[i] = number of thresholds below score i; pixel i is positive at threshold j iff j < bin[i].
    normal_bins = np.searchsorted(thresholds, normal_scores, side="left")
    normal_hist = np.bincount(normal_bins, minlength=num_points + 1)  # (num_points + 1,)
    false_pos = np.cumsum(normal_hist[::-1])[::-1][1:]  # (num_points,): sum of hist[j + 1:]
    region_id = regions[masks] - 1  # (num_defect,), 0-based region of each defective pixel
    defect_bins = np.searchsorted(thresholds, maps[masks], side="left")
    hist = np.bincount(region_id * (num_points + 1) + defect_bins, minlength=num_regions * (num_points + 1))
    hist = hist.reshape(num_regions, num_points + 1)  # (R, num_points + 1)
    true_pos = np.cumsum(hist[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (R, num_points)
    area = hist.sum(axis=1)  # (R,) pixels per region
    pro = (true_pos / area[:, None]).mean(axis=0)  # mean over regions, not over pixels
    fpr = false_pos / num_normal
    # Both fall as the threshold rises, so reversing the ascending grid sorts the curve by FPR.
    fpr, pro = fpr[::-1], pro[::-1]
    keep = np.r_[True, (np.diff(fpr) > 0) | (np.diff(pro) > 0)]  # drop repeated points
    return fpr[keep], pro[keep]


def aupro(maps, masks, fpr_limit=0.3, num_thresholds=200):
    """Area under the PRO curve for FPR in [0, fpr_limit], divided by fpr_limit (a perfect map gives 1.0).

    The MVTec AD protocol stops at FPR 0.3 because beyond it the maps flag so many normal pixels
    that the segmentation is useless. Steps: compute ``pro_curve`` with its grid spread over
    [0, fpr_limit], keep the points with FPR <= fpr_limit, add the point at exactly fpr_limit by linear
    interpolation, integrate with the trapezoid rule and divide by fpr_limit.

    Args:
        maps: (N, H, W) or (N, 1, H, W) anomaly maps, higher = more anomalous.
        masks: same shape, 1 on defective pixels and 0 elsewhere.
        fpr_limit: upper end of the integrated FPR range, in (0, 1].
        num_thresholds: size of the shared threshold grid (see ``pro_curve``).

    Worked example: normal scores 0.1 and 0.5, one region with scores 0.9 and 0.3. The curve is
    (0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1). Up to FPR 0.3 the PRO is 0.5, so the area is
    0.15 and the normalized AUPRO is 0.5.

    >>> maps = np.array([[[0.1, 0.9, 0.3, 0.5]]])
    >>> masks = np.array([[[0, 1, 1, 0]]])
    >>> round(aupro(maps, masks, fpr_limit=0.3), 6)
    0.5
    """
    fpr, pro = pro_curve(maps, masks, num_thresholds=num_thresholds, fpr_limit=fpr_limit)
    inside = np.searchsorted(fpr, fpr_limit, side="right")  # points [:inside] have fpr <= fpr_limit
    if inside < fpr.size:  # interpolate between the last point inside and the first point beyond
        x0, x1, y0, y1 = fpr[inside - 1], fpr[inside], pro[inside - 1], pro[inside]
        pro_at_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
        fpr, pro = np.r_[fpr[:inside], fpr_limit], np.r_[pro[:inside], pro_at_limit]
    return float(np.trapezoid(pro, fpr) / fpr_limit)


def summarize(image_scores, labels, maps=None, masks=None, fpr_limit=0.3):
    """Image AUROC, pixel AUROC and AUPRO in one dict, as written by ``python -m pvqae_lib evaluate``.

    A metric that the data cannot define is ``None`` instead of an error: image AUROC without both
    normal and defective images, pixel AUROC and PRO without both defective and normal pixels, and
    both pixel metrics when no maps are given. Wrong shapes still raise, since they are bugs.

    >>> maps = np.array([[[0.1, 0.2]], [[0.1, 0.9]]])
    >>> masks = np.array([[[0, 0]], [[0, 1]]])
    >>> summarize([0.2, 0.9], [0, 1], maps, masks)
    {'image_auroc': 1.0, 'pixel_auroc': 1.0, 'pro': 1.0}
    >>> summarize([0.2, 0.3], [0, 0])
    {'image_auroc': None, 'pixel_auroc': None, 'pro': None}
    """
    labels = _to_numpy(labels)
    both_images = bool(np.any(labels == 1) and np.any(labels == 0))
    result = {"image_auroc": image_auroc(image_scores, labels) if both_images else None,
              "pixel_auroc": None, "pro": None}
    if maps is not None and masks is not None:
        maps, masks = _as_maps(maps, masks)
        if masks.any() and not masks.all():
            result["pixel_auroc"] = pixel_auroc(maps, masks)
            result["pro"] = aupro(maps, masks, fpr_limit=fpr_limit)
    return result
