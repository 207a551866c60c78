#!/usr/bin/env bash
# Builds the Kubernetes binaries that localcluster runs: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and the kubelet (the real node), and helm,
# from the Go module proxy with the installed Go.
#
# Each binary lands in $KUBETASKS_CACHE/bin/<component>-<version>/<component>
# (default cache: ~/.cache/kubetasks). A component whose binary is already there
# is not rebuilt, so a second run takes no time. A cold build takes 12 to 30 minutes on
# two cores, module downloads included (29 measured with empty Go caches beside a test run;
# see localcluster/README.md).
#
# The versions are pinned here, where localcluster/controlplane.py reads them, and in
# the go.mod files of gobuild/ (checked below to agree). To move to another release,
# change both, run `go mod tidy` in the gobuild module and commit its go.sum.
set -euo pipefail

ETCD_VERSION=v3.5.35
KUBERNETES_VERSION=v1.33.13
HELM_VERSION=v3.22.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${KUBETASKS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/kubetasks}"
bin_root="$cache/bin"

export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:+$GOFLAGS }-trimpath -buildvcs=false"
jobs=(-p 2)

if ! command -v go >/dev/null; then
    echo "build-binaries: 'go' is not on PATH; install Go 1.26 or newer" >&2
    exit 1
fi

# require_module DIR MODULE VERSION: the wrapper module in gobuild/DIR builds VERSION.
require_module() {
    if ! grep -Eq "^(require)?[[:space:]]*$2 $3( |\$)" "$here/gobuild/$1/go.mod"; then
        echo "build-binaries: gobuild/$1/go.mod does not require $2 $3; make it agree with this script" >&2
        exit 1
    fi
}
require_module etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
require_module kube k8s.io/kubernetes "$KUBERNETES_VERSION"
# k8s.io/kubernetes v1.Y.Z goes with its staging modules (k8s.io/api, ...) at v0.Y.Z.
if grep '=>' "$here/gobuild/kube/go.mod" | grep -vq " v0.${KUBERNETES_VERSION#v1.}\$"; then
    echo "build-binaries: gobuild/kube/go.mod must replace every staging module with v0.${KUBERNETES_VERSION#v1.}" >&2
    exit 1
fi

# build_component NAME VERSION COMMAND...: runs COMMAND with $out set to a scratch
# directory, expects $out/NAME, and moves it into the cache only once it is whole.
build_component() {
    local name="$1" version="$2"
    shift 2
    local dest="$bin_root/$name-$version"
    if [[ -x "$dest/$name" ]]; then
        echo "build-binaries: $name $version cached at $dest/$name"
        return
    fi
    echo "build-binaries: building $name $version (this takes a while) ..."
    local started=$SECONDS
    mkdir -p "$bin_root"
    out="$(mktemp -d "$bin_root/.$name-$version.XXXXXX")"
    # The scratch directory is removed on failure so a retry starts clean.
    if ! "$@"; then
        rm -rf "$out"
        echo "build-binaries: building $name $version failed" >&2
        exit 1
    fi
    chmod 755 "$out"
    rm -rf "$dest"
    mv "$out" "$dest"
    echo "build-binaries: built $name $version in $((SECONDS - started))s at $dest/$name"
}

build_etcd() {
    (cd "$here/gobuild/etcd" && go build "${jobs[@]}" -o "$out/etcd" .)
}

kube_ldflags() {
    local version="${KUBERNETES_VERSION#v}"
    local major="${version%%.*}" minor
    minor="${version#*.}"
    minor="${minor%%.*}"
    local flags="-s -w"
    local pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION"
        flags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean"
        flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    echo "$flags"
}

build_kube() {
    local name="$1"
    (cd "$here/gobuild/kube" && go build "${jobs[@]}" -ldflags "$(kube_ldflags)" -o "$out/$name" "./cmd/$name")
}

build_helm() {
    GOBIN="$out" go install "${jobs[@]}" \
        -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean" \
        "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
}

build_component etcd "$ETCD_VERSION" build_etcd
build_component kube-apiserver "$KUBERNETES_VERSION" build_kube kube-apiserver
build_component kube-controller-manager "$KUBERNETES_VERSION" build_kube kube-controller-manager
build_component kube-scheduler "$KUBERNETES_VERSION" build_kube kube-scheduler
build_component kubelet "$KUBERNETES_VERSION" build_kube kubelet
build_component helm "$HELM_VERSION" build_helm
echo "build-binaries: all binaries are in $bin_root"
