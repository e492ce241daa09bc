#!/usr/bin/env bash
# Builds etcd, kube-apiserver, kube-scheduler, kube-controller-manager and kubectl
# from the pinned Go modules in e2e/controlplane into a cache directory, only when
# a binary is missing or was built from other pins, flags or Go version.
# Usage: build-controlplane.sh [DIR]   (default $CONTROLPLANE_BIN_DIR or .cache/controlplane/bin)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$root/e2e/controlplane"
out="${1:-${CONTROLPLANE_BIN_DIR:-$root/.cache/controlplane/bin}}"
mkdir -p "$out"

kube_version="$(cd "$mod" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
major="${kube_version#v}"; major="${major%%.*}"
minor="${kube_version#v*.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version -X k8s.io/component-base/version.gitMajor=$major -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

# The stamp covers everything that changes the binaries: the pins, the etcd
# main, the link flags and the Go toolchain.
stamp="$( { cat "$mod/go.mod" "$mod/go.sum" "$mod"/etcd/*.go; echo "$ldflags"; go version; } | sha256sum | cut -c1-16)"

missing=0
for b in "${cmds[@]}" etcd; do
	[[ -x "$out/$b" ]] || missing=1
done
if [[ $missing == 0 && -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
	echo "control plane $kube_version already built in $out"
	exit 0
fi

echo "building control plane $kube_version into $out"
echo "a cold build takes about 9-10 minutes on 2 cores ($(nproc) here), plus downloading the Go modules"
echo "later runs reuse the cache and take well under a second"
rm -f "$out/.stamp"
start=$SECONDS
cd "$mod"
total=$(( ${#cmds[@]} + 1 ))
step=0
for cmd in "${cmds[@]}"; do
	step=$((step + 1))
	echo "  [$step/$total, $((SECONDS - start))s] building $cmd"
	CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "$ldflags" -o "$out/$cmd" "k8s.io/kubernetes/cmd/$cmd"
done
echo "  [$total/$total, $((SECONDS - start))s] building etcd"
CGO_ENABLED=0 go build -buildvcs=false -trimpath -ldflags "-s -w" -o "$out/etcd" ./etcd
echo "$stamp" > "$out/.stamp"
echo "control plane built in $((SECONDS - start))s"
