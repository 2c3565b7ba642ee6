#!/usr/bin/env bash
# Runs the pipeline tests against other GStreamer versions, each in a Debian debootstrap chroot:
#   bullseye  GStreamer 1.18  built with --no-default-features (no 1.20 APIs)
#   trixie    GStreamer 1.26  built with --features v1_24, plus the GstAnalytics interop proof:
#             tests/analytics.rs, upstream's objectdetectionoverlay drawing our detections, and
#             a PyGObject reader (scripts/analytics-check.py) going through the GstAnalytics typelib.
#
#   usage (as root): scripts/test-gst-versions.sh [--prepare] [bullseye|trixie|all]   (default all)
#     --prepare   only create/update the chroots and build the tests, run nothing
#   env: GST_YOLO_CHROOTS   where the chroots live (default: ../chroots next to the repo)
#        GST_YOLO_SHARED    models and media (default: ../shared next to the repo)
#        DEBIAN_MIRROR      (default http://deb.debian.org/debian)
#
# Works from scratch and is idempotent: debootstrap on the first run only, then apt-get
# (--fix-broken when a half-configured chroot is left by an interrupted run) on every run. The
# chroots borrow this machine's Rust toolchain (~/.cargo, ~/.rustup), ../shared and the ONNX
# Runtime that scripts/install-deps.sh installed, through bind mounts, and test a copy of the
# working tree (tracked and untracked files, not ignored ones), so uncommitted changes are tested.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
prepare=0
if [ "${1:-}" = "--prepare" ]; then prepare=1; shift; fi
which=${1:-all}
chroots=${GST_YOLO_CHROOTS:-$repo/../chroots}
shared=$(cd "${GST_YOLO_SHARED:-$repo/../shared}" && pwd)
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
ort_dir=${XDG_DATA_HOME:-$HOME/.local/share}/gst-yolo
[ "$(id -u)" -eq 0 ] || { echo "run as root (debootstrap, mount and chroot)" >&2; exit 1; }
[ -d "$ort_dir" ] || { echo "no ONNX Runtime in $ort_dir: run scripts/install-deps.sh first" >&2; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -q && apt-get install -y -q debootstrap; }

# Build and run-time packages per suite; --no-install-recommends keeps out dconf and friends,
# whose maintainer scripts want a session bus that a chroot does not have.
common_pkgs="ca-certificates git pkg-config gcc libc6-dev libgstreamer1.0-dev
  libgstreamer-plugins-base1.0-dev gstreamer1.0-plugins-base gstreamer1.0-plugins-good
  gstreamer1.0-tools gstreamer1.0-libav"
declare -A suite_pkgs=(
  [bullseye]="$common_pkgs"
  # objectdetectionoverlay (plugins-bad), the GstAnalytics library and its typelib, PyGObject.
  [trixie]="$common_pkgs libgstreamer-plugins-bad1.0-dev gstreamer1.0-plugins-bad
    gir1.2-gst-plugins-bad-1.0 gir1.2-gst-plugins-base-1.0 python3-gi fonts-dejavu-core"
)
declare -A suite_features=([bullseye]="--no-default-features" [trixie]="--features v1_24")
declare -A suite_tests=(
  [bullseye]="--test yolodetect --test errors --test yolooverlay --test yolotrack"
  [trixie]="--test yolodetect --test errors --test yolooverlay --test yolotrack --test analytics"
)

mounted=()
cleanup() {
  local i
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true; done
  mounted=()
}
trap cleanup EXIT
bind() { # bind SRC DST: mount once, remember for cleanup
  mkdir -p "$2"
  mountpoint -q "$2" || { mount --bind "$1" "$2"; mounted+=("$2"); }
}

in_chroot() { # in_chroot ROOT SCRIPT
  chroot "$1" /usr/bin/env -i HOME=/root TERM=dumb LANG=C.UTF-8 \
    PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    DEBIAN_FRONTEND=noninteractive GST_YOLO_SHARED=/shared CARGO_TARGET_DIR=/build/target \
    bash -ec "$2"
}

setup() { # setup SUITE ROOT
  local suite=$1 root=$2
  if [ ! -e "$root/.debootstrap-done" ]; then
    mkdir -p "$root"
    # A run interrupted half-way leaves a tree debootstrap cannot resume: start over.
    if [ -e "$root/debootstrap" ] || [ -e "$root/etc" ]; then
      echo "== $suite: removing an unfinished chroot in $root"
      rm -rf --one-file-system "$root"
      mkdir -p "$root"
    fi
    echo "== $suite: debootstrap into $root"
    debootstrap --variant=minbase "$suite" "$root" "$mirror"
    touch "$root/.debootstrap-done"
  fi
  cp /etc/resolv.conf "$root/etc/resolv.conf"
  mkdir -p "$root/proc" "$root/sys" "$root/dev"
  mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; mounted+=("$root/proc"); }
  bind /sys "$root/sys"
  bind /dev "$root/dev"
  bind "$HOME/.cargo" "$root/root/.cargo"
  bind "$HOME/.rustup" "$root/root/.rustup"
  bind "$shared" "$root/shared"
  bind "$ort_dir" "$root/root/.local/share/gst-yolo"
  local pkgs
  pkgs=$(echo ${suite_pkgs[$suite]}) # one line: it goes into a bash -c script
  echo "== $suite: packages"
  # dpkg --configure -a and --fix-broken mend what an earlier run or apt itself left half done
  # (unmet dependencies after debootstrap were seen on a fresh machine).
  in_chroot "$root" "
    dpkg --configure -a || true
    apt-get update -q
    apt-get --fix-broken install -y -q --no-install-recommends
    apt-get install -y -q --no-install-recommends $pkgs
    apt-get --fix-broken install -y -q --no-install-recommends
    dpkg --configure -a"
}

copy_tree() { # copy_tree ROOT: the working tree into ROOT/src, keeping mtimes (cargo rebuilds less)
  rm -rf "$1/src" && mkdir -p "$1/src"
  (cd "$repo" && git ls-files -z --cached --others --exclude-standard |
    xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' | tar --null -T - -cf -) |
    tar -xf - -C "$1/src"
}

run_suite() { # run_suite SUITE
  local suite=$1 root=$chroots/$1
  setup "$suite" "$root"
  copy_tree "$root"
  local features=${suite_features[$suite]} tests=${suite_tests[$suite]}
  echo "== $suite: build (cargo test --release $features)"
  in_chroot "$root" "cd /src && echo \"GStreamer \$(pkg-config --modversion gstreamer-1.0)\"
    cargo test --release $features $tests --no-run"
  [ "$prepare" -eq 1 ] && return 0
  echo "== $suite: pipeline tests"
  in_chroot "$root" "cd /src && cargo test --release --no-fail-fast $features $tests"
  if [ "$suite" = trixie ]; then
    echo "== $suite: GstAnalytics interop (objectdetectionoverlay, PyGObject reader)"
    in_chroot "$root" "cd /src && cargo build --release $features --lib &&
      scripts/analytics-interop.sh /build/target/release/libgstyolo.so"
  fi
  echo "== $suite: PASS (GStreamer $(in_chroot "$root" 'pkg-config --modversion gstreamer-1.0'))"
}

case $which in
  all) suites=(bullseye trixie) ;;
  bullseye | trixie) suites=("$which") ;;
  *) echo "usage: $0 [--prepare] [bullseye|trixie|all]" >&2; exit 2 ;;
esac
for s in "${suites[@]}"; do
  run_suite "$s"
  cleanup
done
