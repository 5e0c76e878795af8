#!/usr/bin/env bash
# tools/action/install.sh: the first step of action.yml. Puts a notesctl
# binary on the runner and says how (log line + outputs install-method,
# path, notesctl-version):
#
#   release  the prebuilt archive of the action's own ref, from
#            <download base>/<ref>/notesctl_<os>_<arch>.tar.gz, checked against
#            <download base>/<ref>/checksums.txt (written by
#            tools/release/release.sh). The download base defaults to
#            <server_url>/<action_repository>/releases/download, the same URL
#            shape on GitHub and Gitea.
#   source   go build of the action's checkout with the runner's Go, when the
#            ref has no release (a branch, a commit) or NOTESCTL_INSTALL=source.
#
# A release that exists but cannot be verified (checksum mismatch, archive
# listed but missing) fails the step: it never falls back to building.
#
# Environment (set by action.yml): NOTESCTL_INSTALL (auto|release|source),
# NOTESCTL_DOWNLOAD_URL, NOTESCTL_SERVER_URL, NOTESCTL_ACTION_REPOSITORY,
# NOTESCTL_ACTION_REF, NOTESCTL_ACTION_PATH, NOTESCTL_TOKEN (sent only to the
# server the action came from), NOTESCTL_TOOL_CACHE (runner.tool_cache),
# RUNNER_TEMP, GITHUB_OUTPUT.
set -euo pipefail

say() { printf 'notesctl install: %s\n' "$*"; }
fail() {
	printf '::error title=notesctl install::%s\n' "$*"
	exit 1
}
output() {
	if [[ -n "${GITHUB_OUTPUT:-}" ]]; then
		printf '%s=%s\n' "$1" "$2" >>"$GITHUB_OUTPUT"
	fi
}

mode=${NOTESCTL_INSTALL:-auto}
case $mode in auto | release | source) ;; *) fail "input install: want auto, release or source, got \"$mode\"" ;; esac
ref=${NOTESCTL_ACTION_REF:-}
action_path=${NOTESCTL_ACTION_PATH:-}
[[ -n "$action_path" && -d "$action_path" ]] || fail "the action's directory is unknown (github.action_path is \"$action_path\")"

tmp_root=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
dir="$(mktemp -d "$tmp_root/notesctl.XXXXXX")"
bin="$dir/notesctl"

case "$(uname -s)" in
Linux) os=linux ;;
Darwin) os=darwin ;;
*) os=$(uname -s | tr '[:upper:]' '[:lower:]') ;;
esac
case "$(uname -m)" in
x86_64 | amd64) arch=amd64 ;;
aarch64 | arm64) arch=arm64 ;;
*) arch=$(uname -m) ;;
esac
asset="notesctl_${os}_${arch}.tar.gz"

# fetch URL FILE: 0 on success, 4 on HTTP 404, 1 on any other failure.
fetch() {
	local url=$1 file=$2 code auth=()
	# The workflow token goes only to the server the action came from.
	if [[ -n "${NOTESCTL_TOKEN:-}" && -n "${NOTESCTL_SERVER_URL:-}" && "$url" == "$NOTESCTL_SERVER_URL/"* ]]; then
		auth=(-H "Authorization: token $NOTESCTL_TOKEN")
	fi
	code=$(curl -sS -L --retry 3 --retry-connrefused --connect-timeout 10 -o "$file" -w '%{http_code}' "${auth[@]}" "$url") || return 1
	case $code in
	200) return 0 ;;
	404) return 4 ;;
	*)
		say "GET $url: HTTP $code"
		return 1
		;;
	esac
}

