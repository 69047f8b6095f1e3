#!/usr/bin/env bash
# benches/dicomweb.sh — DICOMweb beside Orthanc's DICOMweb plugin (issue 5, point 5):
#   1. WADO-RS whole-study retrieval (GET /dicom-web/studies/{uid}, Accept: multipart/related;
#      type="application/dicom"; transfer-syntax=*) of one large CT study (LARGE_N instances of
#      512x512 16-bit from `renkei synth`), MB/s at WADO_CONC concurrent requests (curl, body
#      discarded), median of REPEAT rounds after one warm-up round; node and Orthanc alternate
#      within each round, so load changes on the machine hit both alike; also the time to the
#      first body byte and the server's CPU time (utime + stime) per 100 MB sent; and, at 1
#      request, ceilings: a minimal Python server sending the same files by sendfile(2), from an
#      mmap, or by read()+send() (what loopback, the kernel and curl allow on this machine);
#   2. QIDO-RS requests/s and latency (wrk, keep-alive) at QIDO_CONC connections for
#      /studies?PatientID=X and /studies?PatientName=S*&limit=25, on several hundred studies
#      (renkei-gen-index files) plus the large one;
#   3. memory: the servers' RSS idle (just restarted on the loaded data, before any request)
#      and peak while streaming the large study (VmRSS sampled every 50 ms, and VmHWM after a
#      reset of the high-water mark through /proc/PID/clear_refs).
# Both servers are loaded over C-STORE with the same files, then restarted, and run side by side
# (the idle one takes no CPU). Both read their blobs from the page cache (just written).
# curl and wrk send no Accept-Encoding: the identity (uncompressed) answers are measured.
# Takes about 2.5 minutes with the defaults on 2 cores; disk: about 3x the large study in WORK.
# Usage: benches/dicomweb.sh                      (BIN=/tmp/rbin benches/dicomweb.sh)
# Environment (defaults in brackets):
#   LARGE_N [800]           instances of the large study (≈ 0.52 MB each); PER_SERIES [200]
#   QIDO_PATIENTS [250]     x QIDO_STUDIES [4] studies x QIDO_INSTANCES [4] instances (8x8 pixels)
#   REPEAT [5]              WADO-RS rounds per concurrency (median reported; one more for warm-up)
#   WADO_CONC ["1 4"]       concurrent whole-study requests
#   QIDO_CONC ["1 16"]      wrk connections;  QIDO_SECONDS [10] per (query, connections, server)
#   QIDO_NAME ["S*"]        the PatientName prefix of the second query (more than 25 matches)
#   TARGETS ["renkei orthanc"]   drop orthanc for the node alone
#   PROBES ["sendfile mmap copy"]  loopback ceilings at 1 request (python3 servers; empty: none)
#   CARGO_TARGET_DIR [$HOME/.cache/renkei/target]  BIN [$CARGO_TARGET_DIR/release]
#                           (pacs-node, renkei, renkei-gen-index)
#   WORK [/tmp/renkei-dicomweb]  generated files are cached there; the servers' data is removed
#                           at the end unless KEEP=1
#   PEERS_DIR [<repo>/../shared/peers]  PEERS_SHIM [/tmp/renkei-peers/bindlo.so]
#   NODE_PORT [21312] NODE_HTTP [28280] ORTHANC_DICOM_PORT [24342] ORTHANC_HTTP_PORT [28142]
#   PROBE_PORT [28291] (and the next two)
# Needs: curl, wrk (Debian package `wrk`), DCMTK (dcmdump), Orthanc with orthanc-dicomweb.
# Access: when the node writes DATA/admin.token (bearer tokens on every route but /healthz),
# every request to it carries `Authorization: Bearer <token>`; no header otherwise.
# Exit status: 0 when every check passed, 1 when a measurement failed, 2 on setup errors.
set -u
export LC_ALL=C.UTF-8
export TCP_NODELAY=1

