#!/usr/bin/env bash
# benches/pixels.sh — decode and encode speed of the pixel pipeline, per transfer syntax, on the
# corpus's larger images, side by side with DCMTK (dcmdjpeg, dcmdjpls, dcmdrle, dcmcjpeg,
# dcmcjpls, dcmcrle) and OpenJPEG (opj_decompress, opj_compress).
#
# Two kinds of figures, never mixed in one ratio:
#   command     whole commands, timed from the shell: `renkei transcode IN OUT --ts X` against the
#               peer's command on the same image. Both pay process start, reading the input and
#               writing the output (a DICOM file; for OpenJPEG, which knows no DICOM, the bare
#               J2K codestream in and little-endian raw samples out, or the reverse). The ratio
#               renkei ÷ peer compares these two: above 1, renkei is faster.
#   in-process  renkei's codec alone: `renkei-bench-pixels decode|encode` parses the file once and
#               times decode_all / encode_frames repeated in one process (no start, no I/O). DCMTK
#               and OpenJPEG have no such mode here; the column shows how much of renkei's command
#               time is the codec.
# Every figure is the median of REPEAT runs after one warm-up run, as frames per second. The
# renkei and peer commands of a row run alternately (r p r p ...), so a change of load during the
# row weighs on both sides of its ratio.
# Everything runs on one thread: DCMTK's codecs and renkei's are single-threaded, OpenJPEG is
# given `-threads 1`.
#
# Inputs: testdata/corpus/valid RG3_UNCR (CR 1760x1760, 16 bits allocated, 10 stored), MR2_UNCR
# (1024x1024, 12 stored), their J2K lossless files (RG3_J2KR, MR2_J2KR; third-party encoders) and
# MR2_J2KI (J2K lossy); JPEG-LS, RLE and JPEG lossless (process 14 SV1) versions of RG3/MR2 made
# with DCMTK (dcmcjpls, dcmcrle, dcmcjpeg defaults), so that renkei decodes someone else's streams;
# JPGLosslessP14SV1_1s_1f_8b (1024x768, 8-bit) decoded, then made baseline JPEG by dcmcjpeg +eb;
# examples_ybr_color (30 frames 320x240 YBR_FULL_422 baseline JPEG). Encoding: RG3/MR2 to RLE,
# JPEG-LS and J2K; the 8-bit image to baseline JPEG quality 90 (dcmcjpeg with standard Huffman
# tables, -ho, as renkei's encoder uses).
#
# Usage:  benches/pixels.sh
# Environment (defaults in brackets):
#   REPEAT [5]                 timed runs per figure (after one warm-up)
#   CARGO_TARGET_DIR [$HOME/.cache/renkei/target];  BIN [$CARGO_TARGET_DIR/release]
#                              needs $BIN/renkei and $BIN/renkei-bench-pixels:
#                              cargo build --release -p renkei-tools -p renkei-benches
#   WORK [/tmp/renkei-bench-pixels]   prepared inputs ($WORK/in, kept) and outputs ($WORK/out)
#   CORPUS [<repo>/testdata/corpus/valid]
#   ONLY []                    run only rows whose label matches this grep -E pattern
# Prints the command line, then a markdown table. Exit status: 0 if every command succeeded,
# 1 if one failed (its row says so), 2 on setup errors.
set -u
export LC_ALL=C

REPEAT=${REPEAT:-5}
CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/renkei/target}
BIN=${BIN:-$CARGO_TARGET_DIR/release}
WORK=${WORK:-/tmp/renkei-bench-pixels}
REPO=$(cd "$(dirname "$0")/.." && pwd)
CORPUS=${CORPUS:-$REPO/testdata/corpus/valid}
ONLY=${ONLY:-}
RENKEI=$BIN/renkei
BENCH=$BIN/renkei-bench-pixels

CMDLINE="REPEAT=$REPEAT BIN=$BIN WORK=$WORK${ONLY:+ ONLY=\"$ONLY\"} $0${*:+ $*}"

