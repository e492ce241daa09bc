#!/usr/bin/env bash
# Runs every Go fuzz target in the module for FUZZTIME each (default 20s).
# Usage: fuzz.sh [FUZZTIME]   (extra go test flags in $FUZZ_FLAGS)
#
# A target fails when go test fails, except for one case: Go 1.26's fuzz
# coordinator can report a bare "context deadline exceeded" when -fuzztime ends
# while a worker is still mid-call (go.dev/issue/75804, fixed in Go 1.27). That
# run found nothing: no input was written to testdata/fuzz. It counts as passed
# only after the target's committed corpus, replayed deterministically, passes
# too. A real finding always writes its input and always fails here.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
fuzztime="${1:-${FUZZTIME:-20s}}"
go="${GO:-go}"
log="$(mktemp)"
trap 'rm -f "$log"' EXIT

# corpus_files DIR TARGET: the names of the inputs under DIR/testdata/fuzz/TARGET.
corpus_files() {
	ls -1 "$1/testdata/fuzz/$2" 2>/dev/null | sort || true
}

mapfile -t dirs < <(grep -rl --include='*_test.go' '^func Fuzz' . | grep -v '^./.cache/' | xargs -n1 dirname | sort -u)
for dir in "${dirs[@]}"; do
	mapfile -t targets < <(grep -h -o '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go | cut -d' ' -f2 | sort)
	for target in "${targets[@]}"; do
		echo "fuzz $dir $target for $fuzztime"
		before="$(corpus_files "$dir" "$target")"
		# shellcheck disable=SC2086 # FUZZ_FLAGS is a list of flags
		if "$go" test -run '^$' -fuzz "^$target\$" -fuzztime "$fuzztime" ${FUZZ_FLAGS:-} "$dir" 2>&1 | tee "$log"; then
			continue
		fi
		after="$(corpus_files "$dir" "$target")"
		if [[ "$before" != "$after" ]] || grep -q -e 'Failing input written to' -e '^panic:' -e '_test.go:[0-9]*:' "$log" ||
			! grep -q '^    context deadline exceeded$' "$log"; then
			echo "fuzz $dir $target: FAILED" >&2
			exit 1
		fi
		echo "fuzz $dir $target: the fuzzer stopped with a bare 'context deadline exceeded' and wrote no input (go.dev/issue/75804); replaying the committed corpus"
		"$go" test -count=1 -run "^$target\$" "$dir"
	done
done
