#!/usr/bin/env bash
# tools/kube/build.sh [CACHE_DIR]
#
# Builds, once, the real Kubernetes and Flux components that the kube tests
# (internal/kubeenv) run as local processes, and collects the Flux CRDs:
#
#   CACHE_DIR/bin/kube-apiserver        k8s.io/kubernetes v1.35.4 (wrapper module kube-apiserver/)
#   CACHE_DIR/bin/kubelet               the same module and version: a real node
#   CACHE_DIR/bin/kube-scheduler        (internal/kubeenv StartNode, with Debian's
#   CACHE_DIR/bin/kube-controller-manager  containerd + runc) and what places and rolls out its pods
#   CACHE_DIR/bin/etcd                  etcd 3.4 from Debian's etcd-server package (copied)
#   CACHE_DIR/bin/source-controller     github.com/fluxcd/source-controller v1.9.6
#   CACHE_DIR/bin/kustomize-controller  github.com/fluxcd/kustomize-controller v1.9.6
#   CACHE_DIR/bin/image-reflector-controller   github.com/fluxcd/image-reflector-controller v1.2.0
#   CACHE_DIR/bin/image-automation-controller  github.com/fluxcd/image-automation-controller v1.2.0
#   CACHE_DIR/bin/notification-controller      github.com/fluxcd/notification-controller v1.9.0
#   CACHE_DIR/crds/*.yaml               the CRDs the controller modules ship in config/crd/bases
#
# The five controllers come from one wrapper module (tools/kube/flux), so their
# shared dependencies resolve to one version each and compile once.
#
# CACHE_DIR defaults to ${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY.
# Every artifact has a stamp file (CACHE_DIR/stamps/NAME) holding the versions and
# a hash of the wrapper module it was built from; an artifact whose stamp matches is
# not rebuilt. Nothing is written into the repository: wrapper modules are copied
# into CACHE_DIR/src and built there with -mod=mod.
#
# Needs: Go (GOTOOLCHAIN=local is forced), access to the Go module proxy on a cold
# cache, and either /usr/bin/etcd or root with apt-get (etcd-server is installed).
#
# The tests find the result through NOTESCTL_KUBE_TOOLS=CACHE_DIR/bin and
# NOTESCTL_KUBE_CRDS=CACHE_DIR/crds, or at the default location without them.
set -euo pipefail

# Keep in sync with internal/kubeenv (DefaultVersionKey); a test checks it.
KUBE_VERSION=v1.35.4
KUBE_STAGING_VERSION=v0.35.4
SOURCE_CONTROLLER_VERSION=v1.9.6
KUSTOMIZE_CONTROLLER_VERSION=v1.9.6
IMAGE_REFLECTOR_CONTROLLER_VERSION=v1.2.0
IMAGE_AUTOMATION_CONTROLLER_VERSION=v1.2.0
NOTIFICATION_CONTROLLER_VERSION=v1.9.0
VERSION_KEY=kube-v1.35.4-flux-v1.9.6-r2

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${1:-${NOTESCTL_TOOLS_CACHE:-$HOME/.cache/notesctl-tools}/$VERSION_KEY}"
mkdir -p "$cache"
cache="$(cd "$cache" && pwd)"
bin="$cache/bin"
crds="$cache/crds"
stamps="$cache/stamps"
src="$cache/src"
mkdir -p "$bin" "$crds" "$stamps" "$src"

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
log() { printf '[build.sh %4ds] %s\n' "$((SECONDS - total_start))" "$*"; }

# stamp_for NAME PARTS... prints the stamp content for NAME.
stamp_for() {
	local name=$1
	shift
	printf '%s\n' "$name" "$@" "$(go env GOVERSION)" "$(go env GOOS)/$(go env GOARCH)"
}

# wrapper_hash DIR hashes the files of a wrapper module.
wrapper_hash() {
	(cd "$1" && cat go.mod go.sum tools.go | sha256sum | cut -d' ' -f1)
}

# up_to_date NAME WANT [FILE]: stamp matches and FILE (if given) exists.
up_to_date() {
	local name=$1 want=$2 file=${3:-}
	[[ -f "$stamps/$name" ]] || return 1
	[[ "$(cat "$stamps/$name")" == "$want" ]] || return 1
	[[ -z "$file" || -x "$file" || -f "$file" ]] || return 1
}

# build_wrapper MODULE NAME PACKAGE LDFLAGS VERSIONS...: builds PACKAGE from the
# wrapper module tools/kube/MODULE into $bin/NAME.
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
	rm -rf "$src/$mod"
	mkdir -p "$src/$mod"
	cp "$here/$mod/go.mod" "$here/$mod/go.sum" "$here/$mod/tools.go" "$src/$mod/"
	(cd "$src/$mod" && go build -trimpath -ldflags "$ldflags" -o "$bin/.$name.tmp" "$pkg")
	mv -f "$bin/.$name.tmp" "$bin/$name"
	printf '%s\n' "$want" >"$stamps/$name"
	log "$name: built in $((SECONDS - start))s ($(du -h "$bin/$name" | cut -f1))"
}