LARGE_N=${LARGE_N:-800}
PER_SERIES=${PER_SERIES:-200}
QIDO_PATIENTS=${QIDO_PATIENTS:-250}
QIDO_STUDIES=${QIDO_STUDIES:-4}
QIDO_INSTANCES=${QIDO_INSTANCES:-4}
REPEAT=${REPEAT:-5}
WADO_CONC=${WADO_CONC:-1 4}
QIDO_CONC=${QIDO_CONC:-1 16}
QIDO_SECONDS=${QIDO_SECONDS:-10}
QIDO_NAME=${QIDO_NAME:-S*}
TARGETS=${TARGETS:-renkei orthanc}
PROBES=${PROBES-sendfile mmap copy}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
WORK=${WORK:-/tmp/renkei-dicomweb}
KEEP=${KEEP:-0}
REPO=$(cd "$(dirname "$0")/.." && pwd)
PEERS_DIR=${PEERS_DIR:-$REPO/../shared/peers}
PEERS_SHIM=${PEERS_SHIM:-/tmp/renkei-peers/bindlo.so}
NODE_PORT=${NODE_PORT:-21312}
NODE_HTTP=${NODE_HTTP:-28280}
PROBE_PORT=${PROBE_PORT:-28291}
export ORTHANC_DICOM_PORT=${ORTHANC_DICOM_PORT:-24342}
export ORTHANC_HTTP_PORT=${ORTHANC_HTTP_PORT:-28142}
export ORTHANC_SYNC=false   # load speed is not measured here
# start-orthanc.sh / stop-orthanc.sh keep their state in $RENKEI_PEERS/orthanc: a private one
export RENKEI_PEERS=$WORK/peers
ACCEPT_DICOM='multipart/related; type="application/dicom"; transfer-syntax=*'
ACCEPT_JSON='application/dicom+json'

CMDLINE="LARGE_N=$LARGE_N QIDO_PATIENTS=$QIDO_PATIENTS REPEAT=$REPEAT WADO_CONC=\"$WADO_CONC\" QIDO_CONC=\"$QIDO_CONC\" QIDO_SECONDS=$QIDO_SECONDS BIN=$BIN"
[ "$TARGETS" != "renkei orthanc" ] && CMDLINE="$CMDLINE TARGETS=\"$TARGETS\""
[ "$PROBES" != "sendfile mmap copy" ] && CMDLINE="$CMDLINE PROBES=\"$PROBES\""
CMDLINE="$CMDLINE $0${*:+ $*}"

log() { printf '[dicomweb] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }
port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
num() { case $2 in ''|*[!0-9]*) die "$1 must be a number";; esac; }
num LARGE_N "$LARGE_N"; num PER_SERIES "$PER_SERIES"; num REPEAT "$REPEAT"; num QIDO_SECONDS "$QIDO_SECONDS"
num QIDO_PATIENTS "$QIDO_PATIENTS"; num QIDO_STUDIES "$QIDO_STUDIES"; num QIDO_INSTANCES "$QIDO_INSTANCES"
for k in $WADO_CONC $QIDO_CONC; do num "a concurrency" "$k"; done
[ "$REPEAT" -ge 1 ] && [ "$LARGE_N" -ge 1 ] && [ "$PER_SERIES" -ge 1 ] || die "REPEAT, LARGE_N, PER_SERIES must be >= 1"

# ---------------------------------------------------------------- checks
command -v curl >/dev/null 2>&1 || die "curl not found (apt-get install curl)"
command -v wrk >/dev/null 2>&1 || die "wrk not found: apt-get install wrk (Debian package; scripts/setup.sh should install it)"
command -v dcmdump >/dev/null 2>&1 || die "dcmdump not found (run $PEERS_DIR/setup.sh)"
for b in pacs-node renkei renkei-gen-index; do
  [ -x "$BIN/$b" ] || die "$BIN/$b missing: cargo build --release -p pacs-node -p renkei-tools -p renkei-benches (or set BIN)"
done
for t in $TARGETS; do
  case $t in
    renkei) ;;
    orthanc) command -v Orthanc >/dev/null 2>&1 || die "Orthanc not installed (run $PEERS_DIR/setup.sh)"
             [ -f /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] || die "orthanc-dicomweb not installed (run $PEERS_DIR/setup.sh)"
             [ -f "$PEERS_SHIM" ] || die "no $PEERS_SHIM (run $PEERS_DIR/setup.sh)";;
    *) die "unknown target '$t' (renkei orthanc)";;
  esac
done
mkdir -p "$WORK" "$RENKEI_PEERS" || die "cannot create $WORK"
[ -e "$RENKEI_PEERS/bindlo.so" ] || ln -sf "$PEERS_SHIM" "$RENKEI_PEERS/bindlo.so"

