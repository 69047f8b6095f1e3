#!/bin/sh
# Web pages (issue 8, point 3): page weight of ui/dist (raw and gzip, as the node serves
# it) and the time to first render of the patient page with YEARS (default 5) years of
# monthly records of one patient, created through the FHIR API by
# pacs-node/tests/ui_browser.rs and measured in headless chromium by ui/tests/ui.spec.mjs
# (Performance API: navigation start → the page's `renkei:patient-rendered` mark, first
# contentful paint, the $everything requests). Figures: docs/PERFORMANCE.md.
set -e
cd "$(dirname "$0")/.."
YEARS=${YEARS:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}"
sh scripts/setup.sh >/dev/null

echo "== page weight: ui/dist"
total=0
gz=0
for f in index.html app.js app.css icon.svg; do
  n=$(wc -c < "ui/dist/$f")
  if [ -f "ui/dist/$f.gz" ]; then g=$(wc -c < "ui/dist/$f.gz"); else g=$n; fi
  printf '%-12s %7d B  gzip %6d B\n' "$f" "$n" "$g"
  total=$((total + n))
  gz=$((gz + g))
done
printf '%-12s %7d B  gzip %6d B\n' total "$total" "$gz"

echo "== first render of the patient page, $YEARS years of records"
out=$(mktemp -d)
RENKEI_UI_PERF_YEARS=$YEARS RENKEI_UI_SCREENSHOTS="$out" \
  cargo test --release -q -p pacs-node --test ui_browser -- --nocapture > "$out/log" 2>&1 || {
  tail -50 "$out/log"
  exit 1
}
grep -E '^ui perf:|^ok - perf|^UI_PERF' "$out/log"
rm -rf "$out"
