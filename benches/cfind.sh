#!/usr/bin/env bash
# benches/cfind.sh — C-FIND on a large archive (issue 3, "what it must show" 3 and 4):
#   1. a 1,000,000-instance index (10,000 patients, 40,000 studies) written by
#      renkei-gen-index through Store::bulk_index (the C-STORE index writes, no blobs);
#      index bytes per instance; node startup time on it (launch → first C-ECHO answered);
#      C-FIND latency (min/p50/p99 over REPEAT runs on one association, `renkei find
#      --repeat --timing`) for: study by PatientID, by StudyInstanceUID, a week of
#      StudyDate, a PatientName prefix (Latin and kanji), a query of about 100 results;
#   2. the same queries against Orthanc and against the node, both loaded over C-STORE with
#      the same SMALL archive (Orthanc cannot be loaded with a million instances in the
#      time of a bench run here), with node/Orthanc ratios;
#   3. memory while streaming a 100,000-result query (100,000 studies): the node's RSS
#      before, peak during, and for a 1,000-result query, sampled every 50 ms.
# Usage: benches/cfind.sh            (REPEAT=200 PATIENTS=10000 SMALL_PATIENTS=400 ...)
# Environment: PATIENTS [10000] STUDIES [4] INSTANCES [25] (per study) REPEAT [200]
#   SMALL_PATIENTS [400] (x STUDIES x INSTANCES for the Orthanc comparison)
#   FLAT_STUDIES [100000]  PARTS ["big small flat"]
#   CARGO_TARGET_DIR [$HOME/.cache/renkei/target]  BIN [$CARGO_TARGET_DIR/release]
#   WORK [/tmp/renkei-cfind] (generated archives are kept there and reused)
#   PEERS_DIR [<repo>/../shared/peers]  ORTHANC_DICOM_PORT [24242] ORTHANC_HTTP_PORT [28042]
set -u
export LC_ALL=C.UTF-8
export TCP_NODELAY=1

PATIENTS=${PATIENTS:-10000}
STUDIES=${STUDIES:-4}
INSTANCES=${INSTANCES:-25}
REPEAT=${REPEAT:-200}
SMALL_PATIENTS=${SMALL_PATIENTS:-400}
FLAT_STUDIES=${FLAT_STUDIES:-100000}
PARTS=${PARTS:-big small flat}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
WORK=${WORK:-/tmp/renkei-cfind}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/peers}
export ORTHANC_DICOM_PORT=${ORTHANC_DICOM_PORT:-24242}
export ORTHANC_HTTP_PORT=${ORTHANC_HTTP_PORT:-28042}
export RENKEI_PEERS=$WORK/peers
NODE_PORT=21212
NODE_HTTP=28180

