#!/usr/bin/env bash
# The seed's flow, live (issue #12): from `git commit` of an edited note in
# the site repository to headless Chromium reading the edit, on the flow of
# TestSeedFlow (cmd/notesctl/seedflow_test.go), every box real:
#
#   site commit -> notesctl release --wait (the built binary)
#     -> CNCF Distribution (htpasswd + TLS) -> GitOps repo on git http-backend
#     -> Flux source-controller + kustomize-controller (requestedAt)
#     -> a real node: kube-controller-manager rolls the Deployment out,
#        kube-scheduler places the pods, kubelet runs them with containerd +
#        runc, its readiness probe passes, the Service's endpoints move
#        (without the node's tools, runc runs the Deployment's image under
#        its pod spec instead: see cmd/notesctl/seedflow_test.go)
#     -> Chromium reads the edit through the Service
#
#   bench/live.sh            # N=5 rounds on testdata/site
#   N=3 bench/live.sh
#
# Target (issue #12): within 3 s for testdata/site. Needs root (runc), runc,
# containerd, containernetworking-plugins, busybox-static, nginx-light,
# chromium, docker-registry, git and the tools of tools/kube/build.sh (built
# here if missing).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-5}"
cd "$BENCH_ROOT"
bash tools/kube/build.sh >/dev/null || die "tools/kube/build.sh failed"
out="$(mktemp "${TMPDIR:-/tmp}/notesctl-bench-live.XXXXXX")"
trap 'rm -f "$out"' EXIT
printf 'bench/live.sh: %s rounds on %s (%s)\n' "$N" "$(uname -n)" "$(date -u +%FT%TZ)"
if ! NOTESCTL_BENCH_LIVE="$N" NOTESCTL_REQUIRE_TOOLS=1 go test ./cmd/notesctl -run '^TestSeedFlowLive$' -count=1 -v -timeout 30m >"$out" 2>&1; then
	tail -n 60 "$out" >&2
	die "the benchmark failed"
fi
printf '%-6s %9s   %s\n' round total 'seconds after the commit: gitops commit / Deployment spec / serving / browser reads it'
grep '^LIVEBENCH ' "$out" | awk '{printf "%-6s %8.3f s   %.3f / %.3f / %.3f / %.3f\n", $2, $3, $4, $5, $6, $7}'
echo
grep '^LIVEBENCH-MEDIAN ' "$out" | sed 's/^LIVEBENCH-MEDIAN /median /'
