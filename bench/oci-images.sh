#!/usr/bin/env bash
# Writes the bench's two images as OCI archives for `ctr images import` (containerd cannot pull here):
#
#   OUT/pause.tar    registry.k8s.io/pause:3.10: icetray's pause binary as /pause, user 65535
#   OUT/busybox.tar  icetray.local/busybox:latest: Debian's busybox-static with its applets
#
# They are the images icetray builds for itself, so both runtimes run the same binaries.
# Needs: umoci, skopeo, busybox-static, icetray's pause (npm run build:native).
set -euo pipefail

out="$1"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
layout="$work/oci"
umoci init --layout "$layout"

# image TAG SETUP [umoci config flags…]: a one-layer image whose rootfs SETUP fills.
image() {
  local tag="$1" setup="$2" bundle="$work/bundle"
  shift 2
  umoci new --image "$layout:$tag"
  umoci unpack --image "$layout:$tag" "$bundle" >/dev/null
  "$setup" "$bundle/rootfs"
  umoci repack --image "$layout:$tag" "$bundle" >/dev/null
  umoci config --image "$layout:$tag" --config.workingdir / "$@"
  rm -rf "$bundle"
}

pause_rootfs() { install -m 0755 "$repo/native/build/pause" "$1/pause"; }

busybox_rootfs() {
  install -d -m 0755 "$1/bin"
  install -d -m 1777 "$1/tmp"
  install -m 0755 /bin/busybox "$1/bin/busybox"
  local applet
  for applet in $(/bin/busybox --list); do
    [[ "$applet" == busybox ]] || ln -f "$1/bin/busybox" "$1/bin/$applet"
  done
}

image pause pause_rootfs --config.entrypoint /pause --config.user 65535:65535
image busybox busybox_rootfs --config.cmd sh --config.env PATH=/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p "$out"
skopeo copy --quiet "oci:$layout:pause" "oci-archive:$out/pause.tar:registry.k8s.io/pause:3.10"
skopeo copy --quiet "oci:$layout:busybox" "oci-archive:$out/busybox.tar:icetray.local/busybox:latest"
