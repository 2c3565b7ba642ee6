# Environment for running gst-yolo on the GPU host (x86-64 Ubuntu 24.04, CUDA 13 in
# /usr/local/cuda/lib64, cuDNN 9, no GStreamer, no ONNX Runtime) from the payload that
# scripts/gpu/make-payload.sh put into .gpu/. Source it with bash from the repository root:
#   source scripts/gpu/env.sh && unpack     # unpack once per fresh host (idempotent, ~1 s)
#   gst-inspect-1.0 coreelements; gst-launch-1.0 filesrc location=.gpu/bikes-1080p.mp4 ! decodebin ! ...
# Only this shell sees the carried libraries: LD_LIBRARY_PATH puts Debian 12's glib, libmount,
# libselinux, ... first, which the host's own tools tolerate but need not; use a subshell if unsure.
# Overrides: GST_YOLO_GST_DIR (/tmp/gst), GST_YOLO_ORT_DIR (/tmp/ort), GST_YOLO_PLUGIN_DIR (a folder
# holding our libgstyolo.so, added to the plugin path), CUDA_LIB_DIR (/usr/local/cuda/lib64).

_gy_repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export GST_YOLO_GST_DIR=${GST_YOLO_GST_DIR:-/tmp/gst}
export GST_YOLO_ORT_DIR=${GST_YOLO_ORT_DIR:-/tmp/ort}
_gy_cuda=${CUDA_LIB_DIR:-/usr/local/cuda/lib64}

# Unpacks .gpu/gst-runtime.tar.xz into $GST_YOLO_GST_DIR and .gpu/ort-gpu.tar.xz into
# $GST_YOLO_ORT_DIR, replacing what was there, after checking both against their .sha256.
unpack() {
  local t d
  for t in gst-runtime ort-gpu; do
    [ -s "$_gy_repo/.gpu/$t.tar.xz" ] || { echo "unpack: no $_gy_repo/.gpu/$t.tar.xz" >&2; return 1; }
    if [ -s "$_gy_repo/.gpu/$t.tar.xz.sha256" ] && \
       [ "$(sha256sum "$_gy_repo/.gpu/$t.tar.xz" | cut -c1-64)" != "$(cat "$_gy_repo/.gpu/$t.tar.xz.sha256")" ]; then
      echo "unpack: .gpu/$t.tar.xz does not match its .sha256" >&2; return 1
    fi
  done
  rm -rf "$GST_YOLO_GST_DIR" "$GST_YOLO_ORT_DIR"
  mkdir -p "$GST_YOLO_GST_DIR" "$GST_YOLO_ORT_DIR"
  xz -dc "$_gy_repo/.gpu/gst-runtime.tar.xz" | tar -C "$GST_YOLO_GST_DIR" -xf - || return 1
  xz -dc "$_gy_repo/.gpu/ort-gpu.tar.xz" | tar -C "$GST_YOLO_ORT_DIR" -xf - || return 1
  rm -f "$GST_REGISTRY"
  for d in "$GST_YOLO_GST_DIR/lib/gstreamer-1.0" "$GST_YOLO_ORT_DIR/libonnxruntime.so.1"; do
    [ -e "$d" ] || { echo "unpack: $d missing after unpacking" >&2; return 1; }
  done
  echo "unpacked GStreamer into $GST_YOLO_GST_DIR, ONNX Runtime into $GST_YOLO_ORT_DIR"
  [ -d "$_gy_cuda" ] || echo "warning: no $_gy_cuda (set CUDA_LIB_DIR)" >&2
}

# Libraries: ours first, then ONNX Runtime, then CUDA/cuDNN; whatever was there last.
export LD_LIBRARY_PATH="$GST_YOLO_GST_DIR/lib:$GST_YOLO_ORT_DIR:$_gy_cuda${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export PATH="$GST_YOLO_GST_DIR/bin:$PATH"
# GStreamer: only the carried plugins (+ ours if GST_YOLO_PLUGIN_DIR), the carried scanner, a
# registry of our own; the *_1_0 names win over the plain ones, so both are set.
export GST_PLUGIN_SYSTEM_PATH_1_0="$GST_YOLO_GST_DIR/lib/gstreamer-1.0"
export GST_PLUGIN_SYSTEM_PATH="$GST_PLUGIN_SYSTEM_PATH_1_0"
export GST_PLUGIN_SCANNER_1_0="$GST_YOLO_GST_DIR/libexec/gst-plugin-scanner"
export GST_PLUGIN_SCANNER="$GST_PLUGIN_SCANNER_1_0"
export GST_REGISTRY_1_0="$GST_YOLO_GST_DIR/registry.x86_64.bin"
export GST_REGISTRY="$GST_REGISTRY_1_0"
unset GST_PLUGIN_PATH GST_PLUGIN_PATH_1_0
if [ -n "${GST_YOLO_PLUGIN_DIR:-}" ]; then
  export GST_PLUGIN_PATH_1_0="$GST_YOLO_PLUGIN_DIR" GST_PLUGIN_PATH="$GST_YOLO_PLUGIN_DIR"
fi
# ONNX Runtime (yolodetect loads it at start from ORT_DYLIB_PATH) and CUDA.
export ORT_DYLIB_PATH="$GST_YOLO_ORT_DIR/libonnxruntime.so.1"
export CUDA_MODULE_LOADING=LAZY
# The tests read models, media and references from $GST_YOLO_SHARED (default ../shared).
if [ -z "${GST_YOLO_SHARED:-}" ]; then
  for _gy_d in "$_gy_repo/../shared" "$_gy_repo/shared"; do
    [ -d "$_gy_d/models" ] && { GST_YOLO_SHARED=$(cd "$_gy_d" && pwd); export GST_YOLO_SHARED; break; }
  done
  unset _gy_d
fi
