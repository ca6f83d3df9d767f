#!/usr/bin/env bash
# Installs everything edge-inspector needs on a fresh Debian machine: system packages (Mosquitto
# for the MQTT tests) and a virtual environment in .venv with the package, [train], [console], [dev]
# [openvino] and [genicam] (so the test command tests the OpenVINO backend and the GenICam source too).
# Idempotent: a second run only checks.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
# podman..iptables: tools/build-image.sh and tests/deploy (the container image, built and run for real);
# catatonit: the pause binary of the pods that `podman kube play` starts (a Recommends, so not pulled in)
APT_PACKAGES="mosquitto mosquitto-clients chromium chromium-driver prometheus podman runc catatonit debootstrap netavark aardvark-dns iptables"
# GenICam cameras (source type genicam): Aravis, its GObject typelib, arv-fake-gv-camera-0.8 for the tests,
# and what PyGObject (the [genicam] extra, built from source: ~80 s) compiles against
APT_PACKAGES="$APT_PACKAGES libaravis-0.8-0 gir1.2-aravis-0.8 aravis-tools libgirepository1.0-dev libcairo2-dev pkg-config gcc python3-dev"
# postgresql: the console's plant database; tests/fixtures/postgres.py runs a throwaway cluster from its binaries
APT_PACKAGES="$APT_PACKAGES postgresql"
missing=""
for p in $APT_PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "bootstrap: installing system packages:$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# Debian starts a system-wide broker on 1883; the tests start their own on free ports.

# An independent OPC UA client (node-opcua, from npm) for tests/publishers/test_opcua.py; Debian's nodejs
# has no npm (NodeSource's has): install it only where missing. Without it that one test is skipped.
command -v node >/dev/null 2>&1 || $SUDO apt-get install -y -qq --no-install-recommends nodejs >/dev/null || true
command -v npm >/dev/null 2>&1 || $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null || true
if command -v npm >/dev/null 2>&1 && [ ! -d tests/publishers/opcua_node/node_modules/node-opcua-client ]; then
  echo "bootstrap: installing node-opcua-client for the OPC UA tests"
  (cd tests/publishers/opcua_node && npm ci --no-audit --no-fund --silent) || echo "bootstrap: npm ci failed; test skipped"
fi

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv"
  python3 -m venv .venv
fi
PIP=".venv/bin/pip"
stamp=.venv/.edge-inspector-installed
if [ ! -f "$stamp" ] || [ setup.cfg -nt "$stamp" ]; then
  $PIP install -q --upgrade pip wheel
  # The CPU build of torch (a local wheel on these machines) satisfies [train]'s torch>=2.2
  # without pulling a multi-GB CUDA build.
  $PIP install -q "torch==2.13.0" || $PIP install -q "torch>=2.2"
  $PIP install -q -e ".[train,console,dev,openvino,genicam,opcua]"
  # Third-party Sparkplug B decoder for the tests (Eclipse Tahu's sparkplug_b.proto, compiled).
  # --no-deps: it pins paho-mqtt<2 for its own client, which we do not use; pip would downgrade ours.
  $PIP install -q --no-deps "pysparkplug>=0.6.1"
  touch "$stamp"
fi
echo "bootstrap: ready (.venv/bin/edge-inspector)"