# ---------------------------------------------------------------- cleanup
NODE_PID=""; ORTHANC_UP=""; SAMPLER_PID=""
stop_node() {
  local i
  [ -n "$NODE_PID" ] || return 0
  kill "$NODE_PID" 2>/dev/null
  for i in $(seq 100); do kill -0 "$NODE_PID" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$NODE_PID" 2>/dev/null; wait "$NODE_PID" 2>/dev/null
  NODE_PID=""
}
stop_orthanc() { [ -n "$ORTHANC_UP" ] && "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1; ORTHANC_UP=""; }
PROBE_PIDS=""
stop_probes() { local p; for p in $PROBE_PIDS; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done; PROBE_PIDS=""; }
stop_sampler() { [ -n "$SAMPLER_PID" ] && kill "$SAMPLER_PID" 2>/dev/null && wait "$SAMPLER_PID" 2>/dev/null; SAMPLER_PID=""; }
cleanup() {
  stop_sampler; stop_probes; stop_node; stop_orthanc
  if [ "$KEEP" != 1 ]; then rm -rf "$NODE_DATA" "$RENKEI_PEERS/orthanc/storage" "$RENKEI_PEERS/orthanc/index"; fi
}
NODE_DATA=$WORK/node-data
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- 1. data
QIDO_SET=$WORK/qido-p$QIDO_PATIENTS-s$QIDO_STUDIES-i$QIDO_INSTANCES
if [ ! -f "$QIDO_SET/keys.json" ] || [ ! -d "$QIDO_SET/dicom" ]; then
  rm -rf "$QIDO_SET"
  log "writing $((QIDO_PATIENTS * QIDO_STUDIES * QIDO_INSTANCES)) small files into $QIDO_SET"
  "$BIN/renkei-gen-index" --files "$QIDO_SET" --patients "$QIDO_PATIENTS" \
    --studies-per-patient "$QIDO_STUDIES" --instances-per-study "$QIDO_INSTANCES" >&2 || die "renkei-gen-index failed"
fi
LARGE_SET=$WORK/large-n$LARGE_N-s$PER_SERIES
if [ ! -f "$LARGE_SET/.complete" ]; then
  rm -rf "$LARGE_SET"
  log "writing the large study: $LARGE_N CT instances into $LARGE_SET"
  "$BIN/renkei" synth --out "$LARGE_SET/dicom" --count "$LARGE_N" --per-series "$PER_SERIES" \
    --series-per-study $(( (LARGE_N + PER_SERIES - 1) / PER_SERIES )) --seed 5 >"$WORK/synth.log" 2>&1 \
    || { tail -3 "$WORK/synth.log" >&2; die "renkei synth failed"; }
  touch "$LARGE_SET/.complete"
fi
key() { sed -n "s/.*\"$1\": \"\(.*\)\".*/\1/p" "$QIDO_SET/keys.json"; }
PATIENT_ID=$(key patient_id)
FIRST_LARGE=$(find "$LARGE_SET/dicom" -type f -name '*.dcm' | sort | head -1)
LARGE_STUDY=$(dcmdump +P StudyInstanceUID "$FIRST_LARGE" | sed -n 's/.*\[\(.*\)\].*/\1/p' | head -1)
LARGE_GEOM=$(dcmdump +P Rows +P Columns +P BitsAllocated +P TransferSyntaxUID "$FIRST_LARGE" 2>/dev/null | awk '{print $3}' | paste -sd' ')
LARGE_FILES=$(find "$LARGE_SET/dicom" -type f -name '*.dcm' | wc -l)
LARGE_BYTES=$(find "$LARGE_SET/dicom" -type f -name '*.dcm' -printf '%s\n' | awk '{s+=$1} END {printf "%d", s}')
[ -n "$LARGE_STUDY" ] || die "no StudyInstanceUID in $FIRST_LARGE"
[ "$LARGE_FILES" -eq "$LARGE_N" ] || die "$LARGE_SET holds $LARGE_FILES files, not $LARGE_N"
N_QIDO=$((QIDO_PATIENTS * QIDO_STUDIES * QIDO_INSTANCES))
N_ALL=$((N_QIDO + LARGE_N))
log "large study $LARGE_STUDY: $LARGE_N files, $LARGE_BYTES bytes ($LARGE_GEOM)"

# ---------------------------------------------------------------- servers
# Per target: base URL, curl/wrk header arguments, PID.
base_url() { case $1 in renkei) echo "http://127.0.0.1:$NODE_HTTP/dicom-web";; orthanc) echo "http://127.0.0.1:$ORTHANC_HTTP_PORT/dicom-web";; esac; }
# the URL of the large study; a probe answers any GET with the study's files
study_url() {
  case $1 in
    sendfile) echo "http://127.0.0.1:$PROBE_PORT/";;
    mmap) echo "http://127.0.0.1:$((PROBE_PORT + 1))/";;
    copy) echo "http://127.0.0.1:$((PROBE_PORT + 2))/";;
    *) echo "$(base_url "$1")/studies/$LARGE_STUDY";;
  esac
}
AUTH_renkei=""; AUTH_orthanc=""
auth_of() { local v="AUTH_$1"; printf '%s' "${!v:-}"; }
# hdr TARGET: sets HDR (array of -H arguments, the bearer token when the node has one)
hdr() { HDR=(); local a; a=$(auth_of "$1"); [ -n "$a" ] && HDR=(-H "Authorization: Bearer $a"); return 0; }
pid_of() {
  case $1 in
    renkei) echo "$NODE_PID";;
    orthanc) cat "$RENKEI_PEERS/orthanc/orthanc.pid" 2>/dev/null;;
    *) local v="PROBE_PID_$1"; echo "${!v:-}";;
  esac
}