log() { printf '[pixels] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 2; }

for p in "$RENKEI" "$BENCH"; do
  [ -x "$p" ] || die "$p missing: cargo build --release -p renkei-tools -p renkei-benches"
done
for c in dcmdjpeg dcmdjpls dcmdrle dcmcjpeg dcmcjpls dcmcrle opj_decompress opj_compress; do
  command -v "$c" >/dev/null || die "$c missing: run scripts/setup.sh (DCMTK, OpenJPEG tools)"
done
[ -n "${EPOCHREALTIME:-}" ] || die "bash 5 needed (EPOCHREALTIME)"

IN=$WORK/in
OUT=$WORK/out
mkdir -p "$IN" "$OUT" || die "cannot create $WORK"

# ---------------------------------------------------------------------------------------------
# inputs

prep() { # OUT COMMAND...: run COMMAND (which writes OUT) unless OUT exists
  local out=$1; shift
  [ -s "$out" ] && return 0
  "$@" >/dev/null 2>"$WORK/prep.err" || { cat "$WORK/prep.err" >&2; die "preparing $out failed: $*"; }
}

log "preparing inputs in $IN"
for f in RG3_UNCR MR2_UNCR RG3_J2KR MR2_J2KR MR2_J2KI JPGLosslessP14SV1_1s_1f_8b examples_ybr_color; do
  [ -f "$CORPUS/$f.dcm" ] || die "$CORPUS/$f.dcm missing"
  ln -sf "$CORPUS/$f.dcm" "$IN/$f.dcm"
done
for img in RG3 MR2; do
  prep "$IN/${img}_JLS.dcm" dcmcjpls "$IN/${img}_UNCR.dcm" "$IN/${img}_JLS.dcm"
  prep "$IN/${img}_RLE.dcm" dcmcrle "$IN/${img}_UNCR.dcm" "$IN/${img}_RLE.dcm"
  prep "$IN/${img}_JPLL.dcm" dcmcjpeg "$IN/${img}_UNCR.dcm" "$IN/${img}_JPLL.dcm"
  prep "$IN/${img}_J2KR.j2k" "$BENCH" codestream "$IN/${img}_J2KR.dcm" "$IN/${img}_J2KR.j2k"
  [ -s "$IN/${img}.rawl" ] && [ -s "$IN/${img}.F" ] ||
    "$BENCH" raw "$IN/${img}_UNCR.dcm" "$IN/${img}.rawl" >"$IN/${img}.F" || die "raw $img"
done
prep "$IN/MR2_J2KI.j2k" "$BENCH" codestream "$IN/MR2_J2KI.dcm" "$IN/MR2_J2KI.j2k"
prep "$IN/P8_UNCR.dcm" dcmdjpeg "$IN/JPGLosslessP14SV1_1s_1f_8b.dcm" "$IN/P8_UNCR.dcm"
prep "$IN/P8_JPGB.dcm" dcmcjpeg +eb -ho +q 90 "$IN/P8_UNCR.dcm" "$IN/P8_JPGB.dcm"

# ---------------------------------------------------------------------------------------------
# timing

FAILED=0

run_ms() { # COMMAND...: one run; prints the wall time in ms, or "failed"
  local t0 t1
  t0=$EPOCHREALTIME
  "$@" >/dev/null 2>"$WORK/run.err" || { log "failed: $*"; cat "$WORK/run.err" >&2; echo failed; return; }
  t1=$EPOCHREALTIME
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", (b - a) * 1000 }'
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# Times RCMD and PCMD (arrays set by the caller) alternately, so that a change of load during
# the row weighs on both: one warm-up run of each, then REPEAT pairs. Sets R_MS and P_MS to the
# medians, or "failed".
timed_pair() {
  local i r p rs=() ps=()
  R_MS=failed; P_MS=failed
  r=$(run_ms "${RCMD[@]}"); p=$(run_ms "${PCMD[@]}")
  for ((i = 0; i < REPEAT; i++)); do
    [ "$r" = failed ] || { r=$(run_ms "${RCMD[@]}"); rs+=("$r"); }
    [ "$p" = failed ] || { p=$(run_ms "${PCMD[@]}"); ps+=("$p"); }
  done
  [ "$r" = failed ] || R_MS=$(printf '%s\n' "${rs[@]}" | median)
  [ "$p" = failed ] || P_MS=$(printf '%s\n' "${ps[@]}" | median)
}

inproc_ms() { # renkei-bench-pixels ARGS...: the median it reports
  local line
  line=$("$BENCH" "$@" -n "$REPEAT" 2>"$WORK/run.err") || { log "failed: renkei-bench-pixels $*"; cat "$WORK/run.err" >&2; echo failed; return; }
  sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$line"
}

fps() { # FRAMES MS
  case $2 in failed) echo failed ;; *) awk -v f="$1" -v m="$2" 'BEGIN { printf "%.1f", f * 1000 / m }' ;; esac
}

ratio() { # RENKEI_MS PEER_MS: renkei speed / peer speed
  case "$1$2" in *failed*) echo - ;; *) awk -v r="$1" -v p="$2" 'BEGIN { printf "%.2f", p / r }' ;; esac
}

ROWS=()
row() { # LABEL FRAMES RENKEI_MS PEER_NAME PEER_MS INPROC_MS
  local label=$1 frames=$2 r=$3 peer=$4 p=$5 ip=$6
  for v in "$r" "$p" "$ip"; do [ "$v" = failed ] && FAILED=1; done
  ROWS+=("| $label | $frames | $(fps "$frames" "$r") | $peer | $(fps "$frames" "$p") | $(ratio "$r" "$p") | $(fps "$frames" "$ip") |")
  log "${ROWS[-1]}"
}

want() { [ -z "$ONLY" ] || grep -Eq -- "$ONLY" <<<"$1"; }

decode_row() { # LABEL FILE FRAMES PEER_NAME PEER_COMMAND...
  local label=$1 file=$2 frames=$3 peer=$4; shift 4
  want "decode $label" || return 0
  RCMD=("$RENKEI" transcode "$file" "$OUT/renkei.dcm" --ts explicit)
  PCMD=("$@")
  timed_pair
  row "decode | $label" "$frames" "$R_MS" "$peer" "$P_MS" "$(inproc_ms decode "$file")"
}