log() { printf '[cfind] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
for b in pacs-node renkei renkei-gen-index; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: cargo build --release -p pacs-node -p renkei-tools -p renkei-benches"
done
mkdir -p "$WORK" "$RENKEI_PEERS"
[ -e "$RENKEI_PEERS/bindlo.so" ] || ln -sf /tmp/renkei-peers/bindlo.so "$RENKEI_PEERS/bindlo.so"

NODE_PID=""
stop_node() { [ -n "$NODE_PID" ] && kill "$NODE_PID" 2>/dev/null && wait "$NODE_PID" 2>/dev/null; NODE_PID=""; }
ORTHANC_UP=""
stop_orthanc() { [ -n "$ORTHANC_UP" ] && "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1; ORTHANC_UP=""; }
trap 'stop_node; stop_orthanc' EXIT

# start_node DATA_DIR [CONFIG]: sets NODE_PID and STARTUP_MS (launch → C-ECHO answered)
start_node() {
  local t0 t1 i
  # a node left from an earlier run would answer instead of this one
  (echo >/dev/tcp/127.0.0.1/$NODE_PORT) 2>/dev/null && die "port $NODE_PORT is already in use"
  t0=$(date +%s%N)
  "$BIN/pacs-node" serve --data-dir "$1" --ae-title BENCH --dicom-port $NODE_PORT \
    --http-port $NODE_HTTP ${2:+--config "$2"} >"$1.log" 2>&1 &
  NODE_PID=$!
  for i in $(seq 2000); do
    "$BIN/renkei" echo 127.0.0.1 $NODE_PORT -aec BENCH >/dev/null 2>&1 && break
    kill -0 $NODE_PID 2>/dev/null || { cat "$1.log" >&2; die "node exited"; }
  done
  t1=$(date +%s%N)
  STARTUP_MS=$(( (t1 - t0) / 1000000 ))
}

key() { sed -n "s/.*\"$2\": \"\(.*\)\".*/\1/p" "$1/keys.json"; }
plus_days() { date -d "$1 + $2 days" +%Y%m%d; }

# query AE PORT LABEL KEYS...: one line "label | matches | min p50 p99"
query() {
  local ae=$1 port=$2 label=$3 out matches timing
  shift 3
  # return keys first: a later -k of the same attribute replaces an earlier one
  out=$("$BIN/renkei" find 127.0.0.1 "$port" -aec "$ae" -S -L STUDY -k StudyInstanceUID \
    -k PatientName -k PatientID -k StudyDate -k AccessionNumber -k ModalitiesInStudy \
    -k NumberOfStudyRelatedInstances "$@" --repeat "$REPEAT" --timing -q 2>&1)
  matches=$(printf '%s\n' "$out" | sed -n 's/^\([0-9]*\) match.*/\1/p' | tail -1)
  timing=$(printf '%s\n' "$out" | sed -n 's/^timing: .*min \([0-9.]*\) ms, p50 \([0-9.]*\) ms, p90 [0-9.]* ms, p99 \([0-9.]*\) ms.*/\1 \2 \3/p')
  [ -n "$timing" ] || { log "$label failed: $out"; timing="- - -"; }
  printf '%-28s %8s %10s %10s %10s\n' "$label" "${matches:--}" $timing
}

# queries AE PORT ARCHIVE_DIR STUDIES_TOTAL
queries() {
  local ae=$1 port=$2 dir=$3 total=$4 d days
  d=$(key "$dir" study_date)
  # about 100 studies: the archive's studies are spread evenly over 3650 days
  days=$(( (100 * 3650 + total - 1) / total - 1 ))
  printf '%-28s %8s %10s %10s %10s\n' query matches "min ms" "p50 ms" "p99 ms"
  query "$ae" "$port" "study by PatientID" -k "PatientID=$(key "$dir" patient_id)"
  query "$ae" "$port" "study by StudyInstanceUID" -k "StudyInstanceUID=$(key "$dir" study_uid)"
  query "$ae" "$port" "studies in a week" -k "StudyDate=$d-$(plus_days "$d" 6)"
  query "$ae" "$port" "PatientName prefix" -k "PatientName=$(key "$dir" name_prefix)"
  query "$ae" "$port" "PatientName 山田*" -k "PatientName=山田*"
  query "$ae" "$port" "about 100 results" -k "StudyDate=$d-$(plus_days "$d" "$days")"
}

# ------------------------------------------------------------------ 1. the big index
if [[ " $PARTS " == *" big "* ]]; then
  BIG=$WORK/big-p$PATIENTS-s$STUDIES-i$INSTANCES
  if [ ! -f "$BIG/keys.json" ]; then
    rm -rf "$BIG"
    log "generating $((PATIENTS * STUDIES * INSTANCES)) instances into $BIG"
    "$BIN/renkei-gen-index" --data-dir "$BIG" --patients "$PATIENTS" \
      --studies-per-patient "$STUDIES" --instances-per-study "$INSTANCES" >&2 || die "generator failed"
  fi
  n=$((PATIENTS * STUDIES * INSTANCES))
  bytes=$(du -sb "$BIG/index" | cut -f1)
  echo "== index of $n instances ($PATIENTS patients, $((PATIENTS * STUDIES)) studies)"
  echo "index size: $bytes bytes, $((bytes / n)) bytes per instance"
  start_node "$BIG"
  echo "startup (launch to first C-ECHO answered): $STARTUP_MS ms"
  queries BENCH $NODE_PORT "$BIG" $((PATIENTS * STUDIES))
  echo "node RSS after the queries: $(awk '/VmRSS/ {print $2, $3}' /proc/$NODE_PID/status)"
  stop_node
  start_node "$BIG"
  echo "startup again (warm page cache): $STARTUP_MS ms"
  stop_node
fi

# ------------------------------------------------------------------ 2. node vs Orthanc
if [[ " $PARTS " == *" small "* ]]; then
  FILES=$WORK/files-p$SMALL_PATIENTS-s$STUDIES-i$INSTANCES
  if [ ! -f "$FILES/keys.json" ] || [ ! -d "$FILES/dicom" ]; then
    rm -rf "$FILES"
    log "writing $((SMALL_PATIENTS * STUDIES * INSTANCES)) files into $FILES"
    "$BIN/renkei-gen-index" --files "$FILES" --patients "$SMALL_PATIENTS" \
      --studies-per-patient "$STUDIES" --instances-per-study "$INSTANCES" >&2 || die "generator failed"
  fi
  n=$((SMALL_PATIENTS * STUDIES * INSTANCES))
  SMALL=$WORK/small-node
  rm -rf "$SMALL" "$SMALL.log"
  start_node "$SMALL"
  log "storing $n files into the node"
  "$BIN/renkei" store 127.0.0.1 $NODE_PORT -aec BENCH -j 2 "$FILES/dicom" >"$WORK/store-node.log" 2>&1 || { tail -3 "$WORK/store-node.log" >&2; die "store to the node failed"; }
  echo "== $n instances ($SMALL_PATIENTS patients, $((SMALL_PATIENTS * STUDIES)) studies), loaded over C-STORE"
  echo "-- node"
  queries BENCH $NODE_PORT "$FILES" $((SMALL_PATIENTS * STUDIES)) | tee "$WORK/small-node.txt"
  stop_node
  "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1
  "$PEERS_DIR/start-orthanc.sh" --wipe >"$WORK/orthanc.log" 2>&1 || die "Orthanc did not start"
  ORTHANC_UP=1
  log "storing $n files into Orthanc"
  t0=$(date +%s)
  "$BIN/renkei" store 127.0.0.1 "$ORTHANC_DICOM_PORT" -aec ORTHANC -j 2 "$FILES/dicom" >"$WORK/store-orthanc.log" 2>&1 || { tail -3 "$WORK/store-orthanc.log" >&2; die "store to Orthanc failed"; }
  log "Orthanc took $(( $(date +%s) - t0 )) s to load"
  echo "-- Orthanc 1.10"
  queries ORTHANC "$ORTHANC_DICOM_PORT" "$FILES" $((SMALL_PATIENTS * STUDIES)) | tee "$WORK/small-orthanc.txt"
  stop_orthanc
  echo "-- p50 ratio Orthanc / node (higher: node faster)"
  tail -n +2 "$WORK/small-node.txt" | while IFS= read -r line; do
    label=${line:0:28}
    node_p50=$(echo "${line:28}" | awk '{print $3}')
    orth_p50=$(grep -F "$label" "$WORK/small-orthanc.txt" | cut -c29- | awk '{print $3}')
    ratio=$(awk -v a="$orth_p50" -v b="$node_p50" 'BEGIN { if (b > 0 && a != "-") printf "%.1f", a / b; else print "-" }')
    printf '%-28s %6sx\n' "$label" "$ratio"
  done
fi

# ------------------------------------------------------------------ 3. flat memory
if [[ " $PARTS " == *" flat "* ]]; then
  FLAT=$WORK/flat-$FLAT_STUDIES
  if [ ! -f "$FLAT/keys.json" ]; then
    rm -rf "$FLAT"
    "$BIN/renkei-gen-index" --data-dir "$FLAT" --patients "$FLAT_STUDIES" --studies-per-patient 1 \
      --series-per-study 1 --instances-per-study 1 >&2 || die "generator failed"
  fi
  printf 'max_find_results = %d\n' $((FLAT_STUDIES * 2)) >"$WORK/flat.toml"
  start_node "$FLAT" "$WORK/flat.toml"
  rss() { awk '/VmRSS/ {print $2}' /proc/$NODE_PID/status; }
  # stream_query LABEL KEYS...: matches, RSS before and peak during (KiB)
  stream_query() {
    local label=$1 before peak r out qpid
    shift
    before=$(rss); peak=$before
    "$BIN/renkei" find 127.0.0.1 $NODE_PORT -aec BENCH -S -L STUDY -k StudyInstanceUID \
      -k PatientName -k StudyDate "$@" -q >"$WORK/flat.out" 2>&1 &
    qpid=$!
    while kill -0 $qpid 2>/dev/null; do
      r=$(rss); [ "$r" -gt "$peak" ] && peak=$r
      sleep 0.05
    done
    out=$(sed -n 's/^\([0-9]*\) match.*/\1/p' "$WORK/flat.out")
    printf '%-22s %8s matches, node RSS before %6d KiB, peak %6d KiB\n' "$label" "${out:--}" "$before" "$peak"
  }
  echo "== streaming: $FLAT_STUDIES studies"
  stream_query "warm-up (1 study)" -k "PatientID=$(key "$FLAT" patient_id)"
  d=$(key "$FLAT" study_date)
  stream_query "about 1,000 results" -k "StudyDate=$d-$(plus_days "$d" $(( 1000 * 3650 / FLAT_STUDIES )))"
  stream_query "all $FLAT_STUDIES" -k "StudyDate="
  stream_query "about 1,000 again" -k "StudyDate=$d-$(plus_days "$d" $(( 1000 * 3650 / FLAT_STUDIES )))"
  stop_node
fi