start_node() {
  local i
  for p in "$NODE_PORT" "$NODE_HTTP"; do port_open "$p" && die "port $p is already in use"; done
  "$BIN/pacs-node" serve --data-dir "$NODE_DATA" --ae-title BENCH --dicom-port "$NODE_PORT" \
    --http-port "$NODE_HTTP" >>"$WORK/node.log" 2>&1 &
  NODE_PID=$!
  for i in $(seq 300); do
    curl -sf --max-time 2 "http://127.0.0.1:$NODE_HTTP/healthz" >/dev/null 2>&1 && port_open "$NODE_PORT" && break
    kill -0 "$NODE_PID" 2>/dev/null || { tail -20 "$WORK/node.log" >&2; die "pacs-node exited"; }
    sleep 0.1
  done
  port_open "$NODE_PORT" || die "pacs-node did not come up"
  AUTH_renkei=""
  [ -s "$NODE_DATA/admin.token" ] && AUTH_renkei=$(tr -d ' \r\n' <"$NODE_DATA/admin.token")
  return 0
}
start_orthanc() { # [--wipe]
  "$PEERS_DIR/start-orthanc.sh" "$@" >>"$WORK/orthanc.log" 2>&1 || { tail -20 "$WORK/orthanc.log" >&2; die "Orthanc did not start"; }
  ORTHANC_UP=1
  local i; for i in $(seq 100); do port_open "$ORTHANC_DICOM_PORT" && return 0; sleep 0.1; done
  die "Orthanc's DICOM port is not listening"
}
count_of() {
  hdr "$1"
  case $1 in
    renkei) curl -s --max-time 10 "${HDR[@]}" "http://127.0.0.1:$NODE_HTTP/api/statistics" | tr -d ' \n' |
              sed -n 's/.*"instances":\([0-9][0-9]*\).*/\1/p';;
    orthanc) curl -s --max-time 10 "http://127.0.0.1:$ORTHANC_HTTP_PORT/statistics" | tr -d ' \n' |
              sed -n 's/.*"CountInstances":\([0-9][0-9]*\).*/\1/p';;
  esac
}
load() { # TARGET AE PORT: store both sets, check the count
  local t=$1 ae=$2 port=$3 set t0 got
  t0=$(date +%s)
  for set in "$QIDO_SET/dicom" "$LARGE_SET/dicom"; do
    "$BIN/renkei" store 127.0.0.1 "$port" -aec "$ae" -j 2 "$set" >"$WORK/store-$t.log" 2>&1 \
      || { tail -3 "$WORK/store-$t.log" >&2; die "store to $t failed"; }
  done
  got=$(count_of "$t")
  [ "${got:-0}" -eq "$N_ALL" ] || die "$t holds ${got:-0} instances after loading, not $N_ALL"
  log "$t: $N_ALL instances loaded in $(( $(date +%s) - t0 )) s"
}

# ---------------------------------------------------------------- 2. load, restart
rm -rf "$NODE_DATA"; : >"$WORK/node.log"; : >"$WORK/orthanc.log"
for t in $TARGETS; do
  case $t in
    renkei) start_node; load renkei BENCH "$NODE_PORT"; stop_node; start_node;;
    orthanc) "$PEERS_DIR/stop-orthanc.sh" >/dev/null 2>&1   # our own leftover only (private RENKEI_PEERS)
             start_orthanc --wipe; load orthanc ORTHANC "$ORTHANC_DICOM_PORT"; stop_orthanc; start_orthanc;;
  esac
