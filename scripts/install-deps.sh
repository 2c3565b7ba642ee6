#!/usr/bin/env bash
# Installs everything gst-yolo needs to build, test and run its demo on Debian 12 / Ubuntu 22.04+:
# GStreamer (development files, tools, the plugin sets the tests and samples use), meson, and the
# ONNX Runtime library (scripts/install-onnxruntime.sh). Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
pkgs=(
  pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-tools gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0
  python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0
  meson ninja-build unzip python3-pip
)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
command -v cargo >/dev/null || { echo "Rust is needed: install it from https://rustup.rs" >&2; exit 1; }
"$here/install-onnxruntime.sh" cpu
# KServe's ModelServer for the remote-backend tests (tests/remote.rs), in .kserve/.
"$here/install-kserve.sh"
