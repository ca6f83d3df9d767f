#!/usr/bin/env bash
# The main job on a fresh machine, no external service needed:
#   set up -> generate a synthetic demo line -> fit + export + calibrate the default detector
#   -> replay the recorded frames through the daemon (ZeroMQ + JSONL sinks, metrics on loopback)
#   -> summarise the verdicts against the frames' true labels.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/bootstrap.sh
EI=".venv/bin/edge-inspector"
FRAMES="${DEMO_FRAMES:-200}"

if [ ! -f demo/dataset/train/good/.complete ] && [ ! -d demo/dataset/train ]; then
  $EI generate-demo demo --replay "$FRAMES" --seed 0 --n-train 250
fi
if [ ! -f models/demo-feature-memory.card.json ]; then
  $EI train demo/dataset --model feature_memory --name demo-feature-memory --out models
fi
rm -f demo/verdicts.jsonl
$EI replay demo/replay --config config.yaml
.venv/bin/python tools/demo_summary.py demo/verdicts.jsonl demo/replay/labels.csv
