#!/usr/bin/env bash
# Tears down what hack/node-up.sh STATE_DIR started and changed, and checks the machine
# against the snapshot node-up.sh took before it began: no process left, no iptables rule or
# chain, interface, mount, netns, shim socket or changed sysctl of the node's. Exits non-zero
# and lists what differs when something is left.
set -uo pipefail
STATE="${1:?usage: node-down.sh STATE_DIR}"
# shellcheck source=lib/node-env.sh
source "$(dirname "$0")/lib/node-env.sh"
STATE="$(cd "${STATE}" && pwd)" || exit 1
export PATH="${NODE_BIN}:${PATH}"
KUBECTL=("${CONTROL_PLANE_BIN}/kubectl" --kubeconfig "${STATE}/kubeconfig" --request-timeout 10s)

pid_of() { cat "${STATE}/pids/$1" 2>/dev/null; }
alive() { local p; p="$(pid_of "$1")" && [ -n "${p}" ] && kill -0 "${p}" 2>/dev/null; }
stop() { # stop NAME...: SIGTERM, 10 s, then SIGKILL; by recorded PID only
  local name p
  for name in "$@"; do alive "${name}" && kill -TERM "$(pid_of "${name}")"; done
  for _ in $(seq 1 20); do
    local any=0
    for name in "$@"; do alive "${name}" && any=1; done
    [ ${any} = 0 ] && break
    sleep 0.5
  done
  for name in "$@"; do
    if alive "${name}"; then p="$(pid_of "${name}")"; kill -KILL "${p}"; fi
  done
  for name in "$@"; do rm -f "${STATE}/pids/${name}"; done
}

# 1. Nothing may recreate pods; then the kubelet stops every pod (CNI DEL, netns, mounts).
stop kube-controller-manager kube-scheduler
if alive kubelet && alive kube-apiserver; then
  "${KUBECTL[@]}" delete pods --all --all-namespaces --grace-period=0 --force --wait=false >/dev/null 2>&1
  # Every task gone means every sandbox stopped (its network torn down by CNI DEL); the
  # exited containers themselves the kubelet removes only at its next garbage collection.
  for _ in $(seq 1 60); do
    [ -z "$(ctr_ tasks list -q 2>/dev/null)" ] && break
    sleep 0.5
  done
fi
stop kubelet kube-proxy
# 2. Whatever the kubelet did not remove: kill the tasks, delete the containers.
if alive containerd; then
  for c in $(ctr_ tasks list -q 2>/dev/null); do ctr_ tasks kill -s SIGKILL "${c}" >/dev/null 2>&1; done
  sleep 1
  for c in $(ctr_ containers list -q 2>/dev/null); do
    ctr_ tasks delete -f "${c}" >/dev/null 2>&1
    ctr_ containers delete "${c}" >/dev/null 2>&1
  done
fi
stop containerd kube-apiserver
stop etcd
# The shims outlive containerd; each names our socket on its command line.
for p in $(pgrep -f -- "-address ${STATE}/containerd.sock" 2>/dev/null); do kill -KILL "${p}" 2>/dev/null; done

# 3. iptables: every KUBE-* chain and every rule jumping to one (kube-proxy's and the
# kubelet's own KUBE-FIREWALL, KUBE-KUBELET-CANARY, KUBE-IPTABLES-HINT), in all tables.
for fam in iptables ip6tables; do
  command -v "${fam}-save" >/dev/null || continue
  "${fam}-save" 2>/dev/null | grep -v -- 'KUBE-' | grep -v '^#' | "${fam}-restore" 2>/dev/null
done
# The CNI bridge plugin's chains (CNI-*) when a sandbox was torn down without CNI DEL.
for fam in iptables ip6tables; do
  "${fam}-save" 2>/dev/null | grep -q -- 'CNI-' || continue
  "${fam}-save" 2>/dev/null | grep -v -- 'CNI-' | grep -v '^#' | "${fam}-restore" 2>/dev/null
done

# 4. Mounts under the state dir (kubelet volumes, overlay snapshots, sandbox shm) and the
# pods' network namespaces, deepest first.
awk '{print $5}' /proc/self/mountinfo | grep -E "^(${STATE}|/run/netns/cni-|/run/containerd/)" | sort -r |
  while read -r m; do
    grep -qx "${m}" "${STATE}/snapshot/mounts" 2>/dev/null || umount -l "${m}" 2>/dev/null
  done
