#!/usr/bin/env bash
# Installs KServe's Python ModelServer and ONNX Runtime into a virtual environment for the
# remote-backend tests and benchmark (tests/remote.rs, scripts/bench-remote.sh): they start
# scripts/kserve_yolo.py with its Python. Default place: .kserve/ in the repository (git-ignored);
# another with `scripts/install-kserve.sh DIR` and GST_YOLO_KSERVE_PYTHON=DIR/bin/python for the
# tests. Safe to run again.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
venv=${1:-$here/../.kserve}
# Versions the tests were written against; newer ones speak the same protocol.
kserve_version=${KSERVE_VERSION:-0.21.0}
ort_version=${ORT_PY_VERSION:-1.32.0}
python=${PYTHON:-python3}
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends python3-venv
fi
[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
if ! "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('kserve') != '$kserve_version' or m.version('onnxruntime') != '$ort_version')" 2>/dev/null; then
  "$venv/bin/pip" install -q --disable-pip-version-check "kserve==$kserve_version" "onnxruntime==$ort_version" numpy
fi
"$venv/bin/python" -c 'import importlib.metadata as m; print("kserve", m.version("kserve"), "onnxruntime", m.version("onnxruntime"))'
