#!/usr/bin/env bash
# Builds the developer tools pinned in hack/tools (golangci-lint) into a cache
# directory, only when a binary is missing or was built from other pins or
# another Go version.
# Usage: build-tools.sh [DIR]   (default $TOOLS_BIN_DIR or .cache/tools/bin)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mod="$root/hack/tools"
out="${1:-${TOOLS_BIN_DIR:-$root/.cache/tools/bin}}"
mkdir -p "$out"

version="$(cd "$mod" && go list -m -f '{{.Version}}' github.com/golangci/golangci-lint/v2)"
# The stamp covers everything that changes the binary: the pins and the Go toolchain.
stamp="$( { cat "$mod/go.mod" "$mod/go.sum"; go version; } | sha256sum | cut -c1-16)"

if [[ -x "$out/golangci-lint" && -f "$out/.stamp" && "$(cat "$out/.stamp")" == "$stamp" ]]; then
	exit 0
fi

echo "building golangci-lint $version into $out"
echo "a cold build takes about 1-2 minutes on 2 cores ($(nproc) here), plus downloading the Go modules"
rm -f "$out/.stamp"
start=$SECONDS
cd "$mod"
CGO_ENABLED=0 go build -buildvcs=false -trimpath \
	-ldflags "-s -w -X main.version=${version#v} -X main.commit=pinned -X main.date=unknown" \
	-o "$out/golangci-lint" github.com/golangci/golangci-lint/v2/cmd/golangci-lint
echo "$stamp" > "$out/.stamp"
echo "golangci-lint $version built in $((SECONDS - start))s"
