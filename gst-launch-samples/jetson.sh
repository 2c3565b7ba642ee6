#!/usr/bin/env bash
# Jetson (JetPack 6, GStreamer 1.20): hardware H.264 decoding with nvv4l2decoder, nvvidconv
# copying the frames out of NVMM memory as RGBA for yolodetect (run the model on the GPU with
# execution-provider=cuda or tensorrt and an ONNX Runtime GPU build), then display.
# Untested in CI: NVIDIA's elements exist only on Jetson.
# Usage: jetson.sh [VIDEO]
set -euo pipefail
. "$(dirname "$0")/_env.sh"
MODEL=${GST_YOLO_MODEL:-$SHARED/models/yolov8n.onnx}
INPUT=${1:-$SHARED/media/video/bikes.mp4}
PROVIDER=${PROVIDER:-auto}
check_model
for e in nvv4l2decoder nvvidconv; do
  gst-inspect-1.0 "$e" >/dev/null 2>&1 || { echo "$e not found: this sample needs NVIDIA's JetPack GStreamer elements (nvidia-l4t-gstreamer)" >&2; exit 1; }
done

# shellcheck disable=SC2086 # LIMIT and SINK are pipeline fragments, split on purpose
gst-launch-1.0 "${FLAGS[@]}" \
  filesrc location="$INPUT" ! qtdemux ! h264parse ! nvv4l2decoder ! $LIMIT nvvidconv \
  ! video/x-raw,format=RGBA ! yolodetect model="$MODEL" execution-provider="$PROVIDER" \
  ! yolooverlay ! nvvidconv ! ${SINK:-nv3dsink}