encode_row() { # LABEL FILE FRAMES TS PEER_NAME PEER_COMMAND...
  local label=$1 file=$2 frames=$3 ts=$4 peer=$5; shift 5
  want "encode $label" || return 0
  local extra=()
  [ "$ts" = jpeg ] && extra=(--allow-lossy --quality 90)
  RCMD=("$RENKEI" transcode "$file" "$OUT/renkei.dcm" --ts "$ts" "${extra[@]}")
  PCMD=("$@")
  timed_pair
  row "encode | $label" "$frames" "$R_MS" "$peer" "$P_MS" "$(inproc_ms encode "$file" --ts "$ts")"
}

OPJ=(-threads 1)
F_RG3=$(cat "$IN/RG3.F"); F_MR2=$(cat "$IN/MR2.F")

log "timing (REPEAT=$REPEAT)"
decode_row "J2K lossless | RG3 1760² 10-bit" "$IN/RG3_J2KR.dcm" 1 opj_decompress \
  opj_decompress "${OPJ[@]}" -i "$IN/RG3_J2KR.j2k" -o "$OUT/opj.rawl"
decode_row "J2K lossless | MR2 1024² 12-bit" "$IN/MR2_J2KR.dcm" 1 opj_decompress \
  opj_decompress "${OPJ[@]}" -i "$IN/MR2_J2KR.j2k" -o "$OUT/opj.rawl"
decode_row "J2K lossy | MR2 1024² 12-bit" "$IN/MR2_J2KI.dcm" 1 opj_decompress \
  opj_decompress "${OPJ[@]}" -i "$IN/MR2_J2KI.j2k" -o "$OUT/opj.rawl"
for img in RG3 MR2; do
  [ $img = RG3 ] && desc="RG3 1760² 10-bit" || desc="MR2 1024² 12-bit"
  decode_row "JPEG-LS | $desc" "$IN/${img}_JLS.dcm" 1 dcmdjpls dcmdjpls "$IN/${img}_JLS.dcm" "$OUT/dcmtk.dcm"
  decode_row "RLE | $desc" "$IN/${img}_RLE.dcm" 1 dcmdrle dcmdrle "$IN/${img}_RLE.dcm" "$OUT/dcmtk.dcm"
  decode_row "JPEG lossless SV1 | $desc" "$IN/${img}_JPLL.dcm" 1 dcmdjpeg dcmdjpeg "$IN/${img}_JPLL.dcm" "$OUT/dcmtk.dcm"
done
decode_row "JPEG baseline | 1024x768 8-bit" "$IN/P8_JPGB.dcm" 1 dcmdjpeg dcmdjpeg "$IN/P8_JPGB.dcm" "$OUT/dcmtk.dcm"
decode_row "JPEG baseline | 30 x 320x240 YBR_FULL_422" "$IN/examples_ybr_color.dcm" 30 dcmdjpeg \
  dcmdjpeg "$IN/examples_ybr_color.dcm" "$OUT/dcmtk.dcm"
for img in RG3 MR2; do
  [ $img = RG3 ] && desc="RG3 1760² 10-bit" && F=$F_RG3 || { desc="MR2 1024² 12-bit"; F=$F_MR2; }
  encode_row "RLE | $desc" "$IN/${img}_UNCR.dcm" 1 rle dcmcrle dcmcrle "$IN/${img}_UNCR.dcm" "$OUT/dcmtk.dcm"
  encode_row "JPEG-LS | $desc" "$IN/${img}_UNCR.dcm" 1 jpeg-ls dcmcjpls dcmcjpls "$IN/${img}_UNCR.dcm" "$OUT/dcmtk.dcm"
  encode_row "J2K lossless | $desc" "$IN/${img}_UNCR.dcm" 1 j2k opj_compress \
    opj_compress "${OPJ[@]}" -i "$IN/${img}.rawl" -F "$F" -o "$OUT/opj.j2k"
done
encode_row "JPEG baseline q90 | 1024x768 8-bit" "$IN/P8_UNCR.dcm" 1 jpeg dcmcjpeg \
  dcmcjpeg +eb -ho +q 90 "$IN/P8_UNCR.dcm" "$OUT/dcmtk.dcm"

# ---------------------------------------------------------------------------------------------
# report

echo
echo "Command: \`$CMDLINE\`"
echo
echo "Machine: $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo); load average $(cut -d' ' -f1-3 /proc/loadavg) at the end;" \
  "$(dcmdjpeg --version 2>/dev/null | sed -n 's/^\$dcmtk: dcmdjpeg \(v[^ ]*\).*/DCMTK \1/p'), $(opj_decompress -h 2>/dev/null | sed -n 's/.*openjp2 library \(v[0-9][0-9.]*[0-9]\).*/OpenJPEG \1/p')."
echo
echo "| op | syntax | image | frames | renkei command frames/s | peer | peer command frames/s | renkei ÷ peer | renkei in-process frames/s |"
echo "|---|---|---|---:|---:|---|---:|---:|---:|"
printf '%s\n' "${ROWS[@]}"
exit $FAILED
