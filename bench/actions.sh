#!/usr/bin/env bash
# bench/actions.sh: the Actions step on a real Gitea + runner (host mode), warm,
# from the push to the job's completion, against a workflow that only runs the
# hugo CLI on the same site. Results go in bench/README.md.
#
#   N=7 bench/actions.sh            # 7 timed runs each (+1 warm-up), interleaved
#   COLD=1 N=3 bench/actions.sh     # plus one run of @main (source build) with an empty GOCACHE
#
# Needs the Gitea tools (bash tools/gitea/build.sh), docker-registry, git,
# curl and hugo v0.145.0 on PATH (the hugo workflow runs it on the host).
# The harness is TestBenchActions in internal/actiontest: it starts Gitea, the
# runner and a TLS + htpasswd Distribution registry, publishes a release of
# this checkout on the Gitea (tools/release/release.sh, this machine's
# platform), and times each run as Gitea reports it complete (polled every
# 250 ms).
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$BENCH_ROOT"
export PATH="$(go env GOPATH)/bin:$PATH"
HUGO_BIN="$(find_hugo)"
export PATH="$(dirname "$HUGO_BIN"):$PATH"
printf 'hugo: %s\nruns: %s per workflow (+1 warm-up), interleaved; load average at start: %s\n' \
	"$("$HUGO_BIN" version)" "${N:-5}" "$(cut -d' ' -f1-3 /proc/loadavg)"
log="$(mktemp "${TMPDIR:-/tmp}/bench-actions.XXXXXX")"
rc=0
NOTESCTL_BENCH_ACTIONS="${N:-5}" NOTESCTL_BENCH_COLD="${COLD:-0}" \
	go test ./internal/actiontest -run '^TestBenchActions$' -count=1 -timeout 60m -v >"$log" 2>&1 || rc=$?
grep -E '^bench-actions:' "$log" || true
if [ "$rc" -ne 0 ]; then
	tail -n 80 "$log" >&2
	die "the harness failed (exit $rc); full log: $log"
fi
rm -f "$log"
