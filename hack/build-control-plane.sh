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

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/kubernetes-module.sh
source "${root}/hack/lib/kubernetes-module.sh"
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

build_etcd
# kubectl too: the end-to-end tests drive the cluster the way a user does, with a kubectl
# of the same version as the API server.
kubernetes_build "${work}/kubernetes-${KUBE_VERSION}" "${KUBE_VERSION}" "${out}" \
  kube-apiserver kube-controller-manager kubectl
ln -sfn "$(basename "${out}")" "${root}/bin/k8s/current"
# Print the directory for KUBEBUILDER_ASSETS.
echo "${out}"
