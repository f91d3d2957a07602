#!/usr/bin/env bash
# Builds the real control-plane binaries that the integration and end-to-end tests run
# (etcd, kube-apiserver, kube-controller-manager, kubectl) from the Go module proxy, at pinned
# versions, into bin/k8s/<version>/. A binary that is already there is reused, so only the
# first run on a machine pays for the build (about 6-10 minutes on 2 cores).
#
# Why build instead of downloading: the test machines reach only package registries, and the
# Go module proxy carries the sources of every one of these programs.
set -euo pipefail

ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
# The k8s.io staging modules are published as v0.<minor>.<patch> of the kubernetes release.
STAGING_VERSION="v0${KUBE_VERSION#v1}"

root="$(cd "$(dirname "$0")/.." && pwd)"
out="${root}/bin/k8s/${KUBE_VERSION}-etcd-${ETCD_VERSION}"
work="${root}/bin/.controlplane-src"
mkdir -p "${out}" "${work}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[control-plane] %s\n' "$*" >&2; }

build_etcd() {
  local dir="${work}/etcd-${ETCD_VERSION}"
  [ -x "${out}/etcd" ] && return 0
  log "building etcd ${ETCD_VERSION}"
  mkdir -p "${dir}"
  # etcd's server module depends on its sibling modules at the same version; a wrapper
  # module pins all of them so minimal version selection cannot mix releases.
  cat > "${dir}/go.mod" <<MOD
module hookline.local/controlplane/etcd

go 1.26

require (
	go.etcd.io/etcd/api/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/client/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/pkg/v3 ${ETCD_VERSION}
	go.etcd.io/etcd/server/v3 ${ETCD_VERSION}
)
MOD
  (cd "${dir}" && go build -trimpath -ldflags "-s -w" -o "${out}/etcd.tmp" go.etcd.io/etcd/server/v3)
  mv "${out}/etcd.tmp" "${out}/etcd"
}

build_kube() {
  local dir="${work}/kubernetes-${KUBE_VERSION}"
  local missing=()
  for cmd in "$@"; do [ -x "${out}/${cmd}" ] || missing+=("${cmd}"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "building ${missing[*]} ${KUBE_VERSION}"
  mkdir -p "${dir}"
  (cd "${dir}" && go mod download -json "k8s.io/kubernetes@${KUBE_VERSION}" > module.json)
  local gomod
  gomod="$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' "${dir}/module.json")"
  # k8s.io/kubernetes points its staging modules at ./staging/...; outside its own tree
  # those have to be the published k8s.io/<name> v0.Y.Z modules instead.
  {
    printf 'module hookline.local/controlplane/kubernetes\n\ngo 1.26\n\nrequire k8s.io/kubernetes %s\n\nreplace (\n' "${KUBE_VERSION}"
    sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"${STAGING_VERSION}"'#p' "${gomod}"
    printf ')\n'
  } > "${dir}/go.mod"
  local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=${KUBE_VERSION} -X k8s.io/component-base/version.gitTreeState=clean"
  for cmd in "${missing[@]}"; do
    (cd "${dir}" && go build -trimpath -ldflags "${ldflags}" -o "${out}/${cmd}.tmp" "k8s.io/kubernetes/cmd/${cmd}")
    mv "${out}/${cmd}.tmp" "${out}/${cmd}"
  done
}

build_etcd
# kubectl too: the end-to-end tests drive the cluster the way a user does, with a kubectl
# of the same version as the API server.
build_kube kube-apiserver kube-controller-manager kubectl
ln -sfn "$(basename "${out}")" "${root}/bin/k8s/current"
# Print the directory for KUBEBUILDER_ASSETS.
echo "${out}"
