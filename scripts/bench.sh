#!/usr/bin/env bash
# SPDX-License-Identifier: MPL-2.0
# yolodetect's overhead benchmark: installs what it needs (ONNX Runtime, a Python venv with
# Ultralytics in .bench/venv), makes its inputs once into .bench/ (git-ignored), then measures
# in one run on this machine and prints the table that BENCHMARKS.md records:
#   (1) raw ONNX Runtime `run` on a pre-made tensor (examples/ort-bench.rs, same Engine),
#   (2) yolodetect on 640x640 RGB, (3) decodebin ! yolodetect on a 1080p H.264 file (and with a
#   queue), (4) decode only, (5) Ultralytics `predict` on the same file and how many of its
#   boxes ours match, stage costs from yolodetect's `stats`, INT8 models, CPU arena churn.
#
#   scripts/bench.sh            everything (about 10 minutes on 2 cores once set up; the first run
#                               also installs torch and Ultralytics, about 5 minutes more)
#   BENCH_THREADS=N             ONNX Runtime intra-op threads for every contestant (default nproc)
#   BENCH_ROUNDS=N              interleaved rounds of (1)-(5) (default 3)
#   BENCH_SKIP_PY=1             skip Ultralytics and INT8 (no Python venv)
# Run it on an otherwise idle machine: it reports the load average it started with.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
B=$root/.bench
mkdir -p "$B"
SHARED=${GST_YOLO_SHARED:-$root/../shared}
export GST_YOLO_SHARED=$SHARED
MODEL=$SHARED/models/yolov8n.onnx
THREADS=${BENCH_THREADS:-$(nproc)}
ROUNDS=${BENCH_ROUNDS:-3}
OUT=$B/results.txt
log() { echo "== $*" >&2; }

# --- set-up (idempotent) ---------------------------------------------------------------------
lib=${XDG_DATA_HOME:-$HOME/.local/share}/gst-yolo/onnxruntime/libonnxruntime.so.1
[ -n "${ORT_DYLIB_PATH:-}" ] || [ -e "$lib" ] || scripts/install-onnxruntime.sh cpu
log "building the examples"
cargo build -q --release --example ort-bench --example pipeline-bench --example yolo-json \
  --example engine-churn
have_overlay=0
if [ -e examples/overlay-cost.rs ]; then
  cargo build -q --release --example overlay-cost && have_overlay=1
fi
ex=$root/target/release/examples

PY=$B/venv/bin/python
if [ -z "${BENCH_SKIP_PY:-}" ] && [ ! -e "$B/venv/.ready" ]; then
  log "Python venv with Ultralytics (torch is large: a few minutes the first time)"
  python3 -m venv "$B/venv"
  # The same ONNX Runtime version as scripts/install-onnxruntime.sh installs for yolodetect.
  "$B/venv/bin/pip" install -q ultralytics "onnxruntime==${ORT_VERSION:-1.32.0}" onnx
  touch "$B/venv/.ready"
fi

V1080=$B/bikes-1080p.mp4
RGB640=$B/bikes-640x640.rgb
if [ ! -e "$V1080" ]; then
  log "making $V1080 from bikes.mp4 (videoscale + x264enc)"
  # Tagged BT.601, the matrix OpenCV's FFmpeg reader (Ultralytics) always applies, so both
  # sides of (5) read the same colours.
  gst-launch-1.0 -q filesrc location="$SHARED/media/video/bikes.mp4" ! decodebin ! videoconvert \
    ! videoscale ! video/x-raw,width=1920,height=1080,format=I420,colorimetry=bt601 \
    ! x264enc speed-preset=medium bitrate=8000 key-int-max=60 ! h264parse ! mp4mux \
    ! filesink location="$V1080.tmp"
  mv "$V1080.tmp" "$V1080"
fi
if [ ! -e "$RGB640" ]; then
  log "making $RGB640 (raw 640x640 RGB frames of the same clip)"
  gst-launch-1.0 -q filesrc location="$SHARED/media/video/bikes.mp4" ! decodebin ! videoconvert \
    ! videoscale ! video/x-raw,width=640,height=640,format=RGB ! filesink location="$RGB640.tmp"
  mv "$RGB640.tmp" "$RGB640"
fi
FRAME=$B/frame-1080p.i420
if [ ! -e "$FRAME" ]; then
  # The clip's last frame, raw, for the allocation check of pre/post outside GStreamer.
  gst-launch-1.0 -q filesrc location="$V1080" ! decodebin ! videoconvert ! video/x-raw,format=I420 \
    ! multifilesink location="$FRAME" max-files=1
