#!/usr/bin/env bash
# Runs the pipeline tests against GStreamer 1.26 (Debian trixie) in a debootstrap chroot, as root.
#   usage: scripts/test-gst126.sh [CHROOT_DIR]   (default: ../trixie-chroot next to the repo)
# The chroot borrows this machine's Rust toolchain (~/.cargo, ~/.rustup), ../shared and the
# installed ONNX Runtime through bind mounts, and tests a fresh clone of the current HEAD.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
root=${1:-$repo/../trixie-chroot}
shared=${GST_YOLO_SHARED:-$repo/../shared}
ort_dir=${XDG_DATA_HOME:-$HOME/.local/share}/gst-yolo
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap and chroot)" >&2; exit 1; }
command -v debootstrap >/dev/null || apt-get install -y -q debootstrap
if [ ! -e "$root/usr/bin/gst-launch-1.0" ]; then
  mkdir -p "$root"
  # plugins-good pulls dconf, whose configure step fails in a chroot without a session bus;
  # the packages are unpacked all the same, so finish with --force-depends below.
  debootstrap --variant=minbase \
    --include=libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,gstreamer1.0-plugins-base,gstreamer1.0-plugins-good,gstreamer1.0-tools,pkg-config,gcc,libc6-dev,ca-certificates \
    trixie "$root" http://deb.debian.org/debian || true
  chroot "$root" dpkg --force-depends --configure -a
  chroot "$root" bash -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y -q dbus-daemon dbus-user-session gstreamer1.0-libav'
fi
mkdir -p "$root/root/.cargo" "$root/root/.rustup" "$root/shared" "$root/root/.local/share" "$root/proc" "$root/dev"
cleanup() { for m in proc dev shared root/.rustup root/.cargo; do umount "$root/$m" 2>/dev/null || true; done; }
trap cleanup EXIT
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
mount --bind "$HOME/.cargo" "$root/root/.cargo"
mount --bind "$HOME/.rustup" "$root/root/.rustup"
mount --bind "$shared" "$root/shared"
rm -rf "$root/root/.local/share/gst-yolo" && cp -r "$ort_dir" "$root/root/.local/share/"
rm -rf "$root/src" && git clone -q "$repo" "$root/src"
chroot "$root" bash -c 'export PATH=/root/.cargo/bin:$PATH HOME=/root GST_YOLO_SHARED=/shared
  cd /src && pkg-config --modversion gstreamer-1.0 &&
  cargo test --release --test yolodetect --test errors --test yolooverlay'