done
[ -n "$AUTH_renkei" ] && log "the node has an admin token: requests carry it"
xargs -0 cat < <(find "$NODE_DATA" "$RENKEI_PEERS/orthanc/storage" -type f -print0 2>/dev/null) >/dev/null 2>&1

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status" 2>/dev/null; }
reset_hwm() { echo 5 >"/proc/$1/clear_refs" 2>/dev/null; }
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)
cpu_ms() { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | awk -v hz="$CLK_TCK" '{printf "%d", ($12 + $13) * 1000 / hz}'; }
declare -A IDLE PEAK HWM
for t in $TARGETS; do IDLE[$t]=$(rss_kib "$(pid_of "$t")"); done
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
FAILED=0

# ---------------------------------------------------------------- 3. WADO-RS
# Ceiling probes (at 1 request only): a minimal single-threaded Python server that answers
# every GET with the large study's files back to back (no multipart framing), by sendfile(2)
# (no copy in the server), by send() from an mmap of each file (one copy: into the socket), or
# by read() + send() of 256 KiB (two copies, as a server that reads files into buffers does).
# What the loopback, the kernel and curl allow on this machine.
cat >"$WORK/probe.py" <<'PY'
import glob, mmap, os, socket, sys
mode, port, folder = sys.argv[1], int(sys.argv[2]), sys.argv[3]
files = sorted(glob.glob(os.path.join(folder, "**", "*.dcm"), recursive=True))
total = sum(os.path.getsize(f) for f in files)
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", port))
srv.listen(8)
srv.settimeout(900)  # ends by itself when nobody asks for 15 minutes
while True:
    try:
        c, _ = srv.accept()
    except socket.timeout:
        break
    c.settimeout(None)
    req = b""
    while b"\r\n\r\n" not in req:
        d = c.recv(65536)
        if not d:
            break
        req += d
    c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
              b"Content-Length: %d\r\nConnection: close\r\n\r\n" % total)
    try:
        for f in files:
            with open(f, "rb") as h:
                if mode == "sendfile":
                    c.sendfile(h)
                elif mode == "mmap":
                    with mmap.mmap(h.fileno(), 0, prot=mmap.PROT_READ) as m:
                        c.sendall(m)
                else:
                    while True:
                        b = h.read(262144)
                        if not b:
                            break
                        c.sendall(b)
    except OSError:
        pass
    c.close()
PY
probe_port() { study_url "$1" | sed 's/.*:\([0-9]*\)\/$/\1/'; }
PROBES_ON=""
if [ -n "$PROBES" ] && [[ " $WADO_CONC " == *" 1 "* ]]; then
  command -v python3 >/dev/null 2>&1 || die "python3 not found (needed by PROBES; PROBES= skips them)"
  for m in $PROBES; do
    case $m in sendfile|mmap|copy) ;; *) die "unknown probe '$m' (sendfile mmap copy)";; esac
    port_open "$(probe_port "$m")" && die "probe port of $m is already in use"
    python3 "$WORK/probe.py" "$m" "$(probe_port "$m")" "$LARGE_SET/dicom" >"$WORK/probe-$m.log" 2>&1 &
    printf -v "PROBE_PID_$m" '%s' "$!"
    PROBE_PIDS="$PROBE_PIDS $!"
  done
  for m in $PROBES; do
    for i in $(seq 100); do port_open "$(probe_port "$m")" && break; sleep 0.1; done
  done
  PROBES_ON=$PROBES
fi

