"""Stand-in for ``edge-inspector evaluate MODEL DATASET --out DIR``: writes report.json, report.html, roc.png."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dataset")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    card = json.loads(Path(args.model).read_text())  # the {card} placeholder became a real path
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report = {"model": card["name"], "metrics": {"image": {"auroc": 0.875, "f1": 0.8}, "pixel": {"auroc": 0.7}}}
    (out / "report.json").write_text(json.dumps(report))
    (out / "report.html").write_text(f"<html><body><h1>Report for {card['name']}</h1></body></html>")
    roc = np.full((40, 40, 3), 255, np.uint8)
    cv2.line(roc, (0, 39), (39, 0), (255, 0, 0), 1)
    cv2.imwrite(str(out / "roc_image.png"), roc)
    print("PROGRESS 1.0", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
