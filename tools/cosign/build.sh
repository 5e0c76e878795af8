#!/usr/bin/env bash
# tools/cosign/build.sh [CACHE_DIR]
#
# Builds, once, the real cosign CLI that the signature tests run to check
# notesctl's signatures and attestations (cosign verify --key,
# cosign verify-attestation --key):
#
#   CACHE_DIR/bin/cosign   github.com/sigstore/cosign/v3 v3.1.3 (wrapper module cosign/)
#
# CACHE_DIR defaults to ${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY.
# Same scheme as tools/kube/build.sh: a stamp per artifact (versions, Go version,
# hash of the wrapper module); a matching stamp means no rebuild; the wrapper
# module is copied into CACHE_DIR/src and built there, so the repository stays
# clean.
#
# Why not in tools/kube/flux's wrapper module: source-controller v1.9.6 already
# links cosign (v3.0.6, for OCIRepository .spec.verify). Requiring v3.1.3 there
# (go get in a copy of that module, go list -m all before and after) changes 47
# of its modules: cosign v3.0.6 -> v3.1.3, sigstore-go v1.2.0 -> v1.2.2, rekor,
# rekor-tiles, go-tuf, go-containerregistry v0.21.6 -> v0.21.7, the go-openapi
# set, opa, ... (k8s.io/* stay: both are on v0.36.x, the wrapper's v0.36.4 wins).
# The Flux controllers the tests run would then no longer be built with the
# dependencies Flux released them with. A module of its own keeps both exact.
#
# Needs: Go (GOTOOLCHAIN=local is forced), access to the Go module proxy on a
# cold cache.
#
# The tests find the result through NOTESCTL_COSIGN=CACHE_DIR/bin/cosign, or at
# the default location, or cosign on PATH (internal/testenv.Cosign).
set -euo pipefail

# Keep in sync with internal/testenv (CosignVersionKey); a test checks it.
COSIGN_VERSION=v3.1.3
VERSION_KEY=cosign-v3.1.3-r1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
bin="$cache/bin"
stamps="$cache/stamps"
src="$cache/src"
mkdir -p "$bin" "$stamps" "$src"

export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

command -v go >/dev/null || { echo "build.sh: go not found on PATH" >&2; exit 1; }

# One build at a time per cache directory (parallel CI jobs, several engineers).
exec 9>"$cache/.lock"
if ! flock -n 9; then
	echo "build.sh: waiting for another build of $cache to finish..." >&2
	flock 9
fi

total_start=$SECONDS
log() { printf '[cosign build.sh %4ds] %s\n' "$((SECONDS - total_start))" "$*"; }

stamp_for() {
	local name=$1
	shift
	printf '%s\n' "$name" "$@" "$(go env GOVERSION)" "$(go env GOOS)/$(go env GOARCH)"
}

wrapper_hash() {
	(cd "$1" && cat go.mod go.sum tools.go | sha256sum | cut -d' ' -f1)
}

up_to_date() {
	local name=$1 want=$2 file=${3:-}
	[[ -f "$stamps/$name" ]] || return 1
	[[ "$(cat "$stamps/$name")" == "$want" ]] || return 1
	[[ -z "$file" || -x "$file" ]] || return 1
}

# build_wrapper MODULE NAME PACKAGE LDFLAGS VERSIONS...: builds PACKAGE from the
# wrapper module tools/cosign/MODULE into $bin/NAME.
build_wrapper() {
	local mod=$1 name=$2 pkg=$3 ldflags=$4
	shift 4
	local want
	want="$(stamp_for "$name" "$@" "wrapper=$(wrapper_hash "$here/$mod")" "ldflags=$ldflags")"
	if up_to_date "$name" "$want" "$bin/$name"; then
		log "$name: cached ($*)"
		return
	fi
	local start=$SECONDS
	log "$name: building $pkg ($*)..."
	rm -rf "${src:?}/$mod"
	mkdir -p "$src/$mod"
	cp "$here/$mod/go.mod" "$here/$mod/go.sum" "$here/$mod/tools.go" "$src/$mod/"
	(cd "$src/$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
	"$bin/.$name.tmp" version >/dev/null
	mv -f "$bin/.$name.tmp" "$bin/$name"
	printf '%s\n' "$want" >"$stamps/$name"
	log "$name: built in $((SECONDS - start))s ($(du -h "$bin/$name" | cut -f1))"
}

log "cache: $cache"
build_wrapper cosign cosign github.com/sigstore/cosign/v3/cmd/cosign \
	"-s -w -buildid= -X sigs.k8s.io/release-utils/version.gitVersion=$COSIGN_VERSION -X sigs.k8s.io/release-utils/version.gitTreeState=clean" \
	"cosign=$COSIGN_VERSION"

log "done in $((SECONDS - total_start))s"
echo "NOTESCTL_COSIGN=$bin/cosign"
