#!/usr/bin/env bash
# benches/clinical.sh — the shared clinical record at regional scale (issue 7, point 5):
#   1. PATIENTS patients and RECORDS clinical records (visits, diagnoses, lab results,
#      prescriptions, allergies from three facilities over five years) written by
#      renkei-gen-clinical through Share::create_many — the checks, duplicate detection,
#      index writes and audit record of POST /fhir/{type}, committed in batches: records/s
#      and index bytes per record (audit trail included);
#   2. the node serving that data dir: GET /fhir/Patient/{id}/$summary and
#      /fhir/Patient/{id}/$everything (first page, 200 entries) for the checked-in sample
#      patients as the hospital's doctor, wrk at 1 connection: p50/p99 (target: $summary
#      p99 <= 50 ms);
#   3. single-record creates over HTTP (POST /fhir/Observation, one synced commit each) at 1
#      and 16 connections: creates/s.
# Usage: benches/clinical.sh        (PATIENTS=20000 RECORDS=10000000; the generated data dir
#        is kept in WORK and reused when its bench.json exists)
# Environment: PATIENTS [20000] RECORDS [10000000] DURATION [15s per wrk row]
#   CARGO_TARGET_DIR [$HOME/.cache/renkei/target]  BIN [$CARGO_TARGET_DIR/release]
#   WORK [/tmp/renkei-clinical]
set -u
export LC_ALL=C.UTF-8
PATIENTS=${PATIENTS:-20000}
RECORDS=${RECORDS:-10000000}
DURATION=${DURATION:-15s}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
WORK=${WORK:-/tmp/renkei-clinical}
DATA=$WORK/data
HTTP=28500
DICOM=21500
log() { printf '[clinical] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
for b in pacs-node renkei-gen-clinical; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: cargo build --release -p pacs-node -p renkei-benches"
done
command -v wrk >/dev/null || die "wrk missing: sh scripts/setup.sh installs it"
mkdir -p "$WORK"

if [ ! -s "$DATA/bench.json" ]; then
  rm -rf "$DATA"
  log "generating $PATIENTS patients, $RECORDS records into $DATA"
  "$BIN/renkei-gen-clinical" --data-dir "$DATA" --patients "$PATIENTS" --records "$RECORDS" \
    > "$WORK/gen.out" 2> "$WORK/gen.err" || die "generator failed: $(tail -3 "$WORK/gen.err")"
fi
python3 - "$DATA/bench.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"[clinical] data: {d['patients']} patients, {d['records']} records, "
      f"{d['detected_issues']} DetectedIssues; written at {d['records_per_sec']:.0f} records/s "
      f"(batches of {d['batch']}, {d['write_secs']:.0f} s); index {d['index_bytes']/1e9:.2f} GB = "
      f"{d['index_bytes_per_record']:.0f} bytes per record (audit trail included)", file=sys.stderr)
PY

NODE_PID=""
trap '[ -n "$NODE_PID" ] && kill $NODE_PID 2>/dev/null; wait 2>/dev/null' EXIT
curl -s -o /dev/null "http://127.0.0.1:$HTTP/healthz" && die "something already listens on $HTTP"
"$BIN/pacs-node" serve --data-dir "$DATA" --http-port $HTTP --dicom-port $DICOM \
  > "$WORK/node.log" 2>&1 &
NODE_PID=$!
for _ in $(seq 1 200); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/healthz" && break; sleep 0.1; done

# wrk scripts: rotate over the sample patients
python3 - "$DATA/bench.json" "$WORK" <<'PY'
import json, sys
d = json.load(open(sys.argv[1])); work = sys.argv[2]
ids = ",".join(f'"{s["patient"]}"' for s in d["sample"])
tok = d["doctor_token"]
head = f'local ids = {{{ids}}}\nlocal i = 0\nlocal h = {{["Authorization"] = "Bearer {tok}", ["Accept"] = "application/fhir+json", ["Content-Type"] = "application/fhir+json"}}\n'
get = head + 'request = function()\n  i = i + 1\n  return wrk.format("GET", string.format(PATH, ids[(i % #ids) + 1]), h)\nend\n'
for name, path in [("summary", "/fhir/Patient/%s/$summary"), ("everything", "/fhir/Patient/%s/$everything")]:
    open(f"{work}/{name}.lua", "w").write(f'local PATH = "{path}"\n' + get)
post = head + '''request = function()
  i = i + 1
  local body = string.format('{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"urn:oid:1.2.392.200119.4.504","code":"3D010000001926101","display":"glucose"}],"text":"glucose"},"subject":{"reference":"Patient/%s"},"effectiveDateTime":"2026-11-20T09:00:00Z","valueQuantity":{"value":%d,"unit":"mg/dL"}}', ids[(i % #ids) + 1], 80 + i % 60)
  return wrk.format("POST", "/fhir/Observation", h, body)
end
'''
open(f"{work}/create.lua", "w").write(post)
PY

row() { # name lua connections
  local out
  out=$(wrk -t1 -c"$3" -d"$DURATION" --latency -s "$WORK/$2.lua" "http://127.0.0.1:$HTTP" 2>&1)
  local rps p50 p99 non2xx
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  p50=$(echo "$out" | awk '$1=="50%" {print $2}')
  p99=$(echo "$out" | awk '$1=="99%" {print $2}')
  non2xx=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$3" "$rps" "$p50" "$p99" "${non2xx:-0}"
}
log "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "| request | connections | requests/s | p50 | p99 | non-2xx |"
echo "|---|---:|---:|---:|---:|---:|"
row '`GET Patient/{id}/$summary`' summary 1
row '`GET Patient/{id}/$everything` (first 200)' everything 1
row '`GET Patient/{id}/$summary`' summary 16
row '`POST Observation` (one synced commit each)' create 1
row '`POST Observation` (one synced commit each)' create 16
log "load average: $(cut -d' ' -f1-3 /proc/loadavg); node RSS $(awk '/VmRSS/ {print $2" "$3}' /proc/$NODE_PID/status)"
