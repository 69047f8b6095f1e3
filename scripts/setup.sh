#!/bin/sh
# Install everything the build and the tests need on a fresh Debian (bookworm) machine, as root.
# Idempotent: a second run only checks. Build: a C++ toolchain, libclang (rocksdb's bindgen) and
# cmake (CharLS, the JPEG-LS codec). Tests: OpenJPEG's opj_decompress reads what we encode.
# Benchmarks: wrk (HTTP load for benches/dicomweb.sh).
# Tests and benchmarks: the third-party DICOM peers (DCMTK, Orthanc, pynetdicom, ...) through
# ../shared/peers/setup.sh, which this repo expects beside its clone.
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
need=""
for c in clang g++ make pkg-config cmake opj_decompress wrk; do command -v $c >/dev/null 2>&1 || need=1; done
python3 -c 'import ensurepip' 2>/dev/null || need=1   # python3-venv, for the FHIR R4 validator's venv
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null)" ] || need=1
if [ -n "$need" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libclang-dev clang g++ make pkg-config cmake libopenjp2-tools wrk ca-certificates python3-venv >/dev/null
fi
# --- Web pages (ui/, docs/UI.md) -------------------------------------------------------
# The browser tests (pacs-node/tests/ui_browser.rs) drive Debian's chromium headless with
# playwright-core from ui/node_modules; a Japanese font makes the screenshots legible.
# Node and npm only when missing (a machine may carry its own build of Node). Playwright's
# own browsers are never downloaded (PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD): only package
# registries are reachable. `npm ci` runs again only when ui/package-lock.json changed.
# The built pages (ui/dist) are committed: building the node needs none of this.
ui_pkgs=""
command -v chromium >/dev/null 2>&1 || ui_pkgs="$ui_pkgs chromium"
command -v node >/dev/null 2>&1 || ui_pkgs="$ui_pkgs nodejs"
command -v npm >/dev/null 2>&1 || ui_pkgs="$ui_pkgs npm"
fc-list :lang=ja 2>/dev/null | grep -q . || ui_pkgs="$ui_pkgs fonts-noto-cjk"
if [ -n "$ui_pkgs" ]; then
  $SUDO apt-get update -qq
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $ui_pkgs >/dev/null
fi
ui_lock="$HERE/ui/package-lock.json"
ui_stamp="$HERE/ui/node_modules/.renkei-lock.sha256"
if [ "$(sha256sum < "$ui_lock")" != "$(cat "$ui_stamp" 2>/dev/null)" ]; then
  (cd "$HERE/ui" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  sha256sum < "$ui_lock" > "$ui_stamp"
fi
# ----------------------------------------------------------------------------------------
PEERS_SETUP="$HERE/../shared/peers/setup.sh"
if [ "${RENKEI_SKIP_PEERS:-}" != 1 ]; then
  if [ -f "$PEERS_SETUP" ]; then
    $SUDO sh "$PEERS_SETUP"
  else
    echo "note: $PEERS_SETUP not found; DICOM peers (DCMTK, pynetdicom) not installed, tests that need them will fail" >&2
  fi
fi
# --- FHIR R4 validator (pacs-node/tests/peers/fhir_validate.py) -------------------------
# The peers' venv carries the newest fhir.resources, which ships R5 and R4B models only. The
# node serves R4 (4.0.1), whose models the 6.1 line has (pydantic 1): a venv of its own, so
# the two pydantic majors never meet.
R4_VENV="${RENKEI_PEERS:-/tmp/renkei-peers}/fhir-r4"
if ! "$R4_VENV/bin/python" -c 'import fhir.resources as f; assert f.__fhir_version__ == "4.0.1"' 2>/dev/null; then
  python3 -m venv "$R4_VENV"
  "$R4_VENV/bin/pip" install -q "fhir.resources==6.1.0" "pydantic[email]>=1.10,<2"
fi
echo "build dependencies ready"
