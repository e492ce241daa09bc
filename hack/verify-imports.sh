#!/usr/bin/env bash
# Checks the one-way dependency rules of docs/architecture.md ("Import rules") with `go list`.
# Non-test code only. Rules on other project packages and on k8s.io/paho for the
# transport are checked on all transitive dependencies, so nothing sneaks in
# through a helper; rules that the allowed virtual-kubelet packages would break
# transitively (provider must not use client-go itself, although VK's node
# package does) are checked on direct imports. Packages that do not exist yet
# are skipped.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
M="$(go list -m)"
fail=0

# packages PATTERN: the packages a pattern matches, or nothing if it has no Go code yet.
packages() {
	local dir="${1%/...}"
	if [[ ! -d "$dir" ]] || [[ -z "$(find "$dir" -name '*.go' ! -name '*_test.go' -print -quit)" ]]; then
		echo "skip   $1 (no Go code yet)" >&2
		return 0
	fi
	go list "$@" 2>/dev/null || true
}

# check MODE PATTERN REGEX DESCRIPTION: MODE is deps (transitive) or imports (direct).
check() {
	local mode="$1" pattern="$2" regex="$3" what="$4" pkg bad tmpl ok=1
	if [[ "$mode" == deps ]]; then
		tmpl='{{join .Deps "\n"}}'
	else
		tmpl='{{join .Imports "\n"}}'
	fi
	for pkg in $(packages "$pattern"); do
		bad="$(go list -f "$tmpl" "$pkg" | grep -E "$regex" || true)"
		if [[ -n "$bad" ]]; then
			echo "FAIL   $pkg must not import $what ($mode):" >&2
			head -n 5 <<<"$bad" | sed 's/^/         /' >&2
			fail=1 ok=0
		fi
	done
	if [[ $ok == 1 ]]; then echo "ok     $pattern: no $what ($mode)"; fi
}

# pkg/protocol: standard library only.
for pkg in $(packages ./pkg/protocol/...); do
	bad="$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$pkg" | grep -v -x -F "$pkg" | grep -v "^$M/pkg/protocol" || true)"
	if [[ -n "$bad" ]]; then
		echo "FAIL   $pkg must import the standard library only:" >&2
		sed 's/^/         /' <<<"$bad" >&2
		fail=1
	fi
done
echo "ok     ./pkg/protocol/...: standard library only"
for pkg in $(packages ./pkg/api/...) $(packages ./pkg/fieldcheck/...); do
	bad="$(go list -deps -f '{{if not .Standard}}{{.ImportPath}}{{end}}' "$pkg" | grep -v -x -F "$pkg" || true)"
	if [[ -n "$bad" ]]; then
		echo "FAIL   $pkg must import the standard library only:" >&2
		sed 's/^/         /' <<<"$bad" >&2
		fail=1
	fi
done
echo "ok     ./pkg/api/... and ./pkg/fieldcheck/...: standard library only"

check deps ./tunnel "^(k8s\.io/|github\.com/eclipse/paho|$M/(provider|pkg/controller|tunnel/mqtt|tunnel/http)(/|$))" "k8s.io, paho, provider, pkg/controller, tunnel/mqtt or tunnel/http"
check deps ./tunnel/mqtt/... "^(k8s\.io/|$M/(provider|pkg/controller)(/|$))" "k8s.io, provider or pkg/controller"
check deps ./tunnel/http/... "^(k8s\.io/|github\.com/eclipse/paho|$M/(provider|pkg/controller|tunnel/mqtt)(/|$))" "k8s.io, paho, provider, pkg/controller or tunnel/mqtt"
check imports ./provider/... "^k8s\.io/client-go(/|$)" "client-go"
check deps ./provider/... "^$M/(tunnel/mqtt|tunnel/http|pkg/controller|pkg/config)(/|$)|^github\.com/eclipse/paho" "tunnel/mqtt, tunnel/http, pkg/controller, pkg/config or paho"
check deps ./pkg/controller/... "^$M/(tunnel/mqtt|tunnel/http|pkg/config)(/|$)|^github\.com/eclipse/paho" "tunnel/mqtt, tunnel/http, pkg/config or paho"
# pkg/config binds flags onto the components' Configs: it may import them,
# never the reverse (the checks above keep the components free of it).
check deps ./pkg/config/... "^$M/(cmd|e2e|pkg/basesim)(/|$)" "cmd, e2e or the simulator"
check deps ./pkg/broker "^(k8s\.io/|$M/($|[^p]|p[^k]|pkg/[^f]|pkg/f[^i]))" "k8s.io or project packages but pkg/fieldcheck"
# The test helpers beside it: the MQTT client one stands alone, the broker one
# wraps the broker and nothing else.
check deps ./pkg/broker/mqtttest "^(k8s\.io/|$M/)" "k8s.io or project packages"
check deps ./pkg/broker/brokertest "^k8s\.io/|^$M/($|[^p]|p[^k]|pkg/[^bf]|pkg/b[^r]|pkg/f[^i]|pkg/broker/)" "k8s.io or project packages but pkg/broker and pkg/fieldcheck"
# The test bed is for tests only, and e2e is black-box.
for dir in ./cmd/... ./pkg/... ./provider/... ./tunnel/...; do
	check deps "$dir" "^$M/e2e(/|$)" "e2e packages"
done
if [[ -n "$(packages ./e2e/...)" ]]; then
	bad="$(go list -tags e2e -test -deps ./e2e/... | grep -E "^$M/(provider|pkg/controller)(/|$)" || true)"
	if [[ -n "$bad" ]]; then
		echo "FAIL   e2e must not import provider or pkg/controller:" >&2
		sed 's/^/         /' <<<"$bad" >&2
		fail=1
	fi
	echo "ok     ./e2e/...: no provider or pkg/controller (with tests, -tags e2e)"
fi

if [[ $fail != 0 ]]; then
	echo "import rules violated (see docs/architecture.md, Import rules)" >&2
	exit 1
fi
echo "import rules hold"