install_release() {
	local base=${NOTESCTL_DOWNLOAD_URL:-}
	if [[ -z "$base" ]]; then
		[[ -n "${NOTESCTL_SERVER_URL:-}" && -n "${NOTESCTL_ACTION_REPOSITORY:-}" ]] || return 4
		base="$NOTESCTL_SERVER_URL/$NOTESCTL_ACTION_REPOSITORY/releases/download"
	fi
	base=${base%/}
	[[ -n "$ref" ]] || return 4
	local url="$base/$ref"
	local rc=0
	fetch "$url/checksums.txt" "$dir/checksums.txt" || rc=$?
	case $rc in
	0) ;;
	4)
		say "no release at $url (checksums.txt: HTTP 404)"
		return 4
		;;
	*) fail "could not download $url/checksums.txt" ;;
	esac
	local want
	want=$(awk -v f="$asset" '$2 == f || $2 == "*" f { print $1 }' "$dir/checksums.txt")
	if [[ -z "$want" ]]; then
		say "the release at $url has no $asset (no build for $os/$arch)"
		return 4
	fi
	[[ "$want" =~ ^[0-9a-f]{64}$ ]] || fail "$url/checksums.txt: the line for $asset does not hold one sha256"
	# The runner's tool cache (shared by the jobs of a self-hosted or host-mode
	# runner) keeps verified binaries by archive checksum: a warm runner skips
	# the download, and a changed release (new checksum) is downloaded again.
	local cached=""
	if [[ -n "${NOTESCTL_TOOL_CACHE:-}" ]]; then
		cached="$NOTESCTL_TOOL_CACHE/notesctl/sha256-$want"
		if [[ -x "$cached/notesctl" ]]; then
			cp "$cached/notesctl" "$bin"
			say "installed the release binary $url/$asset from the runner's tool cache (sha256 $want)"
			return 0
		fi
	fi
	rc=0
	fetch "$url/$asset" "$dir/$asset" || rc=$?
	[[ $rc -eq 0 ]] || fail "the release at $url lists $asset in checksums.txt but it could not be downloaded"
	local got
	got=$(sha256sum "$dir/$asset" | cut -d' ' -f1)
	if [[ "$got" != "$want" ]]; then
		fail "checksum mismatch for $url/$asset: checksums.txt says sha256 $want, the download has sha256 $got; not installing it"
	fi
	tar -xzf "$dir/$asset" -C "$dir" notesctl || fail "could not unpack $asset"
	rm -f "$dir/$asset" "$dir/checksums.txt"
	chmod 0755 "$bin"
	say "installed the release binary $url/$asset (sha256 $got)"
	if [[ -n "$cached" ]] && mkdir -p "$NOTESCTL_TOOL_CACHE/notesctl" 2>/dev/null; then
		# Into place with one rename, so a parallel job never sees half a file.
		local tmp
		tmp=$(mktemp -d "$NOTESCTL_TOOL_CACHE/notesctl/.tmp.XXXXXX") &&
			cp "$bin" "$tmp/notesctl" && { mv -T "$tmp" "$cached" 2>/dev/null || rm -rf "$tmp"; }
	fi
}

install_source() {
	command -v go >/dev/null ||
		fail "no release binary for ref \"$ref\" and no Go on the runner to build one: use a released ref (e.g. @v1.2.0), or add actions/setup-go before this step"
	say "building notesctl from the action's source at ref \"$ref\" with $(go version | cut -d' ' -f3) (go build)"
	local start=$SECONDS
	(cd "$action_path" && GOFLAGS=-buildvcs=false CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/notesctl) ||
		fail "go build of notesctl in $action_path failed"
	say "built in $((SECONDS - start))s"
}

method=""
case $mode in
source)
	install_source
	method=source
	;;
release | auto)
	rc=0
	install_release || rc=$?
	if [[ $rc -eq 0 ]]; then
		method=release
	elif [[ $mode == release ]]; then
		fail "input install is release but ref \"$ref\" has no release binary for $os/$arch"
	else
		install_source
		method=source
	fi
	;;
esac

# Not `| head -n 1`: with pipefail, notesctl's SIGPIPE when head exits early
# would fail the step now and then.
version=$("$bin" version) || fail "the installed notesctl does not run: $bin version failed"
version=${version%%$'\n'*}
say "install-method=$method ($version, $bin)"
output install-method "$method"
output path "$bin"
output notesctl-version "${version#notesctl }"
