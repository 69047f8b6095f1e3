#!/bin/sh
# Install everything the build and the tests need on a fresh Debian (bookworm) machine, as root.
# Idempotent: a second run only checks. Build: a C++ toolchain, libclang (rocksdb's bindgen) and
# cmake (CharLS, the JPEG-LS codec). Tests: OpenJPEG's opj_decompress reads what we encode.
# Tests and benchmarks: the third-party DICOM peers (DCMTK, Orthanc, pynetdicom, ...) through
# ../shared/peers/setup.sh, which this repo expects beside its clone.
set -e
HERE=$(cd "$(dirname "$0")/.." && pwd)
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
need=""
for c in clang g++ make pkg-config cmake opj_decompress; do command -v $c >/dev/null 2>&1 || need=1; done
[ -n "$(ls /usr/lib/llvm-*/lib/libclang*.so* 2>/dev/null)" ] || need=1
if [ -n "$need" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    libclang-dev clang g++ make pkg-config cmake libopenjp2-tools ca-certificates >/dev/null
fi
PEERS_SETUP="$HERE/../shared/peers/setup.sh"
if [ "${RENKEI_SKIP_PEERS:-}" != 1 ]; then
  if [ -f "$PEERS_SETUP" ]; then
    $SUDO sh "$PEERS_SETUP"
  else
    echo "note: $PEERS_SETUP not found; DICOM peers (DCMTK, pynetdicom) not installed, tests that need them will fail" >&2
  fi
fi
echo "build dependencies ready"
