#!/usr/bin/env bash
# tools/gitea/build.sh [CACHE_DIR]
#
# Builds, once, the real forge and runner that the Actions tests
# (internal/giteaenv) run as local processes:
#
#   CACHE_DIR/bin/gitea         code.gitea.io/gitea v1.26.0 (wrapper module gitea/;
#                               CGO + sqlite, no bindata)
#   CACHE_DIR/bin/act_runner    gitea.com/gitea/runner v1.0.8 (wrapper module runner/)
#   CACHE_DIR/static/           templates/, options/, public/ of the Gitea module: a
#                               Gitea built without bindata reads them from
#                               STATIC_ROOT_PATH, so the tests point it here
#
# CACHE_DIR defaults to ${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY.
# Same scheme as tools/kube/build.sh: a stamp per artifact (versions, Go version,
# hash of the wrapper module); a matching stamp means no rebuild; wrapper modules
# are copied into CACHE_DIR/src and built there, so the repository stays clean.
#
# Needs: Go (GOTOOLCHAIN=local is forced), gcc and libc6-dev (Gitea's sqlite driver
# is cgo), access to the Go module proxy on a cold cache.
#
# The tests find the result through NOTESCTL_GITEA_TOOLS=CACHE_DIR (holding bin/
# and static/), or at the default location without it.
set -euo pipefail

# Keep in sync with internal/giteaenv (DefaultVersionKey); a test checks it.
GITEA_VERSION=v1.26.0
RUNNER_VERSION=v1.0.8
VERSION_KEY=gitea-v1.26.0-runner-v1.0.8-r1

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
bin="$cache/bin"
static="$cache/static"
stamps="$cache/stamps"
src="$cache/src"
mkdir -p "$bin" "$stamps" "$src"

export GOTOOLCHAIN=local
export GOFLAGS="-mod=mod -buildvcs=false"

command -v go >/dev/null || { echo "build.sh: go not found on PATH" >&2; exit 1; }
command -v gcc >/dev/null || { echo "build.sh: gcc not found (Gitea's sqlite needs cgo): apt-get install -y gcc libc6-dev" >&2; exit 1; }

# One build at a time per cache directory.
exec 9>"$cache/.lock"
if ! flock -n 9; then
	echo "build.sh: waiting for another build of $cache to finish..." >&2
	flock 9
fi

total_start=$SECONDS
log() { printf '[gitea build.sh %4ds] %s\n' "$((SECONDS - total_start))" "$*"; }

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
	[[ -z "$file" || -e "$file" ]] || return 1
}

# build_wrapper NAME OUT PACKAGE CGO TAGS LDFLAGS VERSIONS...: builds PACKAGE from
# the wrapper module tools/gitea/NAME into $bin/OUT.
build_wrapper() {
	local name=$1 out=$2 pkg=$3 cgo=$4 tags=$5 ldflags=$6
	shift 6
	local want
	want="$(stamp_for "$name" "$@" "wrapper=$(wrapper_hash "$here/$name")" "cgo=$cgo" "tags=$tags" "ldflags=$ldflags")"
	if up_to_date "$name" "$want" "$bin/$out"; then
		log "$out: cached ($*)"
		return
	fi
	local start=$SECONDS
	log "$out: building $pkg ($*)..."
	rm -rf "${src:?}/$name"
	mkdir -p "$src/$name"
	cp "$here/$name/go.mod" "$here/$name/go.sum" "$here/$name/tools.go" "$src/$name/"
	(cd "$src/$name" && CGO_ENABLED=$cgo go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$bin/.$out.tmp" "$pkg")
	mv -f "$bin/.$out.tmp" "$bin/$out"
	printf '%s\n' "$want" >"$stamps/$name"
	log "$out: built in $((SECONDS - start))s ($(du -h "$bin/$out" | cut -f1))"
}

# copy_static copies the Gitea module's templates, options and public assets
# out of the module cache, so that a `go clean -modcache` does not break the
# tests and the files are writable like a normal install.
copy_static() {
	local want
	want="$(stamp_for static "gitea=$GITEA_VERSION")"
	if up_to_date static "$want" "$static/templates"; then
		log "static: cached"
		return
	fi
	local dir
	dir="$(cd "$src/gitea" && GOFLAGS= go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
	[[ -d "$dir/templates" && -d "$dir/options" ]] || { echo "build.sh: no templates/options in $dir" >&2; exit 1; }
	rm -rf "$cache/.static.tmp"
	mkdir -p "$cache/.static.tmp"
	cp -r "$dir/templates" "$dir/options" "$dir/public" "$cache/.static.tmp/"
	chmod -R u+w "$cache/.static.tmp"
	rm -rf "$static"
	mv "$cache/.static.tmp" "$static"
	printf '%s\n' "$want" >"$stamps/static"
	log "static: copied from $dir ($(du -sh "$static" | cut -f1))"
}

log "cache: $cache"
# The runner first: it takes about a minute, Gitea about ten.
build_wrapper runner act_runner gitea.com/gitea/runner 0 "" \
	"-s -w -X gitea.com/gitea/runner/internal/pkg/ver.version=$RUNNER_VERSION" \
	"runner=$RUNNER_VERSION"
build_wrapper gitea gitea code.gitea.io/gitea 1 "sqlite sqlite_unlock_notify" \
	"-s -w -X main.Version=${GITEA_VERSION#v} -X 'main.Tags=sqlite sqlite_unlock_notify'" \
	"gitea=$GITEA_VERSION"
copy_static

log "done in $((SECONDS - total_start))s"
echo "NOTESCTL_GITEA_TOOLS=$cache"
