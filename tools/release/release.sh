#!/usr/bin/env bash
# tools/release/release.sh [-o DIR] VERSION
#
# Builds the release archives of notesctl from the current commit:
#
#   DIR/notesctl_linux_amd64.tar.gz    notesctl binary + README.md
#   DIR/notesctl_linux_arm64.tar.gz
#   DIR/notesctl_darwin_arm64.tar.gz
#   DIR/checksums.txt                  sha256sum format, one line per archive
#
# DIR defaults to dist/VERSION. The archive names carry no version so that
# action.yml can find them from nothing but the tag it was fetched at
# (.../releases/download/<tag>/notesctl_<os>_<arch>.tar.gz).
#
# Reproducible: the same commit, VERSION and Go toolchain give the same bytes.
# The binaries are built with -trimpath and no VCS stamping; version, commit
# and date are set with -ldflags -X, and the date is the commit's time
# (SOURCE_DATE_EPOCH), not the wall clock. The tar files have sorted names,
# fixed owners, modes and mtimes; gzip stores no name or time.
#
# The work tree must be clean (a release is of a commit), unless
# NOTESCTL_RELEASE_ALLOW_DIRTY=1 (tests). PLATFORMS overrides the platform list
# ("linux/amd64 linux/arm64 darwin/arm64"). See docs/releasing.md.
set -euo pipefail

out=""
while getopts "o:" opt; do
	case $opt in
	o) out=$OPTARG ;;
	*) echo "usage: $0 [-o DIR] VERSION" >&2; exit 2 ;;
	esac
done
shift $((OPTIND - 1))
[[ $# -eq 1 ]] || { echo "usage: $0 [-o DIR] VERSION   (e.g. v1.2.0)" >&2; exit 2; }
version=$1
[[ "$version" =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]] ||
	{ echo "release.sh: version $version: want vMAJOR.MINOR.PATCH[-PRERELEASE], e.g. v1.2.0" >&2; exit 2; }

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
platforms=${PLATFORMS:-"linux/amd64 linux/arm64 darwin/arm64"}
out=${out:-dist/$version}

if [[ -n "$(git status --porcelain)" && "${NOTESCTL_RELEASE_ALLOW_DIRTY:-}" != 1 ]]; then
	echo "release.sh: the work tree has uncommitted changes; a release is built from a commit:" >&2
	git status --short >&2
	exit 1
fi
commit=$(git rev-parse HEAD)
epoch=$(git log -1 --format=%ct HEAD)
date=$(TZ=UTC0 date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-buildvcs=false" SOURCE_DATE_EPOCH=$epoch
ldflags="-s -w -X main.version=$version -X main.commit=$commit -X main.date=$date"

mkdir -p "$out"
out="$(cd "$out" && pwd)"
stage="$(mktemp -d "${TMPDIR:-/tmp}/notesctl-release.XXXXXX")"
trap 'rm -rf "$stage"' EXIT

echo "release.sh: notesctl $version, commit $commit, date $date, $(go env GOVERSION)"
archives=()
for p in $platforms; do
	goos=${p%/*} goarch=${p#*/}
	name="notesctl_${goos}_${goarch}"
	mkdir -p "$stage/$name"
	GOOS=$goos GOARCH=$goarch go build -trimpath -ldflags "$ldflags" -o "$stage/$name/notesctl" ./cmd/notesctl
	cp README.md "$stage/$name/README.md"
	# Fixed metadata, so only the bytes of the files decide the archive's bytes.
	tar --create --format=ustar --sort=name --owner=0 --group=0 --numeric-owner \
		--mtime="@$epoch" --mode='u+rwX,go+rX,go-w' -C "$stage/$name" notesctl README.md |
		gzip -n -9 >"$stage/$name.tar.gz"
	mv -f "$stage/$name.tar.gz" "$out/$name.tar.gz"
	archives+=("$name.tar.gz")
	echo "release.sh: $out/$name.tar.gz ($(du -h "$out/$name.tar.gz" | cut -f1))"
done
(cd "$out" && sha256sum "${archives[@]}" >checksums.txt.tmp && mv -f checksums.txt.tmp checksums.txt)
echo "release.sh: $out/checksums.txt"
cat "$out/checksums.txt"
