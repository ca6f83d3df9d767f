"""Summarise a demo replay: the daemon's verdicts (JSONL sink) against the frames' true labels.

Usage: python tools/demo_summary.py VERDICTS.jsonl LABELS.csv
"""

from __future__ import annotations

import csv
import json
import sys
from collections import Counter
from pathlib import Path


def main(verdicts_path: str, labels_path: str) -> int:
    labels = {row["file"]: int(row["label"]) for row in csv.DictReader(open(labels_path))}
    verdicts = [json.loads(line) for line in Path(verdicts_path).read_text().splitlines() if line.strip()]
    by_file = {Path(v.get("source") or "").name: v for v in verdicts}
    counts = Counter(v["verdict"] for v in verdicts)
    missing = sorted(set(labels) - set(by_file))
    good = [f for f, y in labels.items() if y == 0 and f in by_file]
    bad = [f for f, y in labels.items() if y == 1 and f in by_file]
    false_rejects = sum(by_file[f]["verdict"] != "ok" for f in good)
    escapes = sum(by_file[f]["verdict"] == "ok" for f in bad)
    latencies = sorted(v.get("latency_ms", {}).get("total", 0.0) for v in verdicts)
    p50 = latencies[len(latencies) // 2] if latencies else float("nan")
    print(f"frames: {len(labels)}  verdicts: {len(verdicts)}  missing: {len(missing)}  "
          f"ok: {counts['ok']}  defect: {counts['defect']}  error: {counts['error']}")
    print(f"false rejects: {false_rejects}/{len(good)} good parts  escapes: {escapes}/{len(bad)} defective parts  "
          f"p50 capture-to-decision: {p50:.1f} ms (flat-out replay: queueing included; use --rate for line latency)")
    return 1 if missing else 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
