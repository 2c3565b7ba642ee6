# shellcheck shell=bash
# Sourced by every sample: makes the plugin findable and reads the knobs that let the test
# suite (tests/samples.rs) bound a sample without changing what it shows.
#   FRAMES            stop after about this many frames: meant for live sources (RTSP, cameras);
#                     files end by themselves (an early stop there can stall hlssink2)
#   SINK              replaces the sample's final sink, e.g. SINK="fakesink silent=false"
#   GST_LAUNCH_FLAGS  extra gst-launch-1.0 flags, e.g. -v with SINK="fakesink silent=false" to
#                     print each buffer's metas (-v alone prints caps only)
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SHARED=${GST_YOLO_SHARED:-$REPO/../shared}

# An installed plugin wins; otherwise use the one `cargo build --release` leaves in target/.
if ! gst-inspect-1.0 yolodetect >/dev/null 2>&1; then
  export GST_PLUGIN_PATH="$REPO/target/release${GST_PLUGIN_PATH:+:$GST_PLUGIN_PATH}"
  if ! gst-inspect-1.0 yolodetect >/dev/null 2>&1; then
    echo "yolodetect not found: run 'cargo build --release' in $REPO or install the plugin (README.md, Installing)" >&2
    exit 1
  fi
fi

# `identity eos-after=N` passes N-1 buffers and then ends the stream, so sources that never end
# (cameras, RTSP) stop cleanly too.
LIMIT=${FRAMES:+identity eos-after=$((FRAMES + 1)) !}
# -e turns Ctrl-C into EOS so muxers (MP4, FLV, HLS) finish their files.
read -r -a FLAGS <<<"-e ${GST_LAUNCH_FLAGS:-}"

check_model() {
  if [ ! -f "$MODEL" ]; then
    echo "model $MODEL not found: set GST_YOLO_MODEL to a YOLO ONNX file; export one with" >&2
    echo "  pip install ultralytics && yolo export model=yolov8n.pt format=onnx" >&2
    exit 1
  fi
}
