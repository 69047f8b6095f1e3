#!/usr/bin/env bash
# benches/ingest.sh — end-to-end C-STORE ingest comparison on loopback:
#   Renkei's pacs-node  vs  DCMTK storescp (writing files)  vs  Orthanc 1.10 (SQLite, fsync on).
#
# The same set of N synthetic CT instances (512x512, 16-bit, distinct UIDs) is sent with DCMTK
# storescu over 1 association, then over K concurrent associations (K storescu processes, each
# with 1/K of the files). Every run gets a fresh receiver with empty storage. Wall time covers the
# storescu processes only (their file pre-scan included; the input files are pre-read into the
# page cache). All received instances are verified (storescu exit code + receiver-side count).
#
# Usage:  benches/ingest.sh                      # all targets, N=500, 1 and 8 associations
#         TARGETS="storescp orthanc" benches/ingest.sh   # baselines only (node not built yet)
# Environment (defaults in brackets):
#   N [500]                instances to send
#   TARGETS ["renkei storescp orthanc"]   any of: renkei storescp storescp-sync orthanc
#                          storescp-sync = storescp --fork -xcr "sync -d #p/#f" -xs: an fdatasync per
#                          file via a forked sh (storescp 3.6.7 has no fsync option; the sync runs
#                          after the C-STORE-RSP is sent, but before the next request is read)
#   ASSOCS ["1 8"]         association counts to run
#   REPEAT [1]             fresh runs per (target, assocs); the median wall time is reported
#   CARGO_TARGET_DIR [$HOME/.cache/renkei/target];  BIN [$CARGO_TARGET_DIR/release]
#                          (needs $BIN/pacs-node; $BIN/renkei is used for `renkei synth` if present)
#   WORK [/tmp/renkei-bench]  generated sets are cached in $WORK/sets; receivers' data in $WORK/run
#   SYNTH [auto]           auto | renkei | python   (generator; auto prefers `renkei synth`)
#   TEMPLATE []            template for the python generator (default: a 512x512 16-bit uncompressed
#                          CT from $CORPUS, else one made with pydicom)
#   CORPUS [<repo>/testdata/corpus]   PEERS_DIR [<repo>/../shared/peers]
#   PEERS_VENV [/tmp/renkei-peers/venv]     PEERS_SHIM [/tmp/renkei-peers/bindlo.so]
#   NODE_PORT [21112] NODE_HTTP [28080] NODE_ARGS []   SCP_PORT [21113]
#   ORTHANC_DICOM_PORT [24242] ORTHANC_HTTP_PORT [28042]   (private ports and a private Orthanc
#                          directory in $WORK/peers, so a test Orthanc on 14242 is never touched)
#   STORESCP_OPTS [--fork] (without --fork, storescp serves concurrent associations one at a time)
#   SEND_TIMEOUT [900]     seconds allowed for one send (all K storescu processes)
#   KEEP [0]               1 keeps what storescp/pacs-node received, in $WORK/run/TARGET-aK-rR/data
# Exit status: 0 if every run stored all N instances, 1 otherwise, 2 on setup errors.
set -u
export LC_ALL=C
export TCP_NODELAY=1   # Debian's DCMTK leaves Nagle on otherwise (~40 ms stall per PDU round trip)

N=${N:-500}
TARGETS=${TARGETS:-renkei storescp orthanc}
ASSOCS=${ASSOCS:-1 8}
REPEAT=${REPEAT:-1}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
WORK=${WORK:-/tmp/renkei-bench}
SYNTH=${SYNTH:-auto}
TEMPLATE=${TEMPLATE:-}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$REPO/testdata/corpus}
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/peers}
PEERS_VENV=${PEERS_VENV:-/tmp/renkei-peers/venv}
PEERS_SHIM=${PEERS_SHIM:-/tmp/renkei-peers/bindlo.so}
NODE_PORT=${NODE_PORT:-21112}
NODE_HTTP=${NODE_HTTP:-28080}
NODE_ARGS=${NODE_ARGS:-}
SCP_PORT=${SCP_PORT:-21113}
export ORTHANC_DICOM_PORT=${ORTHANC_DICOM_PORT:-24242}
export ORTHANC_HTTP_PORT=${ORTHANC_HTTP_PORT:-28042}
export ORTHANC_SYNC=true
STORESCP_OPTS=${STORESCP_OPTS---fork}   # set to "" for a single-process storescp
SEND_TIMEOUT=${SEND_TIMEOUT:-900}
KEEP=${KEEP:-0}
PY=$PEERS_VENV/bin/python
# start-orthanc.sh / stop-orthanc.sh keep their state in $RENKEI_PEERS/orthanc: use a private one
export RENKEI_PEERS=$WORK/peers

