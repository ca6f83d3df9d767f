"""Where the part is in a frame: a foreground mask from the frame's own border, or None for "everywhere".

Why: synthetic validation defects (data/synthetic_val.py) rank models on how well they see a defect *on
the part*. A part photographed against a plain background (a plate hanging in front of a grey wall, a small
bracket on a tray) leaves most of the frame empty, and a scratch drawn on the wall says nothing about the
part, least of all for a small part in a large frame, where the defect size decides between input sizes.

How, without labels: the frame's outer band is taken to be background. Pixels whose colour (CIE Lab) lies
far from the band's median, farther than the band's own spread allows, are the part. The rule only trusts
itself when the answer looks like a part on a background, and otherwise says None (use the whole frame):

* the band must be plain: a texture that fills the frame (a tile, a commutator, a web) has a band as varied
  as its interior, and every pixel is then "part";
* the part must cover between ``MIN_FRACTION`` and ``MAX_FRACTION`` of the frame, and the frame be at
  least ``MIN_SIDE`` pixels on its short side.

OpenCV and numpy only, no torch: it runs wherever ``auto`` runs.
"""

from __future__ import annotations

import cv2
import numpy as np

BAND = 0.03  # outer band taken as background, fraction of the short side (at least 2 px)
MIN_DISTANCE = 12.0  # Lab units: a part closer than this to the background colour is not told apart
SPREAD_FACTOR = 3.0  # a part pixel lies this many times the band's own 95th-percentile spread away
PLAIN_BAND = 0.5  # the band is plain when its spread is under this share of the whole frame's
MIN_FRACTION = 0.02  # smaller "parts" are specks, shadows or the hook
MAX_FRACTION = 0.95  # larger ones: the part fills the frame anyway
MIN_SIDE = 64  # px: a smaller frame has no band and interior to tell apart (and no room to place defects)


def foreground_mask(image: np.ndarray) -> np.ndarray | None:
    """Bool (H, W) mask of the part in a BGR (or grey) uint8 frame, or None when the frame has no plain
    background to tell the part from (use the whole frame then)."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    if min(h, w) < MIN_SIDE:
        return None
    lab = cv2.cvtColor(cv2.GaussianBlur(image, (0, 0), max(1.0, 0.005 * min(h, w))), cv2.COLOR_BGR2LAB)
    lab = lab.astype(np.float32)
    b = max(2, round(BAND * min(h, w)))
    band = np.ones((h, w), bool)
    band[b:h - b, b:w - b] = False
    centre = np.median(lab[band], axis=0)
    distance = np.linalg.norm(lab - centre, axis=2)
    band_spread = float(np.quantile(distance[band], 0.95))
    frame_spread = float(np.quantile(distance, 0.95))
    if frame_spread <= 0 or band_spread >= PLAIN_BAND * frame_spread:
        return None
    mask = (distance > max(MIN_DISTANCE, SPREAD_FACTOR * band_spread)).astype(np.uint8)
    k = max(3, (round(0.01 * min(h, w)) // 2) * 2 + 1)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
    mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, kernel)  # drop specks and thin wires
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, kernel)  # fill pinholes of the part
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= MIN_FRACTION * h * w]
    if not keep:
        return None
    out = np.isin(labels, keep)
    if not MIN_FRACTION <= float(out.mean()) <= MAX_FRACTION:
        return None
    return out
