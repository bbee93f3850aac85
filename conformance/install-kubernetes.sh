#!/usr/bin/env bash
# Builds, from the Go module proxy, the parts of Kubernetes that drive icetray as a node would:
#
#   kubelet        the CRI client icetray exists for (cmd/kubelet)
#   e2e_node.test  Kubernetes' node e2e suite (test/e2e_node), with its [NodeConformance] specs
#   agnhost        the test image most of those specs run (test/images/agnhost)
#
# Nothing built here is committed: they go to $ICETRAY_KUBERNETES_DIR (default
# /var/cache/icetray/kubernetes/<version>). A second run with them already there does nothing.
#
# Why a throw-away module: k8s.io/kubernetes requires its staging modules (k8s.io/api, client-go,
# cri-api, …) at v0.0.0 and replaces them with ./staging/…, which the module zip lacks. Replacing
# each of them with its published v0.MINOR.PATCH twin makes the module buildable as a dependency.
set -euo pipefail

version="${KUBERNETES_VERSION:-v1.37.2}"
dest="${ICETRAY_KUBERNETES_DIR:-/var/cache/icetray/kubernetes/$version}"
wanted=(kubelet e2e_node.test agnhost)
[[ $# -gt 0 ]] && wanted=("$@")

missing=()
for binary in "${wanted[@]}"; do [[ -x "$dest/$binary" ]] || missing+=("$binary"); done
if ((${#missing[@]} == 0)); then
  echo "kubernetes $version (${wanted[*]}) already built in $dest"
  exit 0
fi

if ! command -v go >/dev/null 2>&1; then
  echo "error: Go is needed to build the kubelet (Debian: apt-get install golang-go, or a newer Go)" >&2
  exit 1
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir -p "$dest"
cd "$work"
export CGO_ENABLED=0 GOTOOLCHAIN=local GOFLAGS=-mod=mod

go mod init icetray.local/kubernetes-build >/dev/null 2>&1
go mod edit -go=1.26.0 -require="k8s.io/kubernetes@$version"
source="$(go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
gomod="$source/go.mod"
staging="v0.${version#v1.}"
# Every `k8s.io/NAME => ./staging/src/k8s.io/NAME` of kubernetes' own go.mod.
for module in $(sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod"); do
  go mod edit -replace="$module=$module@$staging"
done
cat >tools.go <<'EOF'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/test/images/agnhost"
)
EOF
# Start from kubernetes' own go.sum, so every dependency resolves as upstream pinned it.
cat "$source/go.sum" >>go.sum
go mod tidy

# -s -w: no symbol table or DWARF; linking these large binaries is a good part of a fresh build.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$version -X k8s.io/component-base/version.gitMajor=1"
ldflags+=" -X k8s.io/component-base/version.gitMinor=$(cut -d. -f2 <<<"$version")"
for binary in "${missing[@]}"; do
  echo "building $binary $version (the first build takes 10-20 minutes on 2 cores)"
  case "$binary" in
    kubelet) go build -trimpath -ldflags "$ldflags" -o "$dest/kubelet" k8s.io/kubernetes/cmd/kubelet ;;
    agnhost) go build -trimpath -ldflags "-s -w" -o "$dest/agnhost" k8s.io/kubernetes/test/images/agnhost ;;
    e2e_node.test) go test -c -trimpath -ldflags "$ldflags" -o "$dest/e2e_node.test" k8s.io/kubernetes/test/e2e_node ;;
    *) echo "error: unknown binary $binary" >&2 && exit 1 ;;
  esac
done
echo "kubernetes $version built in $dest"
"$dest/kubelet" --version 2>/dev/null || true
