#!/usr/bin/env bash
# Installs what icetray needs on a Debian machine; does nothing for what is already there.
#
#   scripts/install-deps.sh run    Debian packages icetray uses at run time, node_modules, and
#                                  crictl (built with Go; `npm start` links it onto the PATH)
#   scripts/install-deps.sh test   the same, plus what the tests use: critest and the kubelet (built with Go)
#
# `npm start` and `npm test` call it first, so a fresh clone needs no other step.
set -euo pipefail

mode="${1:-run}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# command-or-file the package provides → Debian package
run_packages=(
  "cc:gcc"                                   # builds native/pause.c
  "/usr/lib/x86_64-linux-gnu/libc.a:libc6-dev" # static pause and nsexec need the static libc
  "/usr/include/seccomp.h:libseccomp-dev"    # nsexec applies seccomp profiles with libseccomp
  "/usr/lib/cni/bridge:containernetworking-plugins" # bridge, host-local, portmap, loopback
  "iptables:iptables"                        # the bridge (ipMasq) and portmap plugins call it
  "ip:iproute2"
  "nsenter:util-linux"
  "/bin/busybox:busybox-static"              # icetray.local/busybox, the image of icetray demo and the README
)
test_packages=(
  "ping:iputils-ping"                        # pods ping each other in the sandbox tests
  "/lib/systemd/systemd:systemd"             # the systemd cgroup driver's tests boot a real systemd
  "dbus-daemon:dbus"                         # … with a system bus inside it
  "umoci:umoci"                              # builds critest's fixture images (OCI layouts) from busybox-static
  "skopeo:skopeo"                            # pushes them to the loopback registry
  "/usr/bin/docker-registry:docker-registry" # the loopback registry critest pulls from
  "setfattr:attr"                            # overlay opaque dirs and file capabilities in layers
  "curl:curl"
  "tmux:tmux"                                # drives crictl exec -it through a terminal in the streaming tests
  "python3:python3"                          # … whose test backend gets its pty from python3
  "chromium:chromium"                        # the headless browser that drives icetray ui in its test
)

wanted=("${run_packages[@]}")
[[ "$mode" == "test" ]] && wanted+=("${test_packages[@]}")

missing=()
for entry in "${wanted[@]}"; do
  probe="${entry%%:*}" package="${entry##*:}"
  if [[ "$probe" == /* ]]; then [[ -e "$probe" ]] && continue; else command -v "$probe" >/dev/null 2>&1 && continue; fi
  missing+=("$package")
done

if ((${#missing[@]} > 0)); then
  if [[ $EUID -ne 0 ]]; then
    echo "error: icetray needs these Debian packages: ${missing[*]} — run this as root, or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  echo "installing Debian packages: ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# node_modules, when missing or older than the lock file.
if [[ ! -f "$repo/node_modules/.package-lock.json" || "$repo/package-lock.json" -nt "$repo/node_modules/.package-lock.json" ]]; then
  echo "installing npm packages (npm ci)"
  (cd "$repo" && npm ci --no-audit --no-fund)
fi

if [[ "$mode" == "test" ]]; then
  "$repo/conformance/install-cri-tools.sh"
  # The kubelet the kubelet-driven suite (test/kubelet) runs: ~15 minutes the first time.
  "$repo/conformance/install-kubernetes.sh" kubelet
fi
if [[ "$mode" == "run" ]]; then
  # crictl (critest comes with it, from the same module: a few minutes, once). icetray serves
  # without it, so a machine without Go still starts, and says what is missing.
  "$repo/conformance/install-cri-tools.sh" ||
    echo "warning: crictl is not built (see above): icetray serves without it; \"icetray install\" links it once built" >&2
fi
