#!/bin/sh
# Run every test: install the build dependencies and the third-party DICOM peers (once),
# then formatting, lints, unit tests and the integration tests against DCMTK and pynetdicom.
# One cargo profile (release) serves tests and binaries, so RocksDB's C++ is built once.
# A target dir outside the clone is reused across clones (CARGO_TARGET_DIR, default
# ~/.cache/renkei/target); a fresh machine simply builds it.
set -e
cd "$(dirname "$0")/.."
sh scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}"
export TCP_NODELAY=1
cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
# two test binaries at a time: the integration tests run real peers and a node each
cargo test --release --workspace -- --test-threads=2