# sampler PID OUT: writes the highest VmRSS (KiB) seen, every 50 ms, until killed
sampler() {
  local pid=$1 out=$2 peak=0 k v rest
  while :; do
    while read -r k v rest; do
      [ "$k" = VmRSS: ] && { [ "$v" -gt "$peak" ] && { peak=$v; echo "$peak" >"$out"; }; break; }
    done <"/proc/$pid/status" 2>/dev/null || break
    sleep 0.05
  done
}
# check_study TARGET: parts and bytes of one whole-study answer
check_study() {
  local t=$1 url parts
  hdr "$t"; url="$(base_url "$t")/studies/$LARGE_STUDY"
  parts=$(curl -s --max-time 600 "${HDR[@]}" -H "Accept: $ACCEPT_DICOM" "$url" | LC_ALL=C grep -a -c -i '^content-type: *application/dicom')
  echo "${parts:-0}"
}
# wado TARGET K: K concurrent whole-study requests; prints "bytes wall_s ok ttfb_ms"
# (ttfb: mean over the K requests of the time to the first byte of the body)
wado() {
  local t=$1 k=$2 url i t0 t1 ok=1 bytes=0 code size first ttfb=0
  hdr "$t"; url=$(study_url "$t")
  local pids=()
  t0=$(date +%s.%N)
  for i in $(seq "$k"); do
    curl -s --max-time 600 -o /dev/null -w '%{http_code} %{size_download} %{time_starttransfer}\n' "${HDR[@]}" \
      -H "Accept: $ACCEPT_DICOM" "$url" >"$WORK/wado.$i.out" 2>&1 &
    pids+=($!)
  done
  for i in "${pids[@]}"; do wait "$i" || ok=0; done
  t1=$(date +%s.%N)
  for i in $(seq "$k"); do
    read -r code size first <"$WORK/wado.$i.out" || { ok=0; continue; }
    [ "$code" = 200 ] || ok=0
    bytes=$((bytes + ${size%.*}))
    ttfb=$(awk -v a="$ttfb" -v f="$first" -v k="$k" 'BEGIN {printf "%.1f", a + f * 1000 / k}')
  done
  printf '%s %s %s %s\n' "$bytes" "$(awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.4f", b - a}')" "$ok" "$ttfb"
}
median() { sort -g | awk '{a[NR]=$1} END {if (NR == 0) {print "-"; exit} m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%.1f", m}'; }

declare -A PARTS END_RSS
for t in $TARGETS; do
  PARTS[$t]=$(check_study "$t")
  [ "${PARTS[$t]}" -eq "$LARGE_N" ] || { log "$t: whole study answered with ${PARTS[$t]} parts, not $LARGE_N"; FAILED=1; }
done
WADO_TSV=$WORK/wado.tsv   # target k round bytes wall MB/s ttfb_ms server_cpu_ms
: >"$WADO_TSV"
for k in $WADO_CONC; do
  ROUND_TARGETS=$TARGETS
  [ "$k" = 1 ] && ROUND_TARGETS="$TARGETS $PROBES_ON"
  for t in $ROUND_TARGETS; do reset_hwm "$(pid_of "$t")"; : >"$WORK/peak-$t-$k"; done
  for r in $(seq 0 "$REPEAT"); do
    for t in $ROUND_TARGETS; do
      pid=$(pid_of "$t")
      sampler "$pid" "$WORK/peak-$t-$k.r" & SAMPLER_PID=$!
      c0=$(cpu_ms "$pid")
      read -r bytes wall ok ttfb < <(wado "$t" "$k")
      c1=$(cpu_ms "$pid")
      stop_sampler
      cpu=$(( ${c1:-0} - ${c0:-0} ))
      p=$(cat "$WORK/peak-$t-$k.r" 2>/dev/null); q=$(cat "$WORK/peak-$t-$k" 2>/dev/null)
      [ "${p:-0}" -gt "${q:-0}" ] && echo "$p" >"$WORK/peak-$t-$k"
      mbs=$(awk -v b="$bytes" -v w="$wall" 'BEGIN {printf "%.1f", b / 1e6 / w}')
      [ "$ok" = 1 ] || { log "$t x$k round $r: a request failed"; FAILED=1; mbs=-; }
      w=""; [ "$r" = 0 ] && w=" (warm-up)"
      log "$t x$k round $r$w: $bytes bytes in $wall s = $mbs MB/s, first byte after $ttfb ms, server CPU $cpu ms"
      [ "$r" -gt 0 ] && printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$t" "$k" "$r" "$bytes" "$wall" "$mbs" "$ttfb" "$cpu" >>"$WADO_TSV"
    done
  done
  for t in $ROUND_TARGETS; do
    PEAK[$t-$k]=$(cat "$WORK/peak-$t-$k" 2>/dev/null); HWM[$t-$k]=$(hwm_kib "$(pid_of "$t")")
  done
done
stop_probes

