# shellcheck shell=bash
# Sourced by hack/node-up.sh and hack/node-down.sh: where the test node lives. Every
# address is on an interface the node creates for itself (a veth pair for the node,
# a bridge for pods), so nothing listens on or routes through the machine's own network.
NODE_NAME="${NODE_NAME:-hookline-node}"
NODE_IP="${NODE_IP:-10.213.0.1}"
NODE_IFACE="${NODE_IFACE:-hookline0}"
POD_CIDR="${POD_CIDR:-10.214.0.0/24}"
POD_BRIDGE="${POD_BRIDGE:-hookline-br0}"
SERVICE_CIDR="${SERVICE_CIDR:-10.215.0.0/24}"
SERVICE_IP="${SERVICE_IP:-10.215.0.1}"
# The pod sandbox image, built FROM scratch from hack/pause.
PAUSE_IMAGE="hookline.local/pause:1"
# Sysctls the node changes (forwarding between the bridge and the host) or the kubelet sets
# (kernel tunables); node-down.sh puts their values back.
NODE_SYSCTLS=(net.ipv4.ip_forward kernel.panic kernel.panic_on_oops vm.overcommit_memory)

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
NODE_BIN="${NODE_BIN:-${ROOT}/bin/node/current}"
CONTROL_PLANE_BIN="${CONTROL_PLANE_BIN:-${ROOT}/bin/k8s/current}"

log() { printf '[node] %s\n' "$*" >&2; }
die() { printf '[node] FAILED: %s\n' "$*" >&2; exit 1; }

# ctr_ talks to the node's own containerd, in the CRI's namespace.
ctr_() { "${NODE_BIN}/ctr" --address "${STATE}/containerd.sock" --namespace k8s.io "$@"; }
