"""Figures for the reports, returned as base64 PNG strings ready for ``<img src="data:image/png;base64,...">``.

Embedding keeps report.html one self-contained file: it opens on an air-gapped line PC and can be
mailed to a supplier, with no CDN and no sibling folder of images to lose. Matplotlib runs with the
non-interactive Agg backend; heatmap overlays use OpenCV only (no figure per image: the gallery
stays fast).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import cv2
import numpy as np

from ..preprocess import decode_image, load_mask


def _figure(width: float = 4.2, height: float = 3.4):
    import matplotlib  # noqa: PLC0415 - heavy, only for reports

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, ax = plt.subplots(figsize=(width, height), dpi=90)
    return fig, ax


def _to_base64(fig) -> str:
    import matplotlib.pyplot as plt  # noqa: PLC0415

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_base64(image_bgr: np.ndarray) -> str:
    ok, buf = cv2.imencode(".png", image_bgr)
    if not ok:
        raise ValueError("could not encode image as PNG")
    return base64.b64encode(buf.tobytes()).decode("ascii")


def roc_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "ROC (image level)") -> str:
    """``curves`` = [(label, labels, scores)]; one line per curve with its AUROC in the legend."""
    from sklearn.metrics import roc_auc_score, roc_curve  # noqa: PLC0415

    fig, ax = _figure()
    for name, y, s in curves:
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        fpr, tpr, _ = roc_curve(y, s)
        ax.plot(fpr, tpr, label=f"{name} (AUROC {roc_auc_score(y, s):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="false-positive rate", ylabel="true-positive rate", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower right", fontsize=7)
    return _to_base64(fig)


def pr_plot(curves: Sequence[tuple[str, np.ndarray, np.ndarray]], title: str = "Precision-recall") -> str:
    from sklearn.metrics import average_precision_score, precision_recall_curve  # noqa: PLC0415

    fig, ax = _figure()
    for name, y, s in curves:
        if len(set(np.asarray(y).tolist())) < 2:
            continue
        p, r, _ = precision_recall_curve(y, s)
        ax.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    ax.set(xlabel="recall", ylabel="precision", title=title, xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left", fontsize=7)
    return _to_base64(fig)


def score_histogram(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5,
                    best: float | None = None) -> str:
    """Good vs defective score distributions with the calibrated (and best-F1) threshold lines."""
    fig, ax = _figure(5.0, 3.4)
    bins = np.linspace(0.0, 1.0, 41)
    labels = np.asarray(labels)
    ax.hist(scores[labels == 0], bins=bins, alpha=0.6, label=f"good (n={int((labels == 0).sum())})", color="tab:green")
    ax.hist(scores[labels == 1], bins=bins, alpha=0.6, label=f"defective (n={int(labels.sum())})", color="tab:red")
    ax.axvline(threshold, color="black", linestyle="--", label=f"calibrated threshold {threshold:g}")
    if best is not None:
        ax.axvline(best, color="tab:blue", linestyle=":", label=f"best-F1 threshold {best:.3f}")
    ax.set(xlabel="normalised score", ylabel="parts", title="Score distribution")
    ax.legend(fontsize=7)
    return _to_base64(fig)


def tradeoff_plot(labels: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> str:
    """False-reject and escape rates against the (normalised) threshold: where a user picks the point."""
    labels = np.asarray(labels)
    scores = np.asarray(scores, np.float64)
    grid = np.linspace(0.0, 1.0, 201)
    good, bad = scores[labels == 0], scores[labels == 1]
    fig, ax = _figure(5.0, 3.4)
    if good.size:
        ax.plot(grid, [(good >= t).mean() for t in grid], color="tab:orange", label="false-reject rate (good parts)")
    if bad.size:
        ax.plot(grid, [(bad < t).mean() for t in grid], color="tab:red", label="escape rate (defective parts)")
    ax.axvline(threshold, color="black", linestyle="--", label=f"calibrated threshold {threshold:g}")
    ax.set(xlabel="normalised threshold", ylabel="rate", title="False rejects vs escapes", ylim=(0, 1.02))
    ax.legend(fontsize=7)
    return _to_base64(fig)


def confusion_plot(matrix: Sequence[Sequence[int]], names: Sequence[str], title: str = "Confusion matrix") -> str:
    m = np.asarray(matrix, dtype=int)
    size = 2.6 + 0.35 * len(names)
    fig, ax = _figure(size, size * 0.85)
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(len(names)), names, fontsize=7)
    peak = m.max(initial=0)
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", fontsize=8, color="white" if v > peak / 2 else "black")
    ax.set(xlabel="predicted", ylabel="true", title=title)
    return _to_base64(fig)


def pro_plot(fpr: np.ndarray, pro: np.ndarray, limit: float) -> str:
    fig, ax = _figure()
    ax.plot(fpr, pro)
    ax.axvline(limit, color="grey", linestyle=":")
    ax.set(xlabel="false-positive rate (pixels)", ylabel="per-region overlap", title="PRO curve",
           xlim=(0, min(1.0, limit * 2)), ylim=(0, 1.02))
    return _to_base64(fig)


def bar_plot(names: Sequence[str], values: Sequence[float | None], title: str, xlabel: str) -> str:
    fig, ax = _figure(5.0, 0.8 + 0.35 * len(names))
    vals = [0.0 if v is None else float(v) for v in values]
    ax.barh(range(len(names)), vals, color="tab:blue")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    return _to_base64(fig)


def overlay(image_path: str, amap: np.ndarray | None, mask_path: str | None, display: int = 192) -> str:
    """The image with its anomaly heatmap blended in and the ground-truth outline in magenta.

    Magenta because the JET colour map never produces it, so the outline cannot be mistaken for heat.

    The map (normalised, 0.5 = threshold) is stretched to the display size; JET colours, 45 %.
    """
    image = decode_image(image_path)
    h, w = image.shape[:2]
    scale = display / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    view = cv2.resize(image, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    if amap is not None:
        heat = cv2.resize(np.clip(amap, 0, 1).astype(np.float32), size, interpolation=cv2.INTER_LINEAR)
        colour = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        view = cv2.addWeighted(view, 0.55, colour, 0.45, 0)
    if mask_path:
        mask = load_mask(mask_path, size[1], size[0])
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        cv2.drawContours(view, contours, -1, (255, 0, 255), 1)
    return png_base64(view)