CMDLINE="N=$N TARGETS=\"$TARGETS\" ASSOCS=\"$ASSOCS\" REPEAT=$REPEAT BIN=$BIN WORK=$WORK SYNTH=$SYNTH"
[ "$STORESCP_OPTS" != --fork ] && CMDLINE="$CMDLINE STORESCP_OPTS=\"$STORESCP_OPTS\""
[ -n "$NODE_ARGS" ] && CMDLINE="$CMDLINE NODE_ARGS=\"$NODE_ARGS\""
[ -n "$TEMPLATE" ] && CMDLINE="$CMDLINE TEMPLATE=$TEMPLATE"
CMDLINE="$CMDLINE $0${*:+ $*}"

log() { printf '[ingest] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
now() { date +%s.%N; }
port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() { # PORT PID: wait (bounded, 20 s) until PORT accepts; fail if PID dies
  local i
  for i in $(seq 200); do
    port_open "$1" && return 0
    [ -n "${2:-}" ] && ! kill -0 "$2" 2>/dev/null && return 1
    sleep 0.1
  done
  return 1
}
case $N in ''|*[!0-9]*) die "N must be a number";; esac
[ "$N" -ge 1 ] || die "N must be >= 1"

# ---------------------------------------------------------------- cleanup
NODE_PID=""; SCP_PID=""; ORTHANC_UP=""; SENDER_PIDS=""
stop_pid() { # PID [children too]: TERM, bounded wait, KILL
  local pid=$1 i
  [ -n "$pid" ] || return 0
  kill -0 "$pid" 2>/dev/null || return 0
  [ -n "${2:-}" ] && pkill -TERM -P "$pid" 2>/dev/null
  kill -TERM "$pid" 2>/dev/null
  for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  [ -n "${2:-}" ] && pkill -KILL -P "$pid" 2>/dev/null
  kill -KILL "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  return 0
}
stop_node() { stop_pid "$NODE_PID"; NODE_PID=""; }
stop_scp() { stop_pid "$SCP_PID" children; SCP_PID=""; }
stop_orthanc() { [ -n "$ORTHANC_UP" ] && "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1; ORTHANC_UP=""; }
cleanup() {
  local p
  for p in $SENDER_PIDS; do kill -TERM "$p" 2>/dev/null; done
  stop_node; stop_scp; stop_orthanc
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- checks
for c in storescu storescp curl timeout; do command -v $c >/dev/null 2>&1 || die "$c not found (run $PEERS_DIR/setup.sh)"; done
for t in $TARGETS; do
  case $t in
    renkei) [ -x "$BIN/pacs-node" ] || die "$BIN/pacs-node not found: build it (cargo build --release -p pacs-node) or set BIN, or drop renkei from TARGETS";;
    storescp|storescp-sync) [ -x "$PEERS_DIR/start-storescp.sh" ] || die "no $PEERS_DIR/start-storescp.sh";;
    orthanc) command -v Orthanc >/dev/null 2>&1 || die "Orthanc not installed (run $PEERS_DIR/setup.sh)"
             [ -f "$PEERS_SHIM" ] || die "no $PEERS_SHIM (run $PEERS_DIR/setup.sh)";;
    *) die "unknown target '$t' (renkei storescp storescp-sync orthanc)";;
  esac
done
[ -x "$PY" ] || die "no python venv at $PEERS_VENV (run $PEERS_DIR/setup.sh)"
mkdir -p "$WORK/sets" "$WORK/run" "$RENKEI_PEERS" || die "cannot create $WORK"
[ -e "$RENKEI_PEERS/bindlo.so" ] || ln -sf "$PEERS_SHIM" "$RENKEI_PEERS/bindlo.so"