fi
I8S=$B/int8/yolov8n-int8-static.onnx
I8D=$B/int8/yolov8n-int8-dynamic.onnx
if [ -z "${BENCH_SKIP_PY:-}" ] && [ ! -e "$I8S" ]; then
  log "quantizing to INT8 (calibration: the coco8 images)"
  "$PY" scripts/bench_tools.py quantize "$MODEL" "$B/int8" "$SHARED"/media/coco8/images/*/*.jpg
fi

# --- measurements ----------------------------------------------------------------------------
{
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)," \
    "$(free -g | awk '/Mem:/{print $2}') GiB"
  echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions: $(rustc --version), $(gst-launch-1.0 --version | sed -n 2p)," \
    "ONNX Runtime $(cat "$(dirname "$lib")/.version" 2>/dev/null || echo "${ORT_DYLIB_PATH:-?}")"
  echo "threads: $THREADS"
} | tee "$OUT"
run() { "$@" 2>&1 | tee -a "$OUT"; }
det="yolodetect name=det model=$MODEL num-threads=$THREADS"
raw640="filesrc location=$RGB640 ! rawvideoparse width=640 height=640 format=rgb framerate=30/1"
src1080="filesrc location=$V1080 ! decodebin"
sink="fakesink name=sink sync=false"

# The core contestants run in interleaved rounds: this machine's speed drifts with whatever else
# runs on it, and per-round ratios cancel most of that.
run "$ex/ort-bench" --model "$MODEL" --threads "$THREADS" --iters 20 --warmup 2 --label ort-warm-up --prepost \
  --i420 "$FRAME" >/dev/null
for r in $(seq "$ROUNDS"); do
  log "round $r/$ROUNDS: (1) raw ONNX Runtime"
  run "$ex/ort-bench" --model "$MODEL" --threads "$THREADS" --iters 60
  log "round $r/$ROUNDS: (2) 640x640 RGB through yolodetect"
  run "$ex/pipeline-bench" --label pipe-640 "$raw640 ! $det ! $sink"
  log "round $r/$ROUNDS: (3) 1080p H.264 through yolodetect, without and with a queue"
  run "$ex/pipeline-bench" --label pipe-1080 "$src1080 ! $det ! $sink"
  run "$ex/pipeline-bench" --label pipe-1080-queue "$src1080 ! queue ! $det ! $sink"
  log "round $r/$ROUNDS: (4) decode only"
  run "$ex/pipeline-bench" --label decode-1080 "$src1080 ! $sink"
  if [ -z "${BENCH_SKIP_PY:-}" ]; then
    log "round $r/$ROUNDS: (5) Ultralytics predict"
    run env YOLO_OFFLINE=1 "$PY" scripts/bench_tools.py ultralytics "$MODEL" "$V1080" "$THREADS" \
      "$B/ultralytics-1080p.jsonl"
  fi
done
if [ "$have_overlay" = 1 ]; then
  log "yolooverlay cost"
  run "$ex/overlay-cost"
fi
if [ -z "${BENCH_SKIP_PY:-}" ]; then
  log "our boxes on the same file (examples/yolo-json)"
  "$ex/yolo-json" "$V1080" --model "$MODEL" > "$B/ours-1080p.jsonl"
  run "$PY" scripts/bench_tools.py match "$B/ours-1080p.jsonl" "$B/ultralytics-1080p.jsonl"
  log "INT8"
  for kind in static dynamic; do
    m=$B/int8/yolov8n-int8-$kind.onnx
    run "$ex/ort-bench" --model "$m" --threads "$THREADS" --iters 50 --label "ort-raw-int8-$kind"
    run "$ex/pipeline-bench" --label "pipe-640-int8-$kind" \
      "$raw640 ! yolodetect name=det model=$m num-threads=$THREADS ! $sink"
  done
  specs=()
  for kind in fp32 int8-static int8-dynamic; do
    case $kind in fp32) m=$MODEL ;; *) m=$B/int8/yolov8n-$kind.onnx ;; esac
    : > "$B/images-$kind.jsonl"
    for png in $("$PY" -c 'import json,sys; [print(r["png"]) for r in json.load(open(sys.argv[1]))["results"]]' \
        "$SHARED/reference/yolov8n-images.json"); do
      "$ex/yolo-json" "$SHARED/media/$png" --model "$m" >> "$B/images-$kind.jsonl"
    done
    specs+=("$kind=$B/images-$kind.jsonl")
  done
  run "$PY" scripts/bench_tools.py accuracy "$SHARED/reference/yolov8n-images.json" \
    "$SHARED/media" "${specs[@]}"
fi
log "CPU arena: memory across engine create/drop cycles"
for _ in 1 2; do
  run "$ex/engine-churn" --arena off --threads "$THREADS" --cycles 50
  run "$ex/engine-churn" --arena on --threads "$THREADS" --cycles 50
done
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT"

echo
python3 scripts/bench_tools.py report "$OUT" | tee "$B/report.md"
