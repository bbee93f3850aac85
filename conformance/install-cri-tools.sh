#!/usr/bin/env bash
# Builds crictl and critest of sigs.k8s.io/cri-tools from the Go module proxy.
#
# Nothing built here is committed: the binaries go to a cache folder outside git
# ($ICETRAY_TOOLS_DIR, default /var/cache/icetray/cri-tools/<version>). A second
# run with the binaries already there does nothing.
#
# critest is a Go *test* binary, so it is compiled with `go test -c` from a
# throw-away module that requires cri-tools; crictl is an ordinary `go build`.
set -euo pipefail

version="${CRI_TOOLS_VERSION:-v1.37.0}"
dest="${ICETRAY_TOOLS_DIR:-/var/cache/icetray/cri-tools/$version}"

if [[ -x "$dest/crictl" && -x "$dest/critest" ]]; then
  echo "cri-tools $version already built in $dest"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is needed to build cri-tools (Debian: apt-get install golang-go, or a newer Go)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"

cd "$work"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod
go mod init icetray.local/cri-tools-build >/dev/null 2>&1
go mod download "sigs.k8s.io/cri-tools@$version"
# Start from cri-tools' own go.sum so that every dependency resolves exactly as
# upstream pinned it (the module zip drops vendor/, so -mod=mod, not -mod=vendor).
cat "$(go env GOMODCACHE)/sigs.k8s.io/cri-tools@$version/go.sum" >> go.sum
go get "sigs.k8s.io/cri-tools@$version"
ldflags="-X sigs.k8s.io/cri-tools/pkg/version.Version=${version#v}"
echo "building crictl $version"
go build -trimpath -ldflags "$ldflags" -o "$dest/crictl" sigs.k8s.io/cri-tools/cmd/crictl
echo "building critest $version"
go test -c -trimpath -ldflags "$ldflags" -o "$dest/critest" sigs.k8s.io/cri-tools/cmd/critest
echo "cri-tools $version built in $dest"
"$dest/crictl" --version
