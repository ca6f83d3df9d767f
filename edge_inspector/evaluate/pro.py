"""Per-Region Overlap (PRO): the MVTec AD localisation metric, vectorised.

Why a region metric: pixel AUROC is dominated by large defects (a big stain owns most defective
pixels), while PRO gives every connected ground-truth region the same weight, so a detector that
finds small scratches is rewarded as much as one that finds big blobs.

Definition (Bergmann et al., MVTec AD, IJCV 2021), which this module follows exactly:
  for a threshold t, the binary prediction is ``map >= t``;
  PRO(t) = mean over all connected ground-truth regions R (8-connectivity, across all images) of
           |prediction ∩ R| / |R|;
  FPR(t) = |prediction ∩ normal pixels| / |normal pixels|, over all images;
  AUPRO@0.3 = integral of PRO over FPR in [0, 0.3] (trapezoids, the curve interpolated linearly at
              0.3) divided by 0.3, so a perfect detector scores 1.0.

Vectorisation: rather than looping over thresholds, every pixel gets a weight
(1 / n_normal for a normal pixel's FPR contribution, 1 / (|R| * n_regions) for a pixel of region R's
PRO contribution). Sorting all pixels by score once, descending, and taking cumulative sums gives
(FPR, PRO) at every distinct threshold -- the same trick as the official MVTec evaluation code.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class ProCurve:
    """FPR/PRO (and pixel TPR) at every distinct threshold, from the highest threshold (0, 0) to (1, 1).

    ``tpr`` (defect pixels found / defect pixels) comes from the same sort, so pixel AUROC costs no
    second pass: on 5 M pixels one argsort replaces scikit-learn's roc_auc_score, which was the
    slowest step of an evaluation.
    """

    fpr: np.ndarray
    pro: np.ndarray
    tpr: np.ndarray
    thresholds: np.ndarray
    n_regions: int

    def pixel_auroc(self) -> float:
        """Area under the pixel ROC (trapezoids over distinct thresholds, as scikit-learn does)."""
        return float(np.trapezoid(self.tpr, self.fpr))


def label_regions(masks: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected regions in a stack of binary masks (N, h, w); ids are unique across images.

    Returns (labels, n_regions) with 0 = background and 1..n_regions the regions.
    """
    masks = np.asarray(masks)
    labels = np.zeros(masks.shape, dtype=np.int32)
    offset = 0
    for i in range(masks.shape[0]):
        if not masks[i].any():
            continue
        n, lab = cv2.connectedComponents(masks[i].astype(np.uint8), connectivity=8, ltype=cv2.CV_32S)
        nonzero = lab > 0
        labels[i][nonzero] = lab[nonzero] + offset
        offset += n - 1
    return labels, offset


def pro_curve(maps: np.ndarray, masks: np.ndarray) -> ProCurve:
    """The full PRO curve over all distinct thresholds.

    ``maps`` and ``masks`` are (N, h, w) arrays of the same shape: per-pixel anomaly scores and
    binary ground truth. Raises ValueError when there is no region or no normal pixel (the caller
    turns that into a metric of None with its reason).
    """
    maps = np.asarray(maps, dtype=np.float32)
    masks = np.asarray(masks) > 0
    if maps.shape != masks.shape:
        raise ValueError(f"anomaly maps {maps.shape} and masks {masks.shape} differ in shape")
    labels, n_regions = label_regions(masks)
    n_normal = int((~masks).sum())
    if n_regions == 0:
        raise ValueError("no ground-truth defect region in the masks")
    if n_normal == 0:
        raise ValueError("no normal (defect-free) pixel in the masks")
    flat_labels = labels.ravel()
    region_sizes = np.bincount(flat_labels, minlength=n_regions + 1).astype(np.float64)
    per_region = np.zeros(n_regions + 1, dtype=np.float64)
    per_region[1:] = 1.0 / (region_sizes[1:] * n_regions)  # every region carries 1 / n_regions in total
    flat_maps = maps.ravel()
    order = np.argsort(-flat_maps)  # ties need no stable order: only the last index of each run is kept
    scores = flat_maps[order]
    sorted_labels = flat_labels[order]
    normal = sorted_labels == 0
    fpr = np.cumsum(normal, dtype=np.float64) / n_normal
    tpr = np.cumsum(~normal, dtype=np.float64) / (normal.size - n_normal)
    pro = np.cumsum(per_region[sorted_labels])
    # Keep the last pixel of each run of equal scores: one point per distinct threshold.
    last = np.r_[np.nonzero(np.diff(scores))[0], scores.size - 1]
    fpr, tpr, pro = (np.r_[0.0, a[last]] for a in (fpr, tpr, pro))
    thresholds = np.r_[np.inf, scores[last]]
    # Cumulative sums of many small floats overshoot 1 by rounding; the curve ends at (1, 1).
    for a in (fpr, tpr, pro):
        np.clip(a, 0.0, 1.0, out=a)
    return ProCurve(fpr=fpr, pro=pro, tpr=tpr, thresholds=thresholds, n_regions=n_regions)


def area_under_curve(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under y(x) for x in [0, x_max], interpolating y linearly at x_max."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    inside = x <= x_max
    xs, ys = x[inside], y[inside]
    if xs.size == 0 or xs[-1] < x_max:
        # interpolate the point at x_max from the first point beyond it
        after = np.nonzero(~inside)[0]
        if after.size:
            j = after[0]
            x0, y0 = (xs[-1], ys[-1]) if xs.size else (0.0, 0.0)
            x1, y1 = x[j], y[j]
            y_at = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0) if x1 > x0 else y1
            xs, ys = np.r_[xs, x_max], np.r_[ys, y_at]
    return float(np.trapezoid(ys, xs)) if xs.size > 1 else 0.0


def aupro(maps: np.ndarray, masks: np.ndarray, fpr_limit: float = 0.3) -> float:
    """AUPRO up to ``fpr_limit`` normalised by it (1.0 = perfect); see the module docstring."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    return normalised_aupro(pro_curve(maps, masks), fpr_limit)


def normalised_aupro(curve: ProCurve, fpr_limit: float = 0.3) -> float:
    return area_under_curve(curve.fpr, curve.pro, fpr_limit) / fpr_limit