# ---------------------------------------------------------------- 1. the instance set
list_dicom() { # DIR: the Part-10 files (DICM magic) under DIR, sorted
  "$PY" -c 'import os, sys
for r, _, fs in os.walk(sys.argv[1]):
    for f in fs:
        p = os.path.join(r, f)
        try:
            with open(p, "rb") as h:
                h.seek(128); ok = h.read(4) == b"DICM"
        except OSError:
            ok = False
        if ok:
            print(p)' "$1" | sort
}
have_renkei_synth() { # the binary exists and its synth subcommand documents --count
  [ -x "$BIN/renkei" ] && "$BIN/renkei" synth --help 2>&1 | grep -q -- '--count'
}
case $SYNTH in
  auto) if have_renkei_synth; then GEN=renkei; else GEN=python; fi;;
  renkei) have_renkei_synth || die "$BIN/renkei synth not available"; GEN=renkei;;
  python) GEN=python;;
  *) die "SYNTH must be auto, renkei or python";;
esac
SET=$WORK/sets/ct512-$GEN-n$N

find_or_make_template() { # prints the template path
  if [ -n "$TEMPLATE" ]; then [ -f "$TEMPLATE" ] || die "TEMPLATE $TEMPLATE not found"; echo "$TEMPLATE"; return; fi
  "$PY" - "$CORPUS" "$WORK/template-ct512.dcm" <<'PY'
import os, sys, warnings
warnings.filterwarnings("ignore")
import pydicom
corpus, out = sys.argv[1], sys.argv[2]
UNCOMPRESSED = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1"}
# 1) a single-frame 512x512 16-bit uncompressed CT Image Storage file from the corpus
cands = []
for root, _, files in os.walk(corpus):
    for f in files:
        p = os.path.join(root, f)
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            if (str(ds.file_meta.TransferSyntaxUID) in UNCOMPRESSED and ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.2"
                    and ds.Rows == 512 and ds.Columns == 512 and ds.BitsAllocated == 16
                    and int(ds.get("NumberOfFrames", 1) or 1) == 1 and ds.get("SamplesPerPixel", 1) == 1
                    and "/valid/" in p.replace(os.sep, "/") + "/"):
                cands.append(p)
        except Exception:
            pass
if cands:
    print(sorted(cands)[0]); sys.exit(0)
# 2) none: make one (a noisy disc phantom, Explicit VR Little Endian)
if os.path.exists(out):
    print(out); sys.exit(0)
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, CTImageStorage, generate_uid
meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = CTImageStorage
meta.MediaStorageSOPInstanceUID = generate_uid()
meta.TransferSyntaxUID = ExplicitVRLittleEndian
ds = Dataset(); ds.file_meta = meta
ds.SOPClassUID = CTImageStorage; ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
ds.StudyInstanceUID = generate_uid(); ds.SeriesInstanceUID = generate_uid(); ds.FrameOfReferenceUID = generate_uid()
ds.PatientName = "SYNTH^Template"; ds.PatientID = "SYNTH"; ds.PatientBirthDate = ""; ds.PatientSex = "O"
ds.StudyDate = ds.SeriesDate = "20240101"; ds.StudyTime = ds.SeriesTime = "120000"
ds.AccessionNumber = ""; ds.ReferringPhysicianName = ""; ds.StudyID = "1"
ds.Modality = "CT"; ds.Manufacturer = "renkei-bench"; ds.SeriesNumber = 1; ds.InstanceNumber = 1
ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]; ds.KVP = "120"; ds.SliceThickness = "1.0"
ds.ImagePositionPatient = [-250, -250, 0]; ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
ds.PixelSpacing = [0.9765625, 0.9765625]; ds.RescaleIntercept = "-1024"; ds.RescaleSlope = "1"
ds.SamplesPerPixel = 1; ds.PhotometricInterpretation = "MONOCHROME2"; ds.Rows = 512; ds.Columns = 512
ds.BitsAllocated = 16; ds.BitsStored = 12; ds.HighBit = 11; ds.PixelRepresentation = 0
y, x = np.mgrid[0:512, 0:512]
img = np.where((x - 256) ** 2 + (y - 256) ** 2 < 200 ** 2, 1064, 24) + np.random.default_rng(1).integers(0, 40, (512, 512))
ds.PixelData = img.astype("<u2").tobytes()
ds.save_as(out, enforce_file_format=True)
print(out)
PY
}

if [ "$GEN" = renkei ] && [ ! -f "$SET/.complete" ]; then
  rm -rf "$SET"; mkdir -p "$SET/all" || die "cannot create $SET"
  log "generating $N instances with: $BIN/renkei synth --out $SET/all --count $N --per-series 250"
  if "$BIN/renkei" synth --out "$SET/all" --count "$N" --per-series 250 >"$SET/gen.log" 2>&1 &&
     [ "$(list_dicom "$SET/all" | wc -l)" -eq "$N" ]; then
    echo "renkei synth --count $N --per-series 250" >"$SET/generator"
  else
    tail -5 "$SET/gen.log" >&2
    [ "$SYNTH" = renkei ] && die "renkei synth failed or did not write $N files"
    log "renkei synth failed or did not write $N files: falling back to gen_synth.py"
    rm -rf "$SET"; GEN=python; SET=$WORK/sets/ct512-$GEN-n$N
  fi
