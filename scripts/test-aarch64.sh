#!/usr/bin/env bash
# Cross-builds the plugin for aarch64-unknown-linux-gnu (NVIDIA Jetson, Raspberry Pi 5) against
# Debian's arm64 GStreamer packages and runs, under qemu-user, the library's unit tests and one
# pipeline test with the real model (yolodetect's packed_layouts_match_exactly), with the aarch64
# ONNX Runtime from PyPI's onnxruntime wheel.
#
#   usage (as root): scripts/test-aarch64.sh [--build-only]
#   env: GST_YOLO_CHROOTS   where the arm64 sysroot lives (default: ../chroots next to the repo)
#        GST_YOLO_SHARED    models and media (default: ../shared next to the repo)
#        SUITE              Debian suite of the sysroot (default bookworm: GStreamer 1.22)
#        DEBIAN_MIRROR      (default http://deb.debian.org/debian)
#
# The sysroot is an arm64 debootstrap chroot (not multiarch packages on this machine, which
# would mix arm64 -dev files into the host's /usr): the linker and pkg-config look into it at
# build time, and the tests run inside it through qemu-user's binfmt handler. Works from
# scratch and is idempotent.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
build_only=0
[ "${1:-}" = "--build-only" ] && build_only=1
suite=${SUITE:-bookworm}
sysroot=${GST_YOLO_CHROOTS:-$repo/../chroots}/arm64-$suite
shared=$(cd "${GST_YOLO_SHARED:-$repo/../shared}" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
target=aarch64-unknown-linux-gnu
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, mount and chroot)" >&2; exit 1; }

echo "== host tools"
need=()
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || need+=(qemu-user-static)
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || need+=(binfmt-support qemu-user-static)
command -v pip3 >/dev/null || need+=(python3-pip)
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
  update-binfmts --enable qemu-aarch64 || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || { echo "no binfmt handler for aarch64 (qemu-user-static)" >&2; exit 1; }
rustup target add "$target"

echo "== arm64 $suite sysroot in $sysroot"
if [ ! -e "$sysroot/.debootstrap-done" ]; then
  if [ -e "$sysroot" ]; then rm -rf --one-file-system "$sysroot"; fi # an unfinished one
  mkdir -p "$sysroot"
  debootstrap --arch=arm64 --variant=minbase "$suite" "$sysroot" "$mirror"
  touch "$sysroot/.debootstrap-done"
fi
mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
}
trap cleanup EXIT
mkdir -p "$sysroot/proc" "$sysroot/sys" "$sysroot/dev" "$sysroot/shared"
mountpoint -q "$sysroot/proc" || { mount -t proc proc "$sysroot/proc"; mounted+=("$sysroot/proc"); }
# /sys: ONNX Runtime's cpuinfo reads the processor lists there.
mountpoint -q "$sysroot/sys" || { mount --bind /sys "$sysroot/sys"; mounted+=("$sysroot/sys"); }
mountpoint -q "$sysroot/dev" || { mount --bind /dev "$sysroot/dev"; mounted+=("$sysroot/dev"); }
mountpoint -q "$sysroot/shared" || { mount --bind "$shared" "$sysroot/shared"; mounted+=("$sysroot/shared"); }
cp /etc/resolv.conf "$sysroot/etc/resolv.conf"
in_sysroot() {
  chroot "$sysroot" /usr/bin/env -i HOME=/root LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive \
    PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}
# --fix-broken and dpkg --configure -a mend what an interrupted run left half done.
in_sysroot bash -ec '
  dpkg --configure -a || true
  apt-get update -q
  apt-get --fix-broken install -y -q --no-install-recommends
  apt-get install -y -q --no-install-recommends libc6-dev libgstreamer1.0-dev \
    libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good'
# Debian's -dev packages link libfoo.so with absolute symlinks (/lib/...): relative to the
# sysroot they would point into the host. Make them relative.
find "$sysroot/usr/lib/aarch64-linux-gnu" -maxdepth 1 -type l -lname '/*' | while read -r l; do
  ln -sfn "$(realpath -m --relative-to="$(dirname "${l#"$sysroot"}")" "$(readlink "$l")")" "$l"
done

echo "== ONNX Runtime for aarch64 (PyPI's onnxruntime wheel)"
ortdir=$sysroot/opt/onnxruntime
if ! ls "$ortdir"/libonnxruntime.so.1.* >/dev/null 2>&1; then
  wheels=$(mktemp -d)
  pip3 download -q --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_aarch64 --platform manylinux_2_27_aarch64 \
    --platform manylinux2014_aarch64 -d "$wheels" onnxruntime
  mkdir -p "$ortdir"
  python3 - "$wheels"/onnxruntime-*.whl "$ortdir" <<'EOF'
import os, sys, zipfile
whl, out = sys.argv[1:]
with zipfile.ZipFile(whl) as z:
    for n in z.namelist():
        base = os.path.basename(n)
        if n.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime"):
            with open(os.path.join(out, base), "wb") as f:
                f.write(z.read(n))
            print("   ", os.path.basename(whl), "->", base)
EOF
  rm -rf "$wheels"
fi
ort_lib=$(cd "$ortdir" && ls libonnxruntime.so.1.* | sort -V | tail -n 1)
file -L "$ortdir/$ort_lib" 2>/dev/null | grep -q aarch64 || { echo "$ortdir/$ort_lib is not an aarch64 library" >&2; exit 1; }

echo "== cross-build (cargo test --release --target $target --no-run)"
export PKG_CONFIG_ALLOW_CROSS=1 PKG_CONFIG_SYSROOT_DIR=$sysroot
export PKG_CONFIG_LIBDIR=$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
libdirs=$sysroot/usr/lib/aarch64-linux-gnu:$sysroot/lib/aarch64-linux-gnu
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C link-arg=--sysroot=$sysroot -C link-arg=-Wl,-rpath-link=$libdirs"
cd "$repo"
# The test executables, as cargo lists them in its JSON messages.
exes=$(cargo test --release --target "$target" --lib --test yolodetect --no-run \
  --message-format=json | python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["profile"]["test"]:
        print(m["target"]["name"], m["executable"])')
echo "$exes"
file "$(echo "$exes" | awk '$1 == "gstyolo" {print $2}')" | grep -q 'ARM aarch64' ||
  { echo "the unit-test executable is not aarch64" >&2; exit 1; }
[ "$build_only" -eq 1 ] && exit 0

echo "== tests under qemu-user ($(qemu-aarch64-static --version | head -n 1))"
rm -rf "$sysroot/tests" && mkdir -p "$sysroot/tests"
echo "$exes" | while read -r name exe; do cp "$exe" "$sysroot/tests/$name"; done
run() {
  in_sysroot /usr/bin/env GST_YOLO_SHARED=/shared ORT_DYLIB_PATH="/opt/onnxruntime/$ort_lib" \
    GST_REGISTRY=/tmp/gst-registry.bin "$@"
}
echo "-- unit tests"
run /tests/gstyolo --test-threads=2
echo "-- pipeline test with the real model"
run /tests/yolodetect --exact packed_layouts_match_exactly
echo "== aarch64: PASS (GStreamer $(pkg-config --modversion gstreamer-1.0), ONNX Runtime $ort_lib)"
