#!/usr/bin/env bash
# Installs the ONNX Runtime shared library that yolodetect loads at start.
#   usage: scripts/install-onnxruntime.sh [cpu|gpu]
# Takes the library out of the PyPI wheel (`onnxruntime`, or `onnxruntime-gpu` for CUDA) and puts
# it into $XDG_DATA_HOME/gst-yolo/onnxruntime (default ~/.local/share/...), the first place
# yolodetect looks after $ORT_DYLIB_PATH. Override the version with ORT_VERSION.
set -euo pipefail
flavour=${1:-cpu}
case "$flavour" in
  cpu) pkg=onnxruntime; ver=${ORT_VERSION:-1.32.0} ;;
  gpu) pkg=onnxruntime-gpu; ver=${ORT_VERSION:-1.31.1} ;;
  *) echo "usage: $0 [cpu|gpu]" >&2; exit 2 ;;
esac
dest=${XDG_DATA_HOME:-$HOME/.local/share}/gst-yolo/onnxruntime
if [ -e "$dest/libonnxruntime.so.1" ] && [ -e "$dest/.version" ] && [ "$(cat "$dest/.version")" = "$pkg==$ver" ]; then
  echo "ONNX Runtime $pkg==$ver already in $dest"; exit 0
fi
py=$(command -v python3 || true)
[ -n "$py" ] || { echo "python3 with pip is needed to fetch the $pkg wheel" >&2; exit 1; }
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
"$py" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
  --platform manylinux_2_28_"$(uname -m)" --platform manylinux_2_27_"$(uname -m)" \
  --platform manylinux_2_17_"$(uname -m)" -d "$work" "$pkg==$ver"
mkdir -p "$dest"
(cd "$work" && "$py" -m zipfile -e ./*.whl x >/dev/null)
rm -f "$dest"/libonnxruntime*.so*
cp "$work"/x/onnxruntime/capi/libonnxruntime*.so* "$dest/"
(cd "$dest" && ln -sf "$(ls libonnxruntime.so.1.* | head -n1)" libonnxruntime.so.1)
echo "$pkg==$ver" > "$dest/.version"
echo "ONNX Runtime $pkg==$ver installed in $dest"
