#!/usr/bin/env bash
# notesctl release against a loopback registry (CNCF Distribution,
# docker-registry, plain HTTP, no auth, random port) and a local bare GitOps
# repository given as a path, against the hugo CLI rendering the same site
# to disk. Median wall time and peak RSS of N runs.
#
#   bench/release.sh                      # N=5, testdata/site
#   N=9 SITES="fixture 60" bench/release.sh
#   N=1 SITES=10000 nice -n 10 bench/release.sh   # the large site alone (minutes a run)
#   KEEP=1 bench/release.sh               # keep the work directory
#
# Environment: N (default 5), SITES ("fixture" = testdata/site or page
# counts such as 60 or 10000; default "fixture"), HUGO, WORK, KEEP=1, SRC
# (see bench/build.sh), REGISTRY_BIN (default docker-registry or registry on
# PATH), WARMUP=0 to skip the untimed warm-up release and render (for
# 10000 pages, where one costs a minute and the page cache is warm anyway
# after the site was generated).
#
# Bytes of a one-page edit are counted on the server: the sizes of the
# blob files (layers, config, manifest) Distribution's storage holds after
# the edit's release that it did not hold before, against the compressed
# size of all the image's layers (the full release's JSON).
#
# Every run of the loop, in this order (hugo first on odd runs, last on even):
#   hugo     hugo --source SITE --destination DIR --quiet, DIR empty
#   full     notesctl release into a repository of the registry that holds
#            nothing yet (bench/notes-rN, so every blob is uploaded) and a
#            fresh copy of the scaffolded GitOps repository (not yet deployed)
#   noop     the same command again: the GitOps repo already deploys it;
#            "noop - floor" is the decision work beyond start-up
#   edit     one page edited and committed (untimed), then release again:
#            the incremental CI case (only the pages layer and config upload)
#   floor    notesctl version: what starting the binary costs, the floor
#            under any notesctl command (runtime and package init)
#   hfloor   hugo version: what starting the hugo CLI costs; most of it is
#            the package initialisation of Hugo's own dependencies, which
#            any program that embeds Hugo pays too
# Targets: full <= 1.5x hugo (testdata/site); noop <= 0.1x full.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-5}"
SITES="${SITES:-fixture}"
WARMUP="${WARMUP:-1}"
KEEP="${KEEP:-0}"
need_time
HUGO_ORIG="$(find_hugo)"
REGISTRY_BIN="${REGISTRY_BIN:-$(command -v docker-registry || command -v registry || true)}"
[ -n "$REGISTRY_BIN" ] || die "CNCF Distribution not found: apt-get install -y docker-registry"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/notesctl-bench-release.XXXXXX")}"
mkdir -p "$WORK"
HUGO_BIN="$WORK/hugo"
settle_binary "$HUGO_ORIG" "$HUGO_BIN" # see lib.sh

REG_PID=""
cleanup() {
	if [ -n "$REG_PID" ]; then
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
	fi
	[ "$KEEP" = 1 ] || rm -rf "$WORK"
}
trap cleanup EXIT

# start_registry serves Distribution on 127.0.0.1:<random free port>.
start_registry() {
	local port attempt
	for attempt in 1 2 3 4 5; do
		port=$((20000 + RANDOM % 40000))
		ss -ltn 2>/dev/null | grep -q "127.0.0.1:$port " && continue
		cat >"$WORK/registry.yml" <<-EOF
			version: 0.1
			log:
			  level: error
			  accesslog:
			    disabled: true
			storage:
			  filesystem:
			    rootdirectory: "$WORK/registry"
			http:
			  addr: "127.0.0.1:$port"
			  secret: "notesctl-bench-$RANDOM$RANDOM"
		EOF
		"$REGISTRY_BIN" serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
		REG_PID=$!
		for _ in $(seq 1 100); do
			if curl -fsS -o /dev/null "http://127.0.0.1:$port/v2/" 2>/dev/null; then
				REG="127.0.0.1:$port"
				return 0
			fi
			kill -0 "$REG_PID" 2>/dev/null || break
			sleep 0.1
		done
		kill "$REG_PID" 2>/dev/null || true
		wait "$REG_PID" 2>/dev/null || true
		REG_PID=""
	done
	cat "$WORK/registry.log" >&2
	die "could not start $REGISTRY_BIN"
}

# seed_gitops DIR.git IMAGE: a bare repository holding what
# `notesctl manifests init` scaffolds, as a team's GitOps repo starts.
seed_gitops() {
	local bare="$1" image="$2" seed="$1.seed"
	"$NOTESCTL" manifests init --dir "$seed" --image "$image" --git-url "file://$bare" >/dev/null || die "manifests init failed"
	git init -q --bare -b main "$bare"
	git -C "$seed" init -q -b main
	git -C "$seed" add -A
	git -C "$seed" -c user.name=bench -c user.email=bench@localhost -c commit.gpgsign=false commit -q -m "Scaffold"
	git -C "$seed" push -q "$bare" main
	rm -rf "$seed"
}