fi
if [ ! -f "$SET/.complete" ]; then
  if [ "$GEN" = python ]; then
    rm -rf "$SET"; mkdir -p "$SET/all" || die "cannot create $SET"
    TPL=$(find_or_make_template) || die "no template"
    [ -f "$TPL" ] || die "template not found: $TPL"
    log "generating $N instances from $TPL with gen_synth.py"
    "$PY" "$PEERS_DIR/gen_synth.py" "$TPL" "$SET/all" "$N" 250 >"$SET/gen.log" 2>&1 \
      || { cat "$SET/gen.log" >&2; die "gen_synth.py failed"; }
    echo "gen_synth.py $TPL $N 250" >"$SET/generator"
  fi
  list_dicom "$SET/all" >"$SET/files"
  got=$(wc -l <"$SET/files")
  [ "$got" -eq "$N" ] || die "generator produced $got files, expected $N (see $SET/gen.log)"
  touch "$SET/.complete"
fi
BYTES=$(xargs -d '\n' stat -c %s <"$SET/files" | awk '{s+=$1} END {printf "%d", s}')
MB=$(awk -v b="$BYTES" 'BEGIN {printf "%.1f", b/1e6}')
FIRST=$(head -1 "$SET/files")
GEOM=$(dcmdump +P Rows +P Columns +P BitsAllocated +P TransferSyntaxUID "$FIRST" 2>/dev/null | awk '{print $3}' | paste -sd' ')
log "set: $SET ($N files, $MB MB, $(cat "$SET/generator"); first file: rows cols bits ts = $GEOM)"

split_set() { # K: hard-link the files round-robin into K part directories (cached), so that
  # storescu +sd sends exactly the listed files
  local k=$1 d=$SET/split-$1
  [ -f "$d/.complete" ] && return 0
  rm -rf "$d"; local i
  for i in $(seq 0 $((k - 1))); do mkdir -p "$d/part$i"; done
  awk -v k="$k" -v d="$d" '{printf "%s\t%s/part%d/%06d.dcm\n", $0, d, (NR-1)%k, NR}' "$SET/files" |
    while IFS="$(printf '\t')" read -r src dst; do ln "$src" "$dst" 2>/dev/null || cp "$src" "$dst"; done
  touch "$d/.complete"
}
for k in $ASSOCS; do
  case $k in ''|*[!0-9]*) die "ASSOCS must be numbers";; esac
  [ "$k" -ge 1 ] || die "ASSOCS entries must be >= 1"
  split_set "$k"
done
# warm the page cache so every target reads its input from memory
xargs -d '\n' cat <"$SET/files" >/dev/null

# ---------------------------------------------------------------- 2. receivers
# start_<target> RUNDIR sets AET PORT RPID (the process to sample for VmHWM, may be empty)
start_renkei() {
  mkdir -p "$1/data"
  for p in "$NODE_PORT" "$NODE_HTTP"; do port_open "$p" && { log "port $p already in use"; return 1; }; done
  # shellcheck disable=SC2086
  "$BIN/pacs-node" serve --data-dir "$1/data" --ae-title RENKEI --dicom-port "$NODE_PORT" --http-port "$NODE_HTTP" $NODE_ARGS \
    >"$1/node.log" 2>&1 &
  NODE_PID=$!
  wait_port "$NODE_PORT" "$NODE_PID" && wait_port "$NODE_HTTP" "$NODE_PID" \
    || { log "pacs-node did not come up"; tail -20 "$1/node.log" >&2; return 1; }
  AET=RENKEI; PORT=$NODE_PORT; RPID=$NODE_PID; NODE_RUN_DATA=$1/data
}
count_renkei() {
  # every HTTP route but /healthz takes a bearer token: the first start wrote the admin's
  local token
  token=$(tr -d ' \r\n' <"$NODE_RUN_DATA/admin.token" 2>/dev/null)
  curl -s --max-time 10 -H "Authorization: Bearer $token" "http://127.0.0.1:$NODE_HTTP/api/statistics" |
    tr -d ' \n' | sed -n 's/.*"instances":\([0-9][0-9]*\).*/\1/p'
}
stop_renkei() { stop_node; }

