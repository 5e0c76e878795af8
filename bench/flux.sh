#!/usr/bin/env bash
# Site commit -> the Deployment spec carries the new image, on the real Flux
# controllers (internal/kubeenv: etcd, kube-apiserver, source-, kustomize-,
# image-reflector-, image-automation- and notification-controller, a git
# http-backend and an in-process registry, all on 127.0.0.1):
#
#   a  notesctl release --wait          (requestedAt on GitRepository + Kustomization)
#   b  notesctl release --flux-webhook  (the scaffolded generic-hmac Receiver)
#   c  notesctl build, then Flux alone: a Receiver call makes the
#      ImageRepository (interval 1m) scan, image-automation-controller commits,
#      the GitRepository fetches at its scaffolded 1m interval
#
#   bench/flux.sh             # N=5 rounds, testdata/site
#   N=3 bench/flux.sh
#
# Targets (issue #11): a and b within 2 s for testdata/site; c is recorded.
# Needs the tools of tools/kube/build.sh (built here if missing).
# The harness is TestFluxRolloutTimes in cmd/notesctl/flux_bench_test.go.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-5}"
cd "$BENCH_ROOT"
bash tools/kube/build.sh >/dev/null || die "tools/kube/build.sh failed"
out="$(mktemp "${TMPDIR:-/tmp}/notesctl-bench-flux.XXXXXX")"
trap 'rm -f "$out"' EXIT
printf 'bench/flux.sh: %s rounds on %s (%s)\n' "$N" "$(uname -n)" "$(date -u +%FT%TZ)"
if ! NOTESCTL_BENCH_FLUX="$N" NOTESCTL_REQUIRE_TOOLS=1 go test ./cmd/notesctl -run '^TestFluxRolloutTimes$' -count=1 -v -timeout 90m >"$out" 2>&1; then
	tail -n 60 "$out" >&2
	die "the benchmark failed"
fi
grep '^FLUXBENCH ' "$out" | awk '{printf "%-26s round %s  %7.3f s\n", $2, $3, $4}'
echo
grep '^FLUXBENCH-MEDIAN ' "$out" | sed 's/^FLUXBENCH-MEDIAN /median /'
