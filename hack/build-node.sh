#!/usr/bin/env bash
# Builds and installs what a real single-node cluster needs beyond the control plane, for the
# tests under test/node: kubelet, kube-proxy and kube-scheduler (same wrapper module and
# release as hack/build-control-plane.sh), containerd 2.x with ctr and the runc shim (from the
# Go module proxy), and runc, the CNI plugins and iptables (Debian packages). Binaries go to
# bin/node/<versions>/ and are reused; prints that directory.
#
# The cold build is about 10 minutes on 2 cores; with the control plane already built it
# shares most of its build cache and takes 2-4 minutes.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-v1.37.2}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.2.9}"

root="$(cd "$(dirname "$0")/.." && pwd)"
# shellcheck source=lib/kubernetes-module.sh
source "${root}/hack/lib/kubernetes-module.sh"
out="${root}/bin/node/${KUBE_VERSION}-containerd-${CONTAINERD_VERSION}"
mkdir -p "${out}"
export GOFLAGS="-mod=mod -buildvcs=false"
export CGO_ENABLED=0

log() { printf '[node] %s\n' "$*" >&2; }

# Debian's runc, CNI plugins and iptables: the Go-built alternatives need cgo or fail on
# the hybrid cgroup hierarchy of these machines (see docs/operations.md, "Tests").
install_packages() {
  local want=()
  command -v runc >/dev/null || want+=(runc)
  [ -x /usr/lib/cni/bridge ] || want+=(containernetworking-plugins)
  command -v iptables >/dev/null || want+=(iptables)
  [ ${#want[@]} -eq 0 ] && return 0
  if [ "$(id -u)" != 0 ]; then
    log "missing Debian packages ${want[*]}: run as root or install them with apt-get"
    exit 1
  fi
  log "installing ${want[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
}

# containerd's own module has no replace lines, so `go install` of a tagged version works.
build_containerd() {
  local tags="no_btrfs no_devmapper no_zfs urfave_cli_no_docs"
  local tmp="${root}/bin/.tmp-node"
  if [ ! -x "${out}/containerd" ] || [ ! -x "${out}/ctr" ]; then
    log "building containerd and ctr ${CONTAINERD_VERSION}"
    GOBIN="${tmp}" go install -trimpath -ldflags "-s -w" -tags "${tags}" \
      "github.com/containerd/containerd/v2/cmd/containerd@${CONTAINERD_VERSION}" \
      "github.com/containerd/containerd/v2/cmd/ctr@${CONTAINERD_VERSION}"
    mv "${tmp}/containerd" "${tmp}/ctr" "${out}/"
  fi
  if [ ! -x "${out}/containerd-shim-runc-v2" ]; then
    log "building containerd-shim-runc-v2 ${CONTAINERD_VERSION}"
    GOBIN="${tmp}" go install -trimpath -ldflags "-s -w" -tags "${tags} no_grpc" \
      "github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@${CONTAINERD_VERSION}"
    mv "${tmp}/containerd-shim-runc-v2" "${out}/"
  fi
}

install_packages
build_containerd
kubernetes_build "${root}/bin/.node-src/kubernetes-${KUBE_VERSION}" "${KUBE_VERSION}" "${out}" \
  kube-scheduler kube-proxy kubelet
ln -sfn "$(basename "${out}")" "${root}/bin/node/current"
echo "${out}"
