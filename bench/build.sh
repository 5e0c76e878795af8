#!/usr/bin/env bash
# notesctl build (render + image into an OCI layout) against the hugo CLI
# rendering the same site to disk: median wall time and peak RSS of N runs.
#
#   bench/build.sh                 # N=5, sites: testdata/site, 60 and 1000 pages
#   N=9 SITES="60 1000" bench/build.sh
#   N=1 SITES=10000 nice -n 10 bench/build.sh   # the large site alone (~30 s render, ~2 GB a run)
#   KEEP=1 bench/build.sh          # keep the work directory (logs, samples)
#
# Environment: N (runs per command, default 5), SITES (space-separated:
# "fixture" for testdata/site or a page count such as 10000; default
# "fixture 60 1000"),
# HUGO (the hugo v0.145.0 CLI; default hugo on PATH or ~/go/bin/hugo),
# WORK (work directory; default a fresh temporary one), KEEP=1, SRC (the
# checkout to build notesctl from; default this one), RENDERONLY=0 to skip
# the render-only column.
#
# The render-only column is bench/cmd/rendersite: render.ReadSource +
# render.Render and nothing else (no image, no registry/manifests/k8s code
# linked), so it separates what embedding Hugo costs from what the rest of
# notesctl's binary and its image stage cost.
#
# Both commands run in the same loop, interleaved (order alternating every
# run), after one untimed warm-up each, so that a change in the machine's
# load hits both alike. Every timed run starts from an empty output
# directory. Targets: notesctl at most 1.3x hugo's time and 1.2x its peak RSS.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

N="${N:-5}"
SITES="${SITES:-fixture 60 1000}"
KEEP="${KEEP:-0}"
RENDERONLY="${RENDERONLY:-1}"
need_time
HUGO_ORIG="$(find_hugo)"
WORK="${WORK:-$(mktemp -d "${TMPDIR:-/tmp}/notesctl-bench-build.XXXXXX")}"
mkdir -p "$WORK"
[ "$KEEP" = 1 ] || trap 'rm -rf "$WORK"' EXIT
HUGO_BIN="$WORK/hugo"
settle_binary "$HUGO_ORIG" "$HUGO_BIN"

machine_info
printf 'hugo: %s (%s, copied)\nruns: %s per command (+1 warm-up), interleaved; work dir %s\n\n' "$("$HUGO_BIN" version)" "$HUGO_ORIG" "$N" "$WORK"

NOTESCTL="$WORK/notesctl"
build_notesctl "$NOTESCTL"
RENDERSITE="$WORK/rendersite"
if [ "$RENDERONLY" = 1 ]; then
	build_binary ./bench/cmd/rendersite "$RENDERSITE"
fi

samples="$WORK/samples.tsv"
printf 'site\trun\ttool\twall_ns\trss_kib\n' >"$samples"
rows=()

run_notesctl() { # SITE OUT LOG
	rm -rf "$2"
	measure "$3" "$NOTESCTL" build --site "$1" --image bench.local/notes --base scratch --to "oci:$2"
}
run_rendersite() { # SITE LOG
	measure "$2" "$RENDERSITE" -site "$1"
}

for kind in $SITES; do
	site="$WORK/site-$kind"
	make_site "$kind" "$site"
	label="$(site_label "$kind")"
	printf '%s: load %s ... ' "$label" "$(load)" >&2

	# Warm-up: page cache, binaries.
	run_notesctl "$site" "$WORK/oci-$kind" "$WORK/notesctl-$kind.log" >/dev/null
	hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log" >/dev/null
	files=$(find "$WORK/public-$kind" -type f | wc -l)

	[ "$RENDERONLY" = 1 ] && run_rendersite "$site" "$WORK/rendersite-$kind.log" >/dev/null

	nt=() nm=() ht=() hm=() ot=() om=()
	for i in $(seq 1 "$N"); do
		if [ $((i % 2)) = 1 ]; then
			read -r t m < <(run_notesctl "$site" "$WORK/oci-$kind" "$WORK/notesctl-$kind.log")
			read -r u k < <(hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log")
		else
			read -r u k < <(hugo_render "$site.hugo" "$WORK/public-$kind" "$WORK/hugo-$kind.log")
			read -r t m < <(run_notesctl "$site" "$WORK/oci-$kind" "$WORK/notesctl-$kind.log")
		fi
		nt+=("$t") nm+=("$m") ht+=("$u") hm+=("$k")
		printf '%s\t%s\tnotesctl\t%s\t%s\n%s\t%s\thugo\t%s\t%s\n' "$label" "$i" "$t" "$m" "$label" "$i" "$u" "$k" >>"$samples"
		if [ "$RENDERONLY" = 1 ]; then
			read -r v r < <(run_rendersite "$site" "$WORK/rendersite-$kind.log")
			ot+=("$v") om+=("$r")
			printf '%s\t%s\trendersite\t%s\t%s\n' "$label" "$i" "$v" "$r" >>"$samples"
		fi
	done
	printf 'done, load %s\n' "$(load)" >&2

	nmt=$(median "${nt[@]}") hmt=$(median "${ht[@]}")
	nmm=$(median "${nm[@]}") hmm=$(median "${hm[@]}")
	rt_=$(ratio "$nmt" "$hmt") rm_=$(ratio "$nmm" "$hmm")
	ro_t="–" ro_m="–"
	if [ "$RENDERONLY" = 1 ]; then
		rmt=$(median "${ot[@]}") rmm=$(median "${om[@]}")
		ro_t="$(secs "$rmt") ($(ratio "$rmt" "$hmt")x)" ro_m="$(mib "$rmm") ($(ratio "$rmm" "$hmm")x)"
	fi
	rows+=("$(printf '| %s | %s | %s (%s–%s) | %s (%s–%s) | **%s** %s | %s | %s | %s | **%s** %s | %s |' \
		"$label" "$files" \
		"$(secs "$nmt")" "$(secs "$(minimum "${nt[@]}")")" "$(secs "$(maximum "${nt[@]}")")" \
		"$(secs "$hmt")" "$(secs "$(minimum "${ht[@]}")")" "$(secs "$(maximum "${ht[@]}")")" \
		"$rt_" "$(verdict "$rt_" 1.3)" "$ro_t" "$(mib "$nmm")" "$(mib "$hmm")" "$rm_" "$(verdict "$rm_" 1.2)" "$ro_m")")
done

printf '\nnotesctl build --image bench.local/notes --base scratch --to oci:DIR  vs  hugo --source SITE --destination DIR --quiet\n'
printf 'median of %s runs (min–max); time in s, peak RSS in MiB; targets: time <= 1.3x, RSS <= 1.2x\n\n' "$N"
printf 'render-only = bench/cmd/rendersite (ReadSource + Render, nothing else linked), its ratio to hugo in parentheses\n\n'
printf '| site | files out | notesctl s | hugo s | time ratio | render-only s | notesctl MiB | hugo MiB | RSS ratio | render-only MiB |\n'
printf '|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
printf '%s\n' "${rows[@]}"
printf '\nload average at end: %s\n' "$(load)"
[ "$KEEP" = 1 ] && printf 'samples: %s\n' "$samples"
exit 0
