#!/bin/sh
# Install what the build needs (once), build, and run a Renkei node with the defaults:
# data in ./renkei-data, AE title RENKEI, DICOM on 127.0.0.1:11112, HTTP on 127.0.0.1:8042.
# Extra arguments go to `pacs-node serve` (e.g. ./run.sh --ae-title PACS1 --dicom-port 104).
set -e
cd "$(dirname "$0")"
sh scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}"
cargo build --release --workspace --bins
exec "$CARGO_TARGET_DIR/release/pacs-node" serve "$@"