machine_info
printf 'hugo: %s (%s, copied)\nregistry: %s\nruns: %s per command (+1 warm-up), interleaved; work dir %s\n' \
	"$("$HUGO_BIN" version)" "$HUGO_ORIG" "$("$REGISTRY_BIN" --version 2>&1 | head -n 1)" "$N" "$WORK"
NOTESCTL="$WORK/notesctl"
build_notesctl "$NOTESCTL"
start_registry
printf 'registry on %s (pid %s)\n\n' "$REG" "$REG_PID"

samples="$WORK/samples.tsv"
printf 'site\trun\tcase\twall_ns\trss_kib\tstages_s\n' >"$samples"
rows=()
run=0 # unique registry repository and GitOps copy per full release

release() { # SITE IMAGE GITOPS LOG
	measure "$4" "$NOTESCTL" release --site "$1" --image "$2" --insecure --base scratch \
		--gitops "$3" --output json
}
# stages LOG: the stage durations of a release's JSON output, on one line.
stages() { tr -d ' \n' <"$1" | grep -o '"durations":{[^}]*}' | sed 's/"durations"://; s/"//g'; }
# blobs: "<size> <path>" of every blob file in the registry's storage.
blobs() { find "$WORK/registry" -path '*/blobs/sha256/*/data' -printf '%s %p\n' 2>/dev/null | sort -k2; }
# new_blob_bytes BEFORE AFTER: total size of the blobs only AFTER lists.
new_blob_bytes() { join -1 2 -2 2 -v 2 "$1" "$2" | awk '{n += $2} END {print n + 0}'; }
# layer_bytes LOG: the compressed size of all layers of a release's image.
layer_bytes() { tr -d ' \n' <"$1" | grep -o '"layers":\[[^]]*\]' | grep -o '"size":[0-9]*' | awk -F: '{n += $2} END {print n + 0}'; }
# expect LOG WHAT PATTERN: a release's JSON output must show it did WHAT.
expect() { grep -q "$3" "$1" || { cat "$1" >&2; die "release did not $2 (see $1)"; }; }

# edit_site SITE N: a page edit, committed one minute after the last commit.
edit_site() {
	local site="$1" i="$2" page
	page="$(cd "$site" && git ls-files 'content/*.md' | grep -v '_index.md' | sed -n 1p)"
	printf '\nEdit %s of the benchmark.\n' "$i" >>"$site/$page"
	printf '\nEdit %s of the benchmark.\n' "$i" >>"$site.hugo/$page"
	local when
	when="$(date -u -d "2025-05-07T06:11:56Z + $i minutes" +%Y-%m-%dT%H:%M:%SZ)"
	GIT_AUTHOR_NAME="Notes Author" GIT_AUTHOR_EMAIL="author@example.org" \
		GIT_COMMITTER_NAME="Notes Author" GIT_COMMITTER_EMAIL="author@example.org" \
		GIT_AUTHOR_DATE="$when" GIT_COMMITTER_DATE="$when" \
		git -C "$site" -c commit.gpgsign=false commit -q -am "Edit $i" || die "edit commit failed"
}

template="$WORK/gitops-template.git"
seed_gitops "$template" "$REG/bench/notes"

