#!/usr/bin/env bash
# Runs a command — a kubelet, the node e2e suite, or a shell holding the namespace for them — in a
# private mount namespace where the kernel tunables a kubelet insists on are plain files:
#
#   conformance/private-node.sh COMMAND [ARG...]
#
# Why: at start a kubelet writes the host-wide settings it wants (vm.overcommit_memory=1,
# vm.panic_on_oom=0, kernel.panic=10, kernel.panic_on_oops=1, kernel.keys.root_maxkeys/maxbytes)
# unless they already hold those values. On a shared host that would change the machine for
# everyone, so here each is bind-mounted over with a file that holds the value, and the kubelet
# reads back what it wants and writes nothing that escapes.
#
# Mount propagation is "slave": the host's mounts still reach the namespace, and nothing mounted
# inside (the kubelet's volumes, icetray's rootfs and /dev/shm mounts) reaches the host. icetray must
# run in the same namespace as its kubelet, so that the volumes the kubelet mounts are there to bind.
set -euo pipefail

if [[ $# -eq 0 ]]; then
  echo "usage: $0 COMMAND [ARG...]" >&2
  exit 2
fi

if [[ "${ICETRAY_PRIVATE_NODE:-}" != "inside" ]]; then
  export ICETRAY_PRIVATE_NODE=inside
  exec unshare --mount --propagation slave -- "$0" "$@"
fi

values="$(mktemp -d)"
while read -r path value; do
  file="$values/${path//\//_}"
  echo "$value" >"$file"
  mount --bind "$file" "/proc/sys/$path"
done <<'EOF'
vm/overcommit_memory 1
vm/panic_on_oom 0
kernel/panic 10
kernel/panic_on_oops 1
kernel/keys/root_maxkeys 1000000
kernel/keys/root_maxbytes 25000000
EOF
# The mounts hold the files' inodes: their names can go now, so nothing is left on the host.
rm -rf "$values"
exec "$@"
