#!/usr/bin/env bash
# Pull-request push -> its preview applied by Flux, on a real Gitea + runner
# (host mode) and the real Flux source- and kustomize-controller
# (internal/kubeenv) following the GitOps repository on that Gitea. The
# site's workflows run the action with wait: true, so a run completes when
# Flux has applied its GitOps commit and the Deployment runs the image.
# Each round times, from the git push to the run's completion as Gitea
# reports it (polled every 250 ms), interleaved:
#
#   preview  a push to an open pull request (notesctl preview --wait)
#   release  a push to main (notesctl release --wait), the yardstick
#
#   bench/preview.sh          # N=5 rounds (+1 untimed warm-up)
#   N=3 bench/preview.sh
#
# Target (issue #14): preview within 2x a release with --wait.
# Needs the Gitea and kube tools (tools/gitea/build.sh, tools/kube/build.sh,
# built here when missing), docker-registry and git on PATH.
# The harness is TestBenchPreviewFlux in internal/actiontest.
set -euo pipefail
# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

N="${N:-5}"
cd "$BENCH_ROOT"
export PATH="$(go env GOPATH)/bin:$PATH"
bash tools/kube/build.sh >/dev/null || die "tools/kube/build.sh failed"
bash tools/gitea/build.sh >/dev/null || die "tools/gitea/build.sh failed"
printf 'bench/preview.sh: %s rounds (+1 warm-up) on %s (%s); load average at start: %s\n' \
	"$N" "$(uname -n)" "$(date -u +%FT%TZ)" "$(cut -d' ' -f1-3 /proc/loadavg)"
log="$(mktemp "${TMPDIR:-/tmp}/notesctl-bench-preview.XXXXXX")"
rc=0
NOTESCTL_BENCH_PREVIEW="$N" NOTESCTL_REQUIRE_TOOLS=1 \
	go test ./internal/actiontest -run '^TestBenchPreviewFlux$' -count=1 -timeout 60m -v >"$log" 2>&1 || rc=$?
grep -oE 'bench-preview: .*' "$log" || true
if [ "$rc" -ne 0 ]; then
	tail -n 80 "$log" >&2
	die "the harness failed (exit $rc); full log: $log"
fi
rm -f "$log"
