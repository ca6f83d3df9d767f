"""Stand-in for ``edge-inspector train`` in the console's job tests: same arguments, seconds not minutes.

It loads the dataset with the real readers (so a bad dataset fails as it would), prints tqdm
progress, and writes a tiny real ONNX model + card (tests/fixtures/models.make_model) and a
calibration record, like train_model does. ``--option sleep=S`` slows it for cancel tests;
``--option fail=N`` exits with status N after printing an error (``--option`` is one of the extra
arguments the console lets through; the other whitelisted flags are accepted and ignored).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("dataset")
    p.add_argument("--model", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--name")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--input-size", type=int)
    p.add_argument("--epochs", type=int)
    p.add_argument("--option", "-o", action="append", default=[])
    args, _ = p.parse_known_args()
    options = dict(o.split("=", 1) for o in args.option)
    args.sleep, args.fail = float(options.get("sleep", 0.0)), int(options.get("fail", 0))
    from tqdm import tqdm

    from edge_inspector.data.readers import load_dataset
    from tests.fixtures.models import make_model

    dataset = load_dataset(args.dataset)
    print(f"training {args.model} on {dataset.name}: {len(dataset.split('train'))} images", flush=True)
    steps = 5
    for _ in tqdm(range(steps), desc="fit", file=sys.stderr, mininterval=0):
        time.sleep(max(args.sleep, 0.05) / steps)
    if args.fail:
        print("error: simulated training failure", file=sys.stderr, flush=True)
        return args.fail
    out = Path(args.out)
    name = args.name or f"{dataset.name}-{args.model}"
    card = make_model(out, kind="detector", name=name)
    data = json.loads(card.read_text())
    data["metrics"] = {"image_auroc_val": 0.9 + 0.01 * args.seed}
    card.write_text(json.dumps(data, indent=2))
    (out / "calibration").mkdir(exist_ok=True)
    (out / "calibration" / f"{name}.json").write_text(json.dumps({"model": name, "threshold": 0.3}))
    print(f"wrote {card}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