for ns in /run/netns/cni-*; do
  [ -e "${ns}" ] || continue
  grep -qx "$(basename "${ns}")" "${STATE}/snapshot/run" 2>/dev/null || rm -f "${ns}"
done
# containerd's shim sockets and run dirs that were not there before.
for d in /run/containerd/s/* /run/containerd/*; do
  [ -e "${d}" ] || continue
  [ "${d}" = /run/containerd/s ] && grep -qx "/run/containerd/s:" "${STATE}/snapshot/run" 2>/dev/null && continue
  grep -qx "$(basename "${d}")" "${STATE}/snapshot/run" 2>/dev/null || rm -rf "${d}"
done
# The directories themselves, when they were not there before (the snapshot lists each
# existing one as a "DIR:" header).
for d in /run/containerd/s /run/containerd /run/netns; do
  [ -d "${d}" ] && ! grep -qx "${d}:" "${STATE}/snapshot/run" 2>/dev/null &&
    [ -z "$(ls -A "${d}" 2>/dev/null)" ] && rmdir "${d}" 2>/dev/null
done

# 5. Interfaces: the bridge (its veths went with the pods' namespaces) and the node's.
ip link del "${POD_BRIDGE}" 2>/dev/null
ip link del "${NODE_IFACE}" 2>/dev/null
for v in $(ip -o link show type veth 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//'); do
  grep -qx "${v}" "${STATE}/snapshot/links" 2>/dev/null || ip link del "${v}" 2>/dev/null
done

# 6. Sysctls back, the kubelet's cgroups gone, its symlinks into the state dir gone.
if [ -f "${STATE}/snapshot/sysctls" ]; then
  while IFS== read -r k v; do sysctl -qw "${k}=${v}" 2>/dev/null; done < "${STATE}/snapshot/sysctls"
fi
for h in /sys/fs/cgroup/*/; do
  [ -d "${h}kubepods" ] && find "${h}kubepods" -depth -type d -exec rmdir {} + 2>/dev/null
  [ -d "${h}kubepods.slice" ] && find "${h}kubepods.slice" -depth -type d -exec rmdir {} + 2>/dev/null
done
for l in /var/log/containers/*; do
  [ -L "${l}" ] && case "$(readlink "${l}")" in "${STATE}"/*) rm -f "${l}" ;; esac
done

# 7. Check against the snapshot.
left=()
for name in "${STATE}"/pids/*; do [ -e "${name}" ] && left+=("process $(basename "${name}") still recorded"); done
if [ -f "${STATE}/snapshot/links" ]; then
  now="$(mktemp -d)"
  for fam in iptables ip6tables; do
    "${fam}-save" 2>/dev/null | grep -E '^(\*|:|-A)' | sed -E 's/\[[0-9]+:[0-9]+\]//' | grep -vE '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | grep -v '^\*' > "${now}/${fam}" || true
  done
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort > "${now}/links"
  awk '{print $5}' /proc/self/mountinfo | sort > "${now}/mounts"
  { ls -1 /run/containerd /run/containerd/s /run/netns 2>/dev/null || true; } | sort > "${now}/run"
  for s in "${NODE_SYSCTLS[@]}"; do printf '%s=%s\n' "${s}" "$(sysctl -n "${s}")"; done > "${now}/sysctls"
  for f in iptables ip6tables links mounts run sysctls; do
    d="$(diff <(sort "${STATE}/snapshot/${f}") <(sort "${now}/${f}") | grep '^>' )"
    [ -n "${d}" ] && left+=("${f} added since the snapshot: ${d//$'\n'/; }")
  done
  rm -rf "${now}"
fi
pgrep -f -- "${STATE}/" >/dev/null 2>&1 && left+=("processes naming ${STATE}: $(pgrep -f -- "${STATE}/" | tr '\n' ' ')")
if [ ${#left[@]} -gt 0 ]; then
  printf '[node] tear-down left:\n' >&2
  printf '  - %s\n' "${left[@]}" >&2
  exit 1
fi
log "node torn down; the machine matches the snapshot"
