#!/usr/bin/env bash
# Runs critest (cri-tools' CRI validation suite) against a fresh icetray.
#
# - starts `icetray serve` on a temporary socket, with its state in a temporary folder;
# - runs every critest spec (JUnit report in $ICETRAY_CRITEST_OUT, default /tmp/icetray-critest);
# - fails when a spec listed in conformance/expected-pass.txt does not pass, and lists the specs
#   that pass but are not listed yet, so the list only grows.
#
# The summary's last line is `N passed, N failed, N skipped`: "failed" counts the listed specs
# that failed (regressions); specs icetray does not support yet are counted under "skipped" and
# named in not-yet-passing.txt beside the report. Extra arguments go to critest
# (e.g. --ginkgo.focus='Runtime info').
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(dirname "$here")"
version="${CRI_TOOLS_VERSION:-v1.37.0}"
tools="${ICETRAY_TOOLS_DIR:-/var/cache/icetray/cri-tools/$version}"
out="${ICETRAY_CRITEST_OUT:-/tmp/icetray-critest}"

if [[ $EUID -ne 0 ]]; then
  echo "error: critest must run as root on the runtime's host (it mounts, creates namespaces and shares /tmp)" >&2
  exit 1
fi
[[ -x "$tools/critest" ]] || "$here/install-cri-tools.sh"
[[ -f "$repo/dist/src/cli/main.js" ]] || (cd "$repo" && npm run build)

work="$(mktemp -d /tmp/icetray-critest-run.XXXXXX)"
socket="$work/icetray.sock"
rm -rf "$out" && mkdir -p "$out"

# critest's images, offline: a loopback registry with them under their upstream paths, reached
# through registry mirrors for the three registries critest names (conformance/fixtures/).
# Not 5000: Debian's docker-registry package also runs a service there on systemd hosts.
export ICETRAY_REGISTRY_PORT="${ICETRAY_REGISTRY_PORT:-5055}"
registry_url="$("$here/fixtures/registry.sh" up)"
# A pod network of the run's own: its own bridge, range and leases, removed at the end, so
# neither the host's /etc/icetray nor an icetray0 of a real icetray on this host is touched.
bridge="itcritest0"
mkdir -p "$work/net.d"
cat > "$work/net.d/10-critest.conflist" <<JSON
{ "cniVersion": "1.0.0", "name": "icetray-critest",
  "plugins": [
    { "type": "bridge", "bridge": "$bridge", "isGateway": true, "ipMasq": true, "hairpinMode": true,
      "ipam": { "type": "host-local", "ranges": [[{ "subnet": "10.251.0.0/16" }]], "dataDir": "$work/leases" } },
    { "type": "portmap", "capabilities": { "portMappings": true } } ] }
JSON
cat > "$work/config.toml" <<TOML
socket = "$socket"
root_dir = "$work/root"
state_dir = "$work/state"
cni_conf_dir = "$work/net.d"

[registry.mirrors."registry.k8s.io"]
endpoints = ["$registry_url"]
[registry.mirrors."gcr.io"]
endpoints = ["$registry_url"]
[registry.mirrors."k8s.gcr.io"]
endpoints = ["$registry_url"]
TOML

# icetray turns net.ipv4.ip_forward on when it is off; give the host back what it had.
ip_forward_before="$(cat /proc/sys/net/ipv4/ip_forward)"
server_pid=""
cleanup() {
  if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
    # critest leaves the pods of specs that failed half-way: remove them through the CRI,
    # as a kubelet would, so no pause, netns or IP outlives the run.
    "$tools/crictl" --config /dev/null --runtime-endpoint "unix://$socket" --image-endpoint "unix://$socket" rmp --all --force >/dev/null 2>&1 || true
    kill -TERM "$server_pid" && wait "$server_pid" || true
  fi
  ip link del "$bridge" 2>/dev/null || true
  echo "$ip_forward_before" > /proc/sys/net/ipv4/ip_forward
  "$here/fixtures/registry.sh" down || true
  local leftover
  leftover="$(grep -o " $work/[^ ]*" /proc/self/mountinfo || true)"
  if [[ -n "$leftover" ]]; then
    echo "warning: icetray left mounts behind (a bug):$leftover" >&2
    echo "$leftover" | xargs -r umount
  fi
  rm -rf "$work"
}
trap cleanup EXIT

node "$repo/dist/src/cli/main.js" serve --config "$work/config.toml" > "$out/icetray.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do
  [[ -S "$socket" ]] && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$out/icetray.log" >&2; echo "error: icetray did not start" >&2; exit 1; }
  sleep 0.1
done

echo "running critest $version against unix://$socket (report: $out/junit.xml)"
set +e
# Bounded: a hung spec must fail the run, not hold CI until its own limit.
timeout --kill-after=30s "${ICETRAY_CRITEST_TIMEOUT:-20m}" "$tools/critest" \
  --runtime-endpoint "unix://$socket" \
  --image-endpoint "unix://$socket" \
  --ginkgo.junit-report "$out/junit.xml" \
  --ginkgo.no-color \
  -test.timeout 0 \
  "$@" > "$out/critest.log" 2>&1
critest_rc=$?
set -e
if [[ ! -s "$out/junit.xml" ]]; then
  tail -50 "$out/critest.log" >&2
  echo "error: critest exited $critest_rc without a JUnit report" >&2
  exit 1
fi

node "$here/summarize-junit.js" "$out/junit.xml" "$here/expected-pass.txt" "$here/expected-fail.txt" "$out"