start_storescp() { # RUNDIR [extra storescp options]
  local dir=$1; shift
  port_open "$SCP_PORT" && { log "port $SCP_PORT already in use"; return 1; }
  # shellcheck disable=SC2086
  SCP_PID=$("$PEERS_DIR/start-storescp.sh" "$SCP_PORT" "$dir/data" $STORESCP_OPTS "$@" | tail -1)
  case $SCP_PID in ''|*[!0-9]*) log "storescp did not start: $SCP_PID"; SCP_PID=""; return 1;; esac
  wait_port "$SCP_PORT" "$SCP_PID" || { log "storescp did not listen"; cat "$dir/data.storescp.log" >&2; return 1; }
  AET=STORESCP; PORT=$SCP_PORT
  case " $STORESCP_OPTS " in *" --fork "*) RPID="";; *) RPID=$SCP_PID;; esac  # --fork: work is in children
  SCP_DATA=$dir/data
}
count_storescp() { find "$SCP_DATA" -type f | wc -l; }
stop_storescp() { stop_scp; }
start_storescp-sync() { start_storescp "$1" -xcr "sync -d #p/#f" -xs; }
count_storescp-sync() { count_storescp; }
stop_storescp-sync() { stop_scp; }

start_orthanc() {
  for p in "$ORTHANC_DICOM_PORT" "$ORTHANC_HTTP_PORT"; do port_open "$p" && { log "port $p already in use"; return 1; }; done
  "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1   # our own leftover only (private RENKEI_PEERS)
  ORTHANC_UP=1
  "$PEERS_DIR/start-orthanc.sh" --wipe >"$1/start-orthanc.log" 2>&1 || { cat "$1/start-orthanc.log" >&2; return 1; }
  wait_port "$ORTHANC_DICOM_PORT" || { log "Orthanc DICOM port not listening"; return 1; }
  AET=ORTHANC; PORT=$ORTHANC_DICOM_PORT; RPID=$(cat "$RENKEI_PEERS/orthanc/orthanc.pid" 2>/dev/null)
}
count_orthanc() {
  curl -s --max-time 10 "http://127.0.0.1:$ORTHANC_HTTP_PORT/statistics" | tr -d ' \n' |
    sed -n 's/.*"CountInstances":\([0-9][0-9]*\).*/\1/p'
}
stop_orthanc_t() { stop_orthanc; rm -rf "$RENKEI_PEERS/orthanc/storage" "$RENKEI_PEERS/orthanc/index"; }

# ---------------------------------------------------------------- 3. send
send() { # K RUNDIR: sets WALL (seconds); returns non-zero if any storescu failed or timed out.
  # Not run in a subshell, so the traps see SENDER_PIDS.
  local k=$1 dir=$2 i rc=0 t0 t1 dirs=()
  for i in $(seq 0 $((k - 1))); do dirs+=("$SET/split-$k/part$i"); done
  SENDER_PIDS=""
  local pids=()
  t0=$(now)
  for i in "${!dirs[@]}"; do
    timeout "$SEND_TIMEOUT" storescu -aet BENCHSCU -aec "$AET" -ta 120 +sd +r 127.0.0.1 "$PORT" "${dirs[$i]}" \
      >"$dir/storescu.$i.log" 2>&1 &
    pids+=($!)
  done
  SENDER_PIDS="${pids[*]}"
  for i in "${pids[@]}"; do wait "$i" || rc=1; done
  t1=$(now)
  SENDER_PIDS=""
  WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.3f", b - a}')
  return $rc
}