# ---------------------------------------------------------------- 4. QIDO-RS
QIDO_TSV=$WORK/qido.tsv   # query target k req/s p50_ms p99_ms matches status
: >"$QIDO_TSV"
QUERIES=("studies?PatientID=$PATIENT_ID" "studies?PatientName=$QIDO_NAME&limit=25")
matches() { # TARGET PATH: number of results
  hdr "$1"
  curl -s --max-time 30 "${HDR[@]}" -H "Accept: $ACCEPT_JSON" "$(base_url "$1")/$2" | grep -o '"0020000D"' | wc -l
}
ms() { # wrk latency (e.g. 1.23ms, 850.00us, 1.02s) in ms
  awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /m$/) n *= 60000; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'
}
for q in "${QUERIES[@]}"; do
  for k in $QIDO_CONC; do
    for t in $TARGETS; do
      m=$(matches "$t" "$q")
      hdr "$t"
      threads=$(( k < 2 ? 1 : 2 ))
      out=$(wrk -t "$threads" -c "$k" -d "${QIDO_SECONDS}s" --latency --timeout 10s "${HDR[@]}" \
        -H "Accept: $ACCEPT_JSON" "$(base_url "$t")/$q" 2>&1)
      rps=$(printf '%s\n' "$out" | awk '/^Requests\/sec:/ {print $2}')
      p50=$(printf '%s\n' "$out" | awk '$1 == "50%" {print $2}')
      p99=$(printf '%s\n' "$out" | awk '$1 == "99%" {print $2}')
      bad=$(printf '%s\n' "$out" | awk '/Non-2xx or 3xx responses:/ {print $NF} /Socket errors:/ {print "socket"}')
      status=ok
      if [ -n "$bad" ] || [ -z "$rps" ] || [ "$m" -eq 0 ]; then
        status="FAIL(${bad:-no result})"; FAILED=1; log "$t $q x$k: $out"
      fi
      log "$t $q x$k: $rps req/s, p50 $p50, p99 $p99, $m matches"
      printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$q" "$t" "$k" "${rps:--}" "$(ms "${p50:-0}")" "$(ms "${p99:-0}")" "$m" "$status" >>"$QIDO_TSV"
    done
  done
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
for t in $TARGETS; do END_RSS[$t]=$(rss_kib "$(pid_of "$t")"); done 2>/dev/null

# ---------------------------------------------------------------- 5. report
label() { case $1 in sendfile) echo "ceiling: sendfile(2), Python, no framing";; mmap) echo "ceiling: send() from mmap, Python, no framing";; copy) echo "ceiling: read()+send() 256 KiB, Python, no framing";; renkei) echo "Renkei pacs-node";; orthanc) echo "Orthanc $(dpkg-query -W -f '${Version}' orthanc 2>/dev/null | cut -d+ -f1) + DICOMweb plugin $(dpkg-query -W -f '${Version}' orthanc-dicomweb 2>/dev/null | cut -d+ -f1)";; esac; }
wado_stat() { # TARGET K: median min max MB/s, median time to first byte ms, server CPU ms per 100 MB
  local v f c
  v=$(awk -F'\t' -v t="$1" -v k="$2" '$1==t && $2==k && $6!="-" {print $6}' "$WADO_TSV")
  f=$(awk -F'\t' -v t="$1" -v k="$2" '$1==t && $2==k && $6!="-" {print $7}' "$WADO_TSV")
  c=$(awk -F'\t' -v t="$1" -v k="$2" '$1==t && $2==k && $6!="-" && $4 > 0 {printf "%.1f\n", $8 * 1e8 / $4}' "$WADO_TSV")
  printf '%s %s %s %s %s\n' "$(printf '%s\n' $v | median)" "$(printf '%s\n' $v | sort -g | head -1)" "$(printf '%s\n' $v | sort -g | tail -1)" "$(printf '%s\n' $f | median)" "$(printf '%s\n' $c | median)"
}
mib() { awk -v k="$1" 'BEGIN { if (k == "" || k == "-") print "-"; else printf "%.1f", k / 1024 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || a == "" || b == "" || b + 0 == 0) print "n/a"; else printf "%.2f", a / b }'; }

