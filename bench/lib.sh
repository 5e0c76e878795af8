# Shared helpers of bench/build.sh and bench/release.sh. Source it; do not run it.
# shellcheck shell=bash

BENCH_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export GOTOOLCHAIN=local

die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

# need_time makes sure GNU time is there (peak RSS comes from its %M).
need_time() {
	[ -x /usr/bin/time ] && return 0
	if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
		apt-get install -y time >/dev/null || die "apt-get install time failed"
	else
		die "/usr/bin/time (GNU time) is missing: apt-get install -y time"
	fi
}

# find_hugo prints the hugo CLI to compare against: $HUGO, hugo on PATH, or
# ~/go/bin/hugo. It must be v0.145.0, the version notesctl embeds.
find_hugo() {
	local h="${HUGO:-}"
	[ -n "$h" ] || h="$(command -v hugo || true)"
	[ -n "$h" ] || h="$HOME/go/bin/hugo"
	[ -x "$h" ] || die "hugo CLI not found; go install github.com/gohugoio/hugo@v0.145.0 or set HUGO"
	"$h" version | grep -q 'v0\.145\.0' || die "$h is not hugo v0.145.0: $("$h" version)"
	printf '%s\n' "$h"
}

# settle_binary SRC DST copies an executable with cp, so that every binary
# a benchmark runs is in the page cache the same way. A binary fresh from the
# Go linker (written through mmap, then renamed into place) sits in large
# folios that the kernel maps 2 MiB at a time (FilePmdMapped in smaps): on
# this machine that alone added ~18 MiB to notesctl's peak RSS ("notesctl
# version": 71 MiB as linked, 53 MiB after a cp), while the hugo binary,
# installed long ago, was in small pages. cp'ing every binary compares like
# with like.
settle_binary() {
	rm -f "$2"
	cp "$1" "$2" || die "cp $1 $2 failed"
}

# build_binary PKG BIN builds a main package of the module once, from $SRC
# (default: this checkout), and settles it.
build_binary() {
	(cd "${SRC:-$BENCH_ROOT}" && go build -trimpath -o "$2.linked" "$1") || die "go build $1 in ${SRC:-$BENCH_ROOT} failed"
	settle_binary "$2.linked" "$2"
	rm -f "$2.linked"
}

# build_notesctl BIN builds the CLI once.
build_notesctl() {
	build_binary ./cmd/notesctl "$1"
	printf 'notesctl: built from %s (%s)\n' "${SRC:-$BENCH_ROOT}" "$("$1" version 2>/dev/null | head -n 1)"
}

# commit_site DIR turns a site directory into a git repository with one
# commit at a fixed time, exactly as testdata/mksite.sh does.
commit_site() {
	local dir="$1"
	(
		export GIT_AUTHOR_NAME="Notes Author" GIT_AUTHOR_EMAIL="author@example.org"
		export GIT_COMMITTER_NAME="Notes Author" GIT_COMMITTER_EMAIL="author@example.org"
		export GIT_AUTHOR_DATE="2025-05-07T06:11:56Z" GIT_COMMITTER_DATE="2025-05-07T06:11:56Z"
		git -C "$dir" init -q -b main
		git -C "$dir" -c core.autocrlf=false add -A
		git -C "$dir" -c commit.gpgsign=false commit -q -m "Initial notes"
	) || die "committing $dir failed"
}

# make_site KIND DIR writes a committed site: KIND "fixture" is testdata/site,
# a number N is a generated site of N talk pages. A plain copy for the hugo
# CLI goes to DIR.hugo (hugo writes .hugo_build.lock into its source, which
# would make notesctl's work tree dirty).
make_site() {
	local kind="$1" dir="$2"
	if [ "$kind" = fixture ]; then
		"$BENCH_ROOT/testdata/mksite.sh" "$dir" >/dev/null || die "testdata/mksite.sh failed"
	else
		(cd "$BENCH_ROOT" && go run ./internal/sitegen/cmd/gensite -pages "$kind" -out "$dir") >/dev/null || die "gensite -pages $kind failed"
		commit_site "$dir"
	fi
	mkdir -p "$dir.hugo"
	(cd "$dir" && tar --exclude=./.git -cf - .) | (cd "$dir.hugo" && tar -xf -)
}

# site_label KIND names a site in the tables: testdata/site or its page count.
site_label() { if [ "$1" = fixture ]; then echo testdata/site; else echo "$1"; fi; }

# hugo_render SITE OUT LOG renders SITE with the hugo CLI ($HUGO_BIN) into an
# empty OUT, measured like any command (see measure).
hugo_render() {
	rm -rf "$2"
	measure "$3" "$HUGO_BIN" --source "$1" --destination "$2" --quiet
}

# measure LOG CMD... runs CMD once with stdout and stderr to LOG and prints
# "<wall ns> <peak RSS KiB>". Fails the script if CMD fails.
measure() {
	local log="$1"; shift
	local tf t0 t1 rc
	tf="$(mktemp)"
	t0=$(date +%s%N)
	/usr/bin/time -f %M -o "$tf" -- "$@" >"$log" 2>&1 && rc=0 || rc=$?
	t1=$(date +%s%N)
	if [ $rc -ne 0 ]; then
		cat "$log" >&2
		rm -f "$tf"
		die "failed ($rc): $*"
	fi
	printf '%s %s\n' $((t1 - t0)) "$(tail -n 1 "$tf")"
	rm -f "$tf"
}

# median prints the median of its arguments (mean of the middle two for an
# even count).
median() {
	printf '%s\n' "$@" | sort -n | awk '{v[NR]=$1} END {if (NR%2) print v[(NR+1)/2]; else printf "%.0f\n", (v[NR/2]+v[NR/2+1])/2}'
}
minimum() { printf '%s\n' "$@" | sort -n | head -n 1; }
maximum() { printf '%s\n' "$@" | sort -n | tail -n 1; }

# secs NS, mib KIB, ratio A B
secs() { awk -v n="$1" 'BEGIN {printf "%.3f", n/1e9}'; }
mib() { awk -v k="$1" 'BEGIN {printf "%.0f", k/1024}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a/b}'; }
# verdict R MAX: "ok" when R <= MAX, else "MISS".
verdict() { awk -v r="$1" -v m="$2" 'BEGIN {print (r <= m) ? "ok" : "MISS"}'; }

load() { cut -d' ' -f1-3 /proc/loadavg; }

machine_info() {
	printf 'machine: %s CPUs (%s), %s MiB RAM, kernel %s\n' "$(nproc)" \
		"$(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)" \
		"$(awk '/MemTotal/ {printf "%.0f", $2/1024}' /proc/meminfo)" "$(uname -r)"
	printf 'go: %s; load average at start: %s\n' "$(go version | cut -d' ' -f3-)" "$(load)"
}
