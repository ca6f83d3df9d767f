#!/usr/bin/env bash
# Builds the edge-inspector container image from nothing on a Debian machine, without a registry:
#   1. apt-get install podman runc debootstrap (+ netavark, aardvark-dns, iptables: the network
#      stack that publishes ports), when missing
#   2. a Debian bookworm minbase root file system with debootstrap from this machine's own apt
#      mirror (cached as a tarball between runs), `podman import`ed as the base image
#   3. the edge-inspector wheel from this checkout (pip wheel --no-deps)
#   4. podman build -f Containerfile (runtime dependencies from PyPI), then prints size and time.
#
# Usage: tools/build-image.sh [--tag NAME] [--target runtime|console] [--no-cache] [--refresh-base]
#   --tag           image name (default localhost/edge-inspector:<version>, also tagged :latest)
#   --target        Containerfile stage (default runtime: the daemon; console adds the web console)
#   --no-cache      rebuild every layer (the base tarball is still reused)
#   --refresh-base  debootstrap the base again even if a cached tarball exists
# Environment:
#   EDGE_INSPECTOR_IMAGE_CACHE  where the base tarball is kept (default ~/.cache/edge-inspector/image)
#   DEBIAN_MIRROR               Debian mirror for debootstrap (default: the one in /etc/apt/sources*)
#   CONTAINERS_CONF             podman configuration (default: one with `default_ulimits = []`, see below)
#
# How podman runs on these machines (and on many CI runners that are containers themselves): the runc
# runtime, cgroupfs and no default ulimits; crun fails with "cgroups in hybrid mode not supported".
# The same flags work on an ordinary host. Last line: `image: NAME size: N MB build: N s`.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=""
TARGET="runtime"
NO_CACHE=()
REFRESH_BASE=0
while [ $# -gt 0 ]; do
  case "$1" in
    --tag) TAG="$2"; shift 2 ;;
    --target) TARGET="$2"; shift 2 ;;
    --no-cache) NO_CACHE=(--no-cache); shift ;;
    --refresh-base) REFRESH_BASE=1; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
    *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case "$TARGET" in runtime|console) ;; *) echo "build-image: --target must be runtime or console, not $TARGET" >&2; exit 2 ;; esac

START=$(date +%s)
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

# -- 1. tools ------------------------------------------------------------------------------------
missing=""
for p in podman runc debootstrap netavark aardvark-dns iptables; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  echo "build-image: installing$missing"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

CACHE="${EDGE_INSPECTOR_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/edge-inspector/image}"
mkdir -p "$CACHE"
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="$CACHE/containers.conf"
  printf '[containers]\ndefault_ulimits = []\n' > "$CONTAINERS_CONF"
fi
PODMAN=(podman --runtime runc --cgroup-manager=cgroupfs)

# -- 2. base image -------------------------------------------------------------------------------
# The mirror is the one this machine's apt uses (one-line or deb822 sources), never a built-in host.
read -r MIRROR SECURITY < <(python3 - <<'EOF'
import glob, re
main, security = "", ""
def note(uri, suites):
    global main, security
    for s in suites:
        if s == "bookworm" and not main:
            main = uri
        if s == "bookworm-security" and not security:
            security = uri
for f in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(f).read().splitlines()
    except OSError:
        continue
    for line in lines:
        line = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()
        if len(line) >= 3 and line[0] == "deb":
            note(line[1], [line[2]])
for f in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for stanza in re.split(r"\n\s*\n", open(f).read()):
        fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
        if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes") != "no":
            for uri in fields.get("URIs", "").split():
                note(uri, fields.get("Suites", "").split())
print(main or "-", security or "-")
EOF
)
MIRROR="${DEBIAN_MIRROR:-$MIRROR}"
if [ "$MIRROR" = "-" ]; then
  echo "build-image: no Debian bookworm mirror in /etc/apt/sources.list*; set DEBIAN_MIRROR=<url>" >&2
  exit 1
