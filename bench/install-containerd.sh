#!/usr/bin/env bash
# Builds containerd (containerd, ctr, containerd-shim-runc-v2) and runc from the Go module proxy,
# for `npm run bench -- --against containerd`.
#
# Nothing built here is committed: the binaries go to $ICETRAY_CONTAINERD_DIR (default
# /var/cache/icetray/containerd/<containerd version>-runc-<runc version>). A second run with them
# already there does nothing.
#
# Each module's source is copied out of the module cache and built in place, so its own go.mod and
# go.sum decide every dependency. containerd needs CGO (its shim and snapshotters); the tags drop the
# snapshotters this host has no use for. runc is built with seccomp, against libseccomp-dev.
set -euo pipefail

containerd_version="${CONTAINERD_VERSION:-v2.4.2}"
runc_version="${RUNC_VERSION:-v1.5.2}"
dest="${ICETRAY_CONTAINERD_DIR:-/var/cache/icetray/containerd/$containerd_version-runc-$runc_version}"
binaries=(containerd ctr containerd-shim-runc-v2 runc)

missing=0
for binary in "${binaries[@]}"; do [[ -x "$dest/$binary" ]] || missing=1; done
if ((missing == 0)); then
  echo "containerd $containerd_version and runc $runc_version already built in $dest"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is needed to build containerd (Debian: apt-get install golang-go, or a newer Go)" >&2
  exit 1
fi
if ! pkg-config --exists libseccomp 2>/dev/null && [[ ! -e /usr/include/seccomp.h ]]; then
  echo "error: runc's seccomp support needs libseccomp-dev (apt-get install libseccomp-dev)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
mkdir -p "$dest"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

# Prints the module cache folder of module@version, downloading it first.
source_of() {
  (cd "$work" && go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
}

echo "fetching containerd $containerd_version and runc $runc_version"
(cd "$work" && go mod init icetray.local/containerd-build >/dev/null 2>&1)
cp -r "$(source_of "github.com/containerd/containerd/v2@$containerd_version")" "$work/containerd"
cp -r "$(source_of "github.com/opencontainers/runc@$runc_version")" "$work/runc"
chmod -R u+w "$work/containerd" "$work/runc"

echo "building containerd $containerd_version"
cd "$work/containerd"
ldflags="-X github.com/containerd/containerd/v2/version.Version=$containerd_version"
ldflags+=" -X github.com/containerd/containerd/v2/version.Revision=module-proxy"
for command in containerd ctr containerd-shim-runc-v2; do
  CGO_ENABLED=1 go build -trimpath -tags "no_btrfs no_devmapper no_zfs no_aufs" \
    -ldflags "$ldflags" -o "$dest/$command" "./cmd/$command"
done

echo "building runc $runc_version"
cd "$work/runc"
CGO_ENABLED=1 go build -trimpath -tags seccomp \
  -ldflags "-X main.version=${runc_version#v} -X main.gitCommit=module-proxy" -o "$dest/runc" .

echo "containerd $containerd_version and runc $runc_version built in $dest"
"$dest/containerd" --version
"$dest/runc" --version