install_etcd() {
	local etcd_path
	etcd_path="$(command -v etcd || true)"
	if [[ -z "$etcd_path" ]]; then
		if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
			log "etcd: installing Debian package etcd-server..."
			if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null; then
				DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null
				DEBIAN_FRONTEND=noninteractive apt-get install -y -q etcd-server >/dev/null
			fi
			etcd_path=/usr/bin/etcd
		else
			echo "build.sh: etcd not found; install it first: apt-get install -y etcd-server" >&2
			exit 1
		fi
	fi
	local version
	version="$("$etcd_path" --version | sed -n 's/^etcd Version: //p')"
	local want
	want="$(stamp_for etcd "etcd=$version" "from=$etcd_path" "sha256=$(sha256sum "$etcd_path" | cut -d' ' -f1)")"
	if up_to_date etcd "$want" "$bin/etcd"; then
		log "etcd: cached ($version)"
		return
	fi
	cp -f "$etcd_path" "$bin/.etcd.tmp"
	chmod 0755 "$bin/.etcd.tmp"
	mv -f "$bin/.etcd.tmp" "$bin/etcd"
	printf '%s\n' "$want" >"$stamps/etcd"
	log "etcd: copied $etcd_path ($version)"
}

# module_dir MODULE@VERSION prints the module's directory in the module cache,
# downloading it if needed.
module_dir() {
	(cd "$src" && GOFLAGS= go mod download -json "$1" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
}

collect_crds() {
	local mods=("github.com/fluxcd/source-controller@$SOURCE_CONTROLLER_VERSION"
		"github.com/fluxcd/kustomize-controller@$KUSTOMIZE_CONTROLLER_VERSION"
		"github.com/fluxcd/image-reflector-controller@$IMAGE_REFLECTOR_CONTROLLER_VERSION"
		"github.com/fluxcd/image-automation-controller@$IMAGE_AUTOMATION_CONTROLLER_VERSION"
		"github.com/fluxcd/notification-controller@$NOTIFICATION_CONTROLLER_VERSION")
	local want
	want="$(stamp_for crds "${mods[@]}")"
	if up_to_date crds "$want" && compgen -G "$crds/*.yaml" >/dev/null; then
		log "crds: cached ($(ls "$crds" | wc -l) files)"
		return
	fi
	local start=$SECONDS
	local out="$cache/.crds.tmp"
	rm -rf "$out"
	mkdir -p "$out"
	local dir mod
	for mod in "${mods[@]}"; do
		dir="$(module_dir "$mod")"
		[[ -d "$dir/config/crd/bases" ]] || { echo "build.sh: no config/crd/bases in $mod ($dir)" >&2; exit 1; }
		cp "$dir"/config/crd/bases/*.yaml "$out/"
		chmod 0644 "$out"/*.yaml # module cache files are read-only
		log "crds: copied $(ls "$dir"/config/crd/bases/*.yaml | wc -l) CRDs from $mod"
	done
	local want_crd
	for want_crd in source.toolkit.fluxcd.io_gitrepositories.yaml kustomize.toolkit.fluxcd.io_kustomizations.yaml \
		image.toolkit.fluxcd.io_imagerepositories.yaml image.toolkit.fluxcd.io_imagepolicies.yaml \
		image.toolkit.fluxcd.io_imageupdateautomations.yaml notification.toolkit.fluxcd.io_receivers.yaml; do
		[[ -f "$out/$want_crd" ]] || { echo "build.sh: no $want_crd among the modules' CRDs (got: $(ls "$out"))" >&2; exit 1; }
	done
	rm -rf "$crds"
	mv "$out" "$crds"
	printf '%s\n' "$want" >"$stamps/crds"
	log "crds: $(ls "$crds" | wc -l) files in $((SECONDS - start))s"
}

# The version every Kubernetes binary reports (kubelet checks its skew against
# the API server's).
KUBE_LDFLAGS="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=35 -X k8s.io/component-base/version.gitTreeState=clean"

log "cache: $cache"
install_etcd
collect_crds
build_wrapper kube-apiserver kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver \
	"$KUBE_LDFLAGS" \
	"kubernetes=$KUBE_VERSION" "staging=$KUBE_STAGING_VERSION"
# The node's binaries, from the same wrapper module and with the same version
# flags as kube-apiserver (a kubelet at the API server's version); each has its
# own stamp, so building them does not touch kube-apiserver's. Their packages
# need a few modules kube-apiserver does not (cadvisor, the CRI and containerd
# APIs...): -mod=mod adds their go.sum lines in the build copy, so the
# wrapper's files (and kube-apiserver's stamp) stay as they are.
for node_bin in kubelet kube-scheduler kube-controller-manager; do
	build_wrapper kube-apiserver "$node_bin" "k8s.io/kubernetes/cmd/$node_bin" \
		"$KUBE_LDFLAGS" \
		"kubernetes=$KUBE_VERSION" "staging=$KUBE_STAGING_VERSION"
done
build_wrapper flux source-controller github.com/fluxcd/source-controller "-s -w" \
	"source-controller=$SOURCE_CONTROLLER_VERSION"
build_wrapper flux kustomize-controller github.com/fluxcd/kustomize-controller "-s -w" \
	"kustomize-controller=$KUSTOMIZE_CONTROLLER_VERSION"
build_wrapper flux image-reflector-controller github.com/fluxcd/image-reflector-controller "-s -w" \
	"image-reflector-controller=$IMAGE_REFLECTOR_CONTROLLER_VERSION"
build_wrapper flux image-automation-controller github.com/fluxcd/image-automation-controller "-s -w" \
	"image-automation-controller=$IMAGE_AUTOMATION_CONTROLLER_VERSION"
build_wrapper flux notification-controller github.com/fluxcd/notification-controller "-s -w" \
	"notification-controller=$NOTIFICATION_CONTROLLER_VERSION"

log "done in $((SECONDS - total_start))s"
echo "NOTESCTL_KUBE_TOOLS=$bin"
echo "NOTESCTL_KUBE_CRDS=$crds"
echo "$bin"
