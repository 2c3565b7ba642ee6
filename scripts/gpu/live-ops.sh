#!/usr/bin/env bash
# Live operation on an NVIDIA GPU host (no cargo, no network), in one go: the live-operation
# tests on the CUDA provider (model swaps, pipelined swap, QoS, metrics), then the soak on CUDA
# (frames, model swaps while PLAYING, start/stop cycles) with host and GPU memory, and the
# per-session host memory of our engine against bare ONNX Runtime sessions; finally whether
# ONNX Runtime places some of yolov8n's nodes on its CPU provider (yolodetect-started's
# `cpu-nodes`). Logs and summary.txt go to LOG_DIR.
#   usage (repository root; .gpu/ from scripts/gpu/make-payload.sh and
#     MODELS=yolov8n-dynamic.onnx EXAMPLES="yolo-bench yolo-soak" TESTS="live metrics filters" scripts/gpu/pack-proof.sh):
#     scripts/gpu/live-ops.sh [LOG_DIR]     (default: $OUT or /tmp/live-ops)
#   SWAPS, CYCLES, FRAMES, CHURN size the soak (defaults 200, 200, 20000, 100); PHASES picks what
#   runs (default: tests frames swaps cycles engines sessions sessions-run cpu-nodes).
set -uo pipefail
repo=$(pwd)
[ -d "$repo/.gpu" ] || { echo "run from the repository root (no .gpu/)" >&2; exit 1; }
logs=${1:-${OUT:-/tmp/live-ops}}
mkdir -p "$logs"
# shellcheck source=/dev/null
source "$repo/scripts/gpu/env.sh" && unpack >/dev/null || exit 1
mkdir -p /tmp/gyb && xz -dc "$repo/.gpu/gst-yolo-bins.tar.xz" | tar -C /tmp/gyb -xf - || exit 1
B=/tmp/gyb/bin
export GST_YOLO_SHARED=$repo/.gpu/shared
D=$GST_YOLO_SHARED/models/yolov8n-dynamic.onnx
# Only the dynamic model travels (64 MiB a call): it stands in for the static one in the tests.
[ -f "$GST_YOLO_SHARED/models/yolov8n.onnx" ] || cp "$D" "$GST_YOLO_SHARED/models/yolov8n.onnx"
summary=$logs/summary.txt; : >"$summary"
row() { printf '%-48s %s\n' "$1" "$2" | tee -a "$summary"; }
log() { echo "== $*"; }
SWAPS=${SWAPS:-200} CYCLES=${CYCLES:-200} FRAMES=${FRAMES:-20000} CHURN=${CHURN:-100}
PHASES=" ${PHASES:-tests frames swaps cycles engines sessions sessions-run cpu-nodes} "
want() { [[ $PHASES == *" $1 "* ]]; }

log "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$logs/gpu.txt"
row "GPU" "$(head -n1 "$logs/gpu.txt")"
row "ONNX Runtime" "$(ls "$GST_YOLO_ORT_DIR" | sed -n 's/^libonnxruntime\.so\.\(1\.[0-9.]*\)$/\1/p')"

want tests && log "live-operation tests on CUDA"
export GST_YOLO_TEST_PROVIDER=cuda
# Every test binary pack-proof.sh packed (TESTS there).
want tests && for t in $(ls "$B" | sed -n 's/^test-//p'); do
  timeout 400 "$B/test-$t" --test-threads=1 >"$logs/test-$t.txt" 2>&1
  rc=$?
  row "tests/$t.rs on cuda" "$([ $rc = 0 ] && grep -o '[0-9]* passed; [0-9]* failed' "$logs/test-$t.txt" | tail -n1 || echo "FAIL (rc $rc)")"
  [ $rc = 0 ] || tail -n 40 "$logs/test-$t.txt"
  grep -h "model .* fps, source\|qos off" "$logs/test-$t.txt" | cut -c1-200
done
unset GST_YOLO_TEST_PROVIDER

log "soak on CUDA (yolov8n at 160x160 and 192x192: the dynamic export, imgsz metadata changed)"
tmp=$(mktemp -d)
for size in 160 192; do
  python3 - "$D" "$tmp/yolov8n-$size.onnx" "$size" <<'PY'
import sys
src, dst, size = sys.argv[1], sys.argv[2], sys.argv[3]
data = open(src, "rb").read()
old, new = b"[640, 640]", f"[{size}, {size}]".encode()
assert len(old) == len(new) and data.count(old) == 1
open(dst, "wb").write(data.replace(old, new))
PY
done
a=$tmp/yolov8n-160.onnx b=$tmp/yolov8n-192.onnx
soak() {
  local name=$1; shift
  want "$name" || return 0
  timeout 900 "$B/yolo-soak" "$@" --model "$a" --alt "$b" --provider cuda >"$logs/soak-$name.txt" 2>&1
  local rc=$?
  row "soak $name (cuda)" "$([ $rc = 0 ] && grep -o 'drift.*' "$logs/soak-$name.txt" | head -n1 || echo "FAIL (rc $rc)")"
  [ $rc = 0 ] || tail -n 20 "$logs/soak-$name.txt"
  cat "$logs/soak-$name.txt" | grep '^soak'
}
soak frames frames "$FRAMES"
soak swaps swaps "$SWAPS"
soak cycles cycles "$CYCLES"
soak engines engines "$CHURN"
soak sessions sessions "$CHURN"
soak sessions-run sessions-run "$CHURN"
# The same on the CPU provider, for comparison (is the growth per session CUDA's?).
if want sessions; then
  timeout 600 "$B/yolo-soak" sessions "$CHURN" --model "$a" --provider cpu >"$logs/soak-sessions-cpu.txt" 2>&1
  row "soak sessions (cpu)" "$(grep -o 'drift.*' "$logs/soak-sessions-cpu.txt" | head -n1)"
fi

want cpu-nodes && log "nodes on ONNX Runtime's CPU provider in a CUDA session"
want cpu-nodes && GST_DEBUG=yolodetect:4,yoloort:2 timeout 300 "$B/yolo-soak" frames 20 --model "$D" --provider cuda >"$logs/cpu-nodes.txt" 2>&1
want cpu-nodes && row "cpu-nodes (yolov8n, CUDA)" "$(grep -o 'some nodes run on the CPU provider.*' "$logs/cpu-nodes.txt" | head -n1 | cut -c1-160 || true)"
want cpu-nodes && grep -i "not assigned\|cpu provider" "$logs/cpu-nodes.txt" | head -n 5 | cut -c1-300
log "summary"
cat "$summary"