echo
echo "## DICOMweb — $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "- command: \`$CMDLINE\`"
echo "- large study: $LARGE_N CT instances ($(echo "$LARGE_GEOM" | awk '{printf "%s×%s %s-bit %s", $1, $2, $3, $4}'), renkei synth, $PER_SERIES per series), $(awk -v b="$LARGE_BYTES" 'BEGIN {printf "%.1f", b/1e6}') MB of files; QIDO set: $((QIDO_PATIENTS * QIDO_STUDIES)) studies of $QIDO_INSTANCES instances (renkei-gen-index) + the large study; both servers loaded over C-STORE with the same files, then restarted; blobs in the page cache"
echo "- WADO-RS: \`GET /dicom-web/studies/{uid}\`, Accept \`$ACCEPT_DICOM\`, curl $(curl --version | awk 'NR==1 {print $2}') to /dev/null, MB/s = body bytes / 1e6 / wall time of the K requests; median of $REPEAT rounds after a warm-up, servers alternating within a round; every answer checked for $LARGE_N parts once; first byte: curl's time_starttransfer; server CPU: utime + stime of the server process during the round (${CLK_TCK} Hz ticks) per 100 MB sent"
[ -n "$PROBES_ON" ] && echo "- ceiling rows (1 request): a single-threaded Python server sending the same files back to back, by sendfile(2) (no copy in the server), send() from an mmap (one copy) or read()+send() (two copies); what loopback and curl allow here"
echo "- QIDO-RS: wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}') (keep-alive), ${QIDO_SECONDS} s per row, 1 thread for 1 connection and 2 threads otherwise, Accept \`$ACCEPT_JSON\`; the client shares the 2 cores with the server"
echo "- machine: $(nproc) cores ($(awk -F': *' '/^model name/ {print $2; exit}' /proc/cpuinfo)), $(free -g | awk '/^Mem:/ {print $2}') GiB RAM; load average before/after: $LOAD_BEFORE / $LOAD_AFTER"
[ -n "$AUTH_renkei" ] && echo "- the node's requests carried its admin bearer token"
echo
echo "### WADO-RS whole study"
echo
echo "| server | concurrent | median MB/s | min | max | first byte ms | server CPU ms per 100 MB | peak RSS sampled MiB | VmHWM MiB |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
for k in $WADO_CONC; do
  ROUND_TARGETS=$TARGETS
  [ "$k" = 1 ] && ROUND_TARGETS="$TARGETS $PROBES_ON"
  for t in $ROUND_TARGETS; do
    read -r med mn mx fb cpu < <(wado_stat "$t" "$k")
    echo "| $(label "$t") | $k | $med | $mn | $mx | $fb | $cpu | $(mib "${PEAK[$t-$k]:-}") | $(mib "${HWM[$t-$k]:-}") |"
  done
done
if [[ " $TARGETS " == *" renkei "* && " $TARGETS " == *" orthanc "* ]]; then
  echo
  for k in $WADO_CONC; do
    a=$(wado_stat renkei "$k" | cut -d' ' -f1); b=$(wado_stat orthanc "$k" | cut -d' ' -f1)
    ca=$(wado_stat renkei "$k" | cut -d' ' -f5); cb=$(wado_stat orthanc "$k" | cut -d' ' -f5)
    echo "- node ÷ Orthanc MB/s at $k concurrent: **$(ratio "$a" "$b")×** (target ≥ 3); Orthanc ÷ node server CPU per byte: $(ratio "$cb" "$ca")×"
  done
fi
echo
echo "### QIDO-RS"
echo
echo "| query | server | connections | matches | requests/s | p50 ms | p99 ms | result |"
echo "|---|---|---:|---:|---:|---:|---:|---|"
while IFS="$(printf '\t')" read -r q t k rps p50 p99 m status; do
  echo "| \`$q\` | $(label "$t") | $k | $m | $rps | $p50 | $p99 | $status |"
done <"$QIDO_TSV"
if [[ " $TARGETS " == *" renkei "* && " $TARGETS " == *" orthanc "* ]]; then
  echo
  for q in "${QUERIES[@]}"; do
    for k in $QIDO_CONC; do
      a=$(awk -F'\t' -v q="$q" -v k="$k" '$1==q && $2=="renkei" && $3==k {print $4}' "$QIDO_TSV")
      b=$(awk -F'\t' -v q="$q" -v k="$k" '$1==q && $2=="orthanc" && $3==k {print $4}' "$QIDO_TSV")
      echo "- \`$q\`, $k connection(s): node ÷ Orthanc requests/s **$(ratio "$a" "$b")×**"
    done
  done
fi
echo
echo "### Memory"
echo
echo "| server | idle RSS MiB (restarted, before any request) | $(for k in $WADO_CONC; do printf 'peak while streaming ×%s MiB | ' "$k"; done)RSS at the end MiB |"
echo "|---|---:|$(for k in $WADO_CONC; do printf -- '---:|'; done)---:|"
for t in $TARGETS; do
  echo "| $(label "$t") | $(mib "${IDLE[$t]:-}") | $(for k in $WADO_CONC; do printf '%s | ' "$(mib "${PEAK[$t-$k]:-}")"; done)$(mib "${END_RSS[$t]:-}") |"
done
echo
echo "(peak: VmRSS sampled every 50 ms over all rounds of that concurrency; results: $WADO_TSV, $QIDO_TSV; logs: $WORK)"
exit $FAILED