for kind in $SITES; do
	site="$WORK/site-$kind"
	make_site "$kind" "$site"
	label="$(site_label "$kind")"
	printf '%s: load %s ... ' "$label" "$(load)" >&2

	# Warm-up (page cache, binaries, registry): one release and one render.
	if [ "$WARMUP" = 1 ]; then
		run=$((run + 1))
		cp -a "$template" "$WORK/gitops-$run.git"
		release "$site" "$REG/bench/notes-r$run" "$WORK/gitops-$run.git" "$WORK/warmup-$kind.log" >/dev/null
		hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log" >/dev/null
	fi
	EB="" ET=""

	declare -A T=() M=()
	for c in hugo full noop edit floor hfloor; do T[$c]="" M[$c]=""; done
	for i in $(seq 1 "$N"); do
		run=$((run + 1))
		image="$REG/bench/notes-r$run" gitops="$WORK/gitops-$run.git"
		cp -a "$template" "$gitops"
		if [ $((i % 2)) = 1 ]; then
			read -r t m < <(hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log")
			T[hugo]+=" $t" M[hugo]+=" $m"
			printf '%s\t%s\thugo\t%s\t%s\t-\n' "$label" "$i" "$t" "$m" >>"$samples"
		fi
		read -r t m < <(release "$site" "$image" "$gitops" "$WORK/full-$kind-$i.log")
		expect "$WORK/full-$kind-$i.log" "commit" '"changed": true'
		T[full]+=" $t" M[full]+=" $m"
		printf '%s\t%s\tfull\t%s\t%s\t%s\n' "$label" "$i" "$t" "$m" "$(stages "$WORK/full-$kind-$i.log")" >>"$samples"
		read -r t m < <(release "$site" "$image" "$gitops" "$WORK/noop-$kind-$i.log")
		expect "$WORK/noop-$kind-$i.log" "skip" '"skipped": true'
		T[noop]+=" $t" M[noop]+=" $m"
		printf '%s\t%s\tnoop\t%s\t%s\t%s\n' "$label" "$i" "$t" "$m" "$(stages "$WORK/noop-$kind-$i.log")" >>"$samples"
		edit_site "$site" "$run"
		blobs >"$WORK/blobs-before"
		read -r t m < <(release "$site" "$image" "$gitops" "$WORK/edit-$kind-$i.log")
		blobs >"$WORK/blobs-after"
		EB+=" $(new_blob_bytes "$WORK/blobs-before" "$WORK/blobs-after")"
		ET+=" $(layer_bytes "$WORK/full-$kind-$i.log")"
		expect "$WORK/edit-$kind-$i.log" "commit" '"changed": true'
		T[edit]+=" $t" M[edit]+=" $m"
		printf '%s\t%s\tedit\t%s\t%s\t%s\n' "$label" "$i" "$t" "$m" "$(stages "$WORK/edit-$kind-$i.log")" >>"$samples"
		read -r t m < <(measure "$WORK/version.log" "$NOTESCTL" version)
		T[floor]+=" $t" M[floor]+=" $m"
		printf '%s\t%s\tfloor\t%s\t%s\t-\n' "$label" "$i" "$t" "$m" >>"$samples"
		read -r t m < <(measure "$WORK/hugo-version.log" "$HUGO_BIN" version)
		T[hfloor]+=" $t" M[hfloor]+=" $m"
		printf '%s\t%s\thfloor\t%s\t%s\t-\n' "$label" "$i" "$t" "$m" >>"$samples"
		if [ $((i % 2)) = 0 ]; then
			read -r t m < <(hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log")
			T[hugo]+=" $t" M[hugo]+=" $m"
			printf '%s\t%s\thugo\t%s\t%s\t-\n' "$label" "$i" "$t" "$m" >>"$samples"
		fi
		rm -rf "$gitops"
	done
	printf 'done, load %s\n' "$(load)" >&2

	declare -A MT=() MM=()
	for c in hugo full noop edit floor hfloor; do
		# shellcheck disable=SC2086
		MT[$c]=$(median ${T[$c]}) MM[$c]=$(median ${M[$c]})
	done
	row() { # CASE DESCRIPTION RATIO_TO RATIO_NAME TARGET
		local c="$1" r="" v=""
		if [ -n "${3:-}" ]; then
			r=$(ratio "${MT[$c]}" "${MT[$3]}")
			v="**$r** $(verdict "$r" "$5") ($4, target <= $5)"
			[ "$5" = - ] && v="$r ($4)"
		fi
		# shellcheck disable=SC2086
		printf '| %s | %s | %s (%s–%s) | %s | %s |' "$label" "$2" \
			"$(secs "${MT[$c]}")" "$(secs "$(minimum ${T[$c]})")" "$(secs "$(maximum ${T[$c]})")" \
			"$(mib "${MM[$c]}")" "$v"
	}
	rows+=("$(row hugo "hugo CLI render to disk")")
	rows+=("$(row full "notesctl release, full" hugo "/hugo" 1.5)")
	rows+=("$(row noop "notesctl release, no-op re-release" full "/full" 0.1)")
	rows+=("$(row edit "notesctl release after a page edit" hugo "/hugo" -)")
	rows+=("$(row floor "notesctl version (start-up floor)" full "/full" -)")
	rows+=("$(row hfloor "hugo version (hugo's own start-up)" full "/full" -)")
	# shellcheck disable=SC2086
	dec=$(awk -v a="$(median ${T[noop]})" -v b="$(median ${T[floor]})" 'BEGIN {d = a - b; print (d < 0) ? 0 : d}')
	dr=$(ratio "$dec" "${MT[full]}")
	rows+=("$(printf '| %s | no-op decision (noop - floor) | %s | | **%s** %s (/full, target <= 0.1) |' "$label" "$(secs "$dec")" "$dr" "$(verdict "$dr" 0.1)")")
	# shellcheck disable=SC2086
	eb=$(median $EB) et=$(median $ET)
	er=$(awk -v a="$eb" -v b="$et" 'BEGIN {printf "%.2f", 100 * a / b}')
	rows+=("$(printf '| %s | bytes stored by the registry for a one-page edit | %s of %s | | **%s%%** %s (target <= 5%%) |' "$label" "$eb" "$et" "$er" "$(verdict "$er" 5)")")
	unset T M MT MM
done

printf '\nnotesctl release --site SITE --image %s/bench/notes-rN --insecure --base scratch --gitops BARE.git --output json\n' "$REG"
printf 'vs hugo --source SITE --destination DIR --quiet; median of %s runs (min–max), peak RSS median\n\n' "$N"
printf '| site | case | wall s | peak RSS MiB | ratio |\n|---|---|---:|---:|---|\n'
printf '%s\n' "${rows[@]}"
printf '\nload average at end: %s\n' "$(load)"
[ "$KEEP" = 1 ] && printf 'samples: %s\n' "$samples"
exit 0