# ---------------------------------------------------------------- 4. run
RESULTS=$WORK/run/results.tsv   # target k wall inst/s MB/s rss_mib status
: >"$RESULTS"
FAILED=0
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for t in $TARGETS; do
  for k in $ASSOCS; do
    walls=""; rss="-"; status=ok
    for r in $(seq "$REPEAT"); do
      dir=$WORK/run/$t-a$k-r$r
      rm -rf "$dir"; mkdir -p "$dir"
      AET=""; PORT=""; RPID=""
      if ! "start_$t" "$dir"; then status="FAIL(start)"; "stop_${t/#orthanc/orthanc_t}" 2>/dev/null; break; fi
      log "$t: sending $N instances over $k association(s) to $AET@127.0.0.1:$PORT (run $r/$REPEAT)"
      if send "$k" "$dir"; then src=ok; else src=fail; fi; wall=$WALL
      got=$("count_$t"); got=${got:-0}
      if [ -n "$RPID" ] && [ -r "/proc/$RPID/status" ]; then
        r_rss=$(awk '/^VmHWM:/ {printf "%.0f", $2/1024}' "/proc/$RPID/status")
        if [ "$rss" = - ] || [ "${r_rss:-0}" -gt "$rss" ]; then rss=${r_rss:--}; fi   # max over repeats
      fi
      "stop_${t/#orthanc/orthanc_t}"
      if [ "$src" != ok ] || [ "$got" -ne "$N" ]; then
        status="FAIL(storescu=$src,stored=$got/$N)"
        log "$t x$k: $status — see $dir/storescu.*.log"; grep -h -m3 -iE 'error|fail|reject|abort' "$dir"/storescu.*.log >&2
        break
      fi
      log "$t x$k: $wall s, stored $got/$N, VmHWM ${rss} MiB"
      walls="$walls $wall"
      [ "$KEEP" = 1 ] || rm -rf "$dir/data"
    done
    if [ "$status" = ok ]; then
      wall=$(printf '%s\n' $walls | sort -g | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.3f", m}')
      ips=$(awk -v n="$N" -v w="$wall" 'BEGIN {printf "%.0f", n/w}')
      mbs=$(awk -v b="$BYTES" -v w="$wall" 'BEGIN {printf "%.0f", b/1e6/w}')
    else
      wall="-"; ips="-"; mbs="-"; FAILED=1
    fi
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$k" "$wall" "$ips" "$mbs" "$rss" "$status" >>"$RESULTS"
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- 5. report
label() {
  case $1 in
    renkei) echo "Renkei pacs-node";;
    storescp) echo "DCMTK storescp${STORESCP_OPTS:+ $STORESCP_OPTS} (files, no fsync)";;
    storescp-sync) echo "DCMTK storescp${STORESCP_OPTS:+ $STORESCP_OPTS} + sync -d per file";;
    orthanc) echo "Orthanc $(Orthanc --version 2>/dev/null | awk 'NR==1 {print $2}') (SQLite, SyncStorageArea)";;
  esac
}
rate() { awk -F'\t' -v t="$1" -v k="$2" '$1==t && $2==k {print $4}' "$RESULTS"; }
ratio() { # A B K
  local a b; a=$(rate "$1" "$3"); b=$(rate "$2" "$3")
  case "$a" in ''|-) echo "n/a"; return;; esac
  case "$b" in ''|-|0) echo "n/a"; return;; esac
  awk -v a="$a" -v b="$b" 'BEGIN {printf "%.2f", a/b}'
}
DCMTK_V=$(dpkg-query -W -f '${Version}' dcmtk 2>/dev/null || storescu --version 2>&1 | head -1)
echo
echo "## Ingest (C-STORE) — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- command: \`$CMDLINE\`"
echo "- set: $N instances, first one $(echo "$GEOM" | awk '{printf "%s×%s %s-bit %s", $1, $2, $3, $4}') ($(cat "$SET/generator")), $MB MB in total; sender: DCMTK $DCMTK_V storescu, TCP_NODELAY=1, loopback"
echo "- machine: $(nproc) cores ($(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM; load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
echo "- storescp has no fsync option (DCMTK $DCMTK_V): the plain storescp row does not fsync; Orthanc runs with SyncStorageArea=true"
[ "$REPEAT" -gt 1 ] && echo "- median of $REPEAT fresh runs"
echo
echo "| receiver | assocs | wall s | instances/s | MB/s | peak RSS MiB | result |"
echo "|---|---:|---:|---:|---:|---:|---|"
while IFS="$(printf '\t')" read -r t k wall ips mbs rss status; do
  echo "| $(label "$t") | $k | $wall | $ips | $mbs | $rss | $status |"
done <"$RESULTS"
echo
for k in $ASSOCS; do
  echo "- ratio at $k assoc(s): node/storescp $(ratio renkei storescp "$k"), node/Orthanc $(ratio renkei orthanc "$k")$(
    case " $TARGETS " in *" storescp-sync "*) echo ", node/storescp+sync $(ratio renkei storescp-sync "$k")";; esac)"
done
echo
echo "(results: $RESULTS; logs: $WORK/run/)"
exit $FAILED