fi
BASE="localhost/edge-inspector-base:bookworm"
TARBALL="$CACHE/debian-bookworm-minbase.tar"
[ "$REFRESH_BASE" -eq 0 ] || rm -f "$TARBALL"
IMPORT=0
if [ ! -s "$TARBALL" ]; then
  IMPORT=1
  echo "build-image: debootstrap --variant=minbase bookworm from $MIRROR"
  ROOTFS=$(mktemp -d "$CACHE/rootfs.XXXXXX")
  trap '$SUDO rm -rf "$ROOTFS"' EXIT
  $SUDO debootstrap --variant=minbase bookworm "$ROOTFS" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || { tail -20 "$CACHE/debootstrap.log" >&2; echo "build-image: debootstrap failed (log: $CACHE/debootstrap.log)" >&2; exit 1; }
  # Slim like debian:bookworm-slim: no docs, man pages or translations now or in later apt installs,
  # no package lists or downloaded .debs in the image.
  $SUDO tee "$ROOTFS/etc/dpkg/dpkg.cfg.d/01-edge-inspector-slim" >/dev/null <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  $SUDO tee "$ROOTFS/etc/apt/apt.conf.d/01-edge-inspector-slim" >/dev/null <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  {
    echo "deb $MIRROR bookworm main"
    echo "deb $MIRROR bookworm-updates main"
    [ "$SECURITY" = "-" ] || echo "deb $SECURITY bookworm-security main"
  } | $SUDO tee "$ROOTFS/etc/apt/sources.list" >/dev/null
  $SUDO sh -c "cd '$ROOTFS' && find usr/share/doc -mindepth 1 -not -name copyright -not -type d -delete \
    && find usr/share/doc -mindepth 1 -type d -empty -delete \
    && rm -rf usr/share/man/* usr/share/info/* usr/share/lintian/* var/cache/apt/archives/*.deb \
       var/cache/apt/*.bin var/lib/apt/lists/* var/log/*.log var/log/apt/* \
    && find usr/share/locale -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +"
  $SUDO tar --numeric-owner -C "$ROOTFS" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  $SUDO rm -rf "$ROOTFS"
  trap - EXIT
fi
if [ "$IMPORT" -eq 1 ] || ! "${PODMAN[@]}" image exists "$BASE"; then
  echo "build-image: podman import $TARBALL -> $BASE"
  "${PODMAN[@]}" import --quiet "$TARBALL" "$BASE" >/dev/null
fi

# -- 3. wheel ------------------------------------------------------------------------------------
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
CONTEXT=build/image
rm -rf "$CONTEXT"
mkdir -p "$CONTEXT/wheels"
echo "build-image: pip wheel --no-deps ."
"$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$CONTEXT/wheels" . 2>/dev/null \
  || "$PY" -m pip wheel --quiet --no-deps -w "$CONTEXT/wheels" .
# The machine's pip settings travel into the build stage (not into the image): the CA bundle pip
# trusts (a TLS-inspecting proxy's CA lives there) and an http(s) index. Local file:// indexes and
# find-links do not exist inside the build, so they stay behind.
mkdir -p "$CONTEXT/pip"
CERT="${PIP_CERT:-$("$PY" -m pip config get global.cert 2>/dev/null || true)}"
CERT="${CERT:-${REQUESTS_CA_BUNDLE:-${SSL_CERT_FILE:-}}}"
if [ -n "$CERT" ] && [ -s "$CERT" ]; then cp "$CERT" "$CONTEXT/pip/ca.crt"; fi
INDEX="${PIP_INDEX_URL:-$("$PY" -m pip config get global.index-url 2>/dev/null || true)}"
case "$INDEX" in http://*|https://*) printf '[global]\nindex-url = %s\n' "$INDEX" > "$CONTEXT/pip/pip.conf" ;; esac
VERSION=$(ls "$CONTEXT"/wheels/edge_inspector-*.whl | sed -E 's/.*edge_inspector-([^-]+)-.*/\1/')

# -- 4. image ------------------------------------------------------------------------------------
if [ -z "$TAG" ]; then
  name="localhost/edge-inspector"
  [ "$TARGET" = "runtime" ] || name="$name-$TARGET"
  TAG="$name:$VERSION"
  EXTRA_TAG=(-t "$name:latest")
else
  EXTRA_TAG=()
fi
echo "build-image: podman build --target $TARGET -t $TAG"
BUILD_START=$(date +%s)
# --format docker: OCI image configs cannot carry HEALTHCHECK. --network host: apt and PyPI are
# reached from the build containers as from this machine.
"${PODMAN[@]}" build --format docker --network host --pull=never "${NO_CACHE[@]}" \
  --build-arg BASE="$BASE" --target "$TARGET" -f Containerfile -t "$TAG" "${EXTRA_TAG[@]}" "$CONTEXT"
# Untagged images of earlier builds (build stages with a venv, the previous :latest; ~500 MB each)
# are dropped; this build's stay as the cache the other target of the same checkout reuses.
"${PODMAN[@]}" image prune -f --filter label=io.edge-inspector.image=1 --filter "until=$BUILD_START" \
  >/dev/null 2>&1 || true
END=$(date +%s)
SIZE=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$TAG")
echo "image: $TAG size: $((SIZE / 1000000)) MB build: $((END - START)) s (podman build $((END - BUILD_START)) s)"
