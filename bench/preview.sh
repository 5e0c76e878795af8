#!/usr/bin/env bash
# Pull-request push -> its preview applied by Flux, on the real source- and
# kustomize-controller (internal/kubeenv, a git http-backend and an
# in-process registry, all on 127.0.0.1): notesctl preview (render, push,
# GitOps commit of previews/pr-12/), then requestedAt on the GitRepository and
# the scaffolded previews Kustomization, until the preview Deployment carries
# the new image.
#
#   bench/preview.sh          # N=5 rounds, testdata/site
#   N=3 bench/preview.sh
#
# Target (issue #14): within 2x a release with --wait (bench/flux.sh case a).
# The harness is TestPreviewFluxTimes in cmd/notesctl/preview_bench_test.go.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-5}"
cd "$BENCH_ROOT"
bash tools/kube/build.sh >/dev/null || die "tools/kube/build.sh failed"
out="$(mktemp "${TMPDIR:-/tmp}/notesctl-bench-preview.XXXXXX")"
trap 'rm -f "$out"' EXIT
printf 'bench/preview.sh: %s rounds on %s (%s)\n' "$N" "$(uname -n)" "$(date -u +%FT%TZ)"
if ! NOTESCTL_BENCH_PREVIEW="$N" NOTESCTL_REQUIRE_TOOLS=1 go test ./cmd/notesctl -run '^TestPreviewFluxTimes$' -count=1 -v -timeout 60m >"$out" 2>&1; then
	tail -n 60 "$out" >&2
	die "the benchmark failed"
fi
grep -o 'PREVIEWBENCH .*' "$out"
