#!/usr/bin/env bash
# Brings up a single-node Kubernetes cluster with a real kubelet on this machine, for the
# tests under test/node: etcd, kube-apiserver, kube-controller-manager, kube-scheduler,
# containerd (runc, a CNI bridge), kubelet and kube-proxy (iptables). Everything it starts or
# changes is recorded in STATE_DIR; `hack/node-down.sh STATE_DIR` undoes all of it and
# checks the machine against the snapshot taken here first.
#
#   hack/node-up.sh STATE_DIR        (as root; binaries from hack/build-node.sh and
#                                     hack/build-control-plane.sh)
# Then: kubectl --kubeconfig STATE_DIR/kubeconfig ...
set -euo pipefail
STATE="${1:?usage: node-up.sh STATE_DIR}"
# shellcheck source=lib/node-env.sh
source "$(dirname "$0")/lib/node-env.sh"
mkdir -p "${STATE}"
STATE="$(cd "${STATE}" && pwd)"
PKI="${STATE}/pki"
mkdir -p "${STATE}"/{pids,logs,pki,snapshot,cni/net.d,cni/ipam,kubelet,pod-logs,containerd}

# --- what is missing says so, and fails ---------------------------------------------------
missing=()
[ "$(id -u)" = 0 ] || missing+=("root (the kubelet, containerd and kube-proxy need it)")
for b in containerd containerd-shim-runc-v2 ctr kubelet kube-proxy kube-scheduler; do
  [ -x "${NODE_BIN}/${b}" ] || missing+=("${NODE_BIN}/${b} (run hack/build-node.sh)")
done
for b in etcd kube-apiserver kube-controller-manager kubectl; do
  [ -x "${CONTROL_PLANE_BIN}/${b}" ] || missing+=("${CONTROL_PLANE_BIN}/${b} (run hack/build-control-plane.sh)")
done
for c in runc iptables iptables-save iptables-restore ip openssl curl; do
  command -v "${c}" >/dev/null || missing+=("${c} on PATH (hack/build-node.sh installs runc, iptables)")
done
[ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] && [ -x /usr/lib/cni/loopback ] ||
  missing+=("/usr/lib/cni/{bridge,host-local,loopback} (Debian containernetworking-plugins; hack/build-node.sh installs it)")
[ -d /sys/fs/cgroup ] || missing+=("/sys/fs/cgroup")
if ip link show "${NODE_IFACE}" >/dev/null 2>&1; then
  missing+=("a free interface name: ${NODE_IFACE} exists (a node left running? hack/node-down.sh its STATE_DIR)")
fi
if [ ${#missing[@]} -gt 0 ]; then
  printf '[node] cannot start the node; missing:\n' >&2
  printf '  - %s\n' "${missing[@]}" >&2
  exit 1
fi
export PATH="${NODE_BIN}:${PATH}"

# --- snapshot of what node-down.sh must give back ------------------------------------------
snapshot() {
  local dir="$1"
  mkdir -p "${dir}"
  for fam in iptables ip6tables; do
    "${fam}-save" 2>/dev/null | grep -E '^(\*|:|-A)' | sed -E 's/\[[0-9]+:[0-9]+\]//' | grep -vE '^:(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ' | grep -v '^\*' > "${dir}/${fam}" || true
  done
  ip -o link show | awk -F': ' '{print $2}' | sed 's/@.*//' | sort > "${dir}/links"
  awk '{print $5}' /proc/self/mountinfo | sort > "${dir}/mounts"
  { ls -1 /run/containerd /run/containerd/s /run/netns 2>/dev/null || true; } | sort > "${dir}/run"
  for s in "${NODE_SYSCTLS[@]}"; do printf '%s=%s\n' "${s}" "$(sysctl -n "${s}")"; done > "${dir}/sysctls"
}
[ -f "${STATE}/snapshot/links" ] || snapshot "${STATE}/snapshot"
echo "${ROOT}" > "${STATE}/root"

start() { # start NAME CMD...: in the background, PID recorded, output to logs/NAME.log
  local name="$1"; shift
  "$@" > "${STATE}/logs/${name}.log" 2>&1 &
  echo $! > "${STATE}/pids/${name}"
}
wait_for() { # wait_for WHAT SECONDS CMD...
  local what="$1" secs="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ ${SECONDS} -lt ${end} ] || die "${what} not ready after ${secs}s (logs in ${STATE}/logs)"
    sleep 0.5
  done
}

# --- the node's own address ----------------------------------------------------------------
# A veth pair (these kernels may lack the dummy driver); its peer stays unused and goes
# with it.
ip link add "${NODE_IFACE}" type veth peer name "${NODE_IFACE}p"
ip addr add "${NODE_IP}/32" dev "${NODE_IFACE}"
ip link set "${NODE_IFACE}p" up
ip link set "${NODE_IFACE}" up
# Pods reach Services (DNAT back onto the bridge) only with forwarding on.
sysctl -qw net.ipv4.ip_forward=1

# --- certificates: one CA, the API server's serving cert, one admin client cert ------------
openssl_() { openssl "$@" >/dev/null 2>&1 || die "openssl $*"; }
openssl_ req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=hookline-node-ca" -keyout "${PKI}/ca.key" -out "${PKI}/ca.crt"
cat > "${PKI}/apiserver.ext" <<EXT
subjectAltName=IP:${NODE_IP},IP:${SERVICE_IP},IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local
extendedKeyUsage=serverAuth
EXT
openssl_ req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" -keyout "${PKI}/apiserver.key" -out "${PKI}/apiserver.csr"
openssl_ x509 -req -in "${PKI}/apiserver.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" -CAcreateserial -days 2 -extfile "${PKI}/apiserver.ext" -out "${PKI}/apiserver.crt"
printf 'extendedKeyUsage=clientAuth\n' > "${PKI}/client.ext"
openssl_ req -newkey rsa:2048 -nodes -subj "/O=system:masters/CN=hookline-node-admin" -keyout "${PKI}/admin.key" -out "${PKI}/admin.csr"
openssl_ x509 -req -in "${PKI}/admin.csr" -CA "${PKI}/ca.crt" -CAkey "${PKI}/ca.key" -CAcreateserial -days 2 -extfile "${PKI}/client.ext" -out "${PKI}/admin.crt"
openssl_ genrsa -out "${PKI}/sa.key" 2048
openssl_ rsa -in "${PKI}/sa.key" -pubout -out "${PKI}/sa.pub"
KUBECONFIG="${STATE}/kubeconfig"
cat > "${KUBECONFIG}" <<KC
apiVersion: v1
kind: Config
clusters:
- name: node
  cluster: {server: "https://${NODE_IP}:6443", certificate-authority: "${PKI}/ca.crt"}
users:
- name: admin
  user: {client-certificate: "${PKI}/admin.crt", client-key: "${PKI}/admin.key"}
contexts:
- name: node
  context: {cluster: node, user: admin}
current-context: node
KC
curl_api() { curl -sf --cacert "${PKI}/ca.crt" --cert "${PKI}/admin.crt" --key "${PKI}/admin.key" "https://${NODE_IP}:6443$1"; }

# --- control plane ------------------------------------------------------------------------
log "control plane"
start etcd "${CONTROL_PLANE_BIN}/etcd" --data-dir "${STATE}/etcd" --name node \
  --listen-client-urls "http://${NODE_IP}:2379" --advertise-client-urls "http://${NODE_IP}:2379" \
  --listen-peer-urls "http://${NODE_IP}:2380" --initial-advertise-peer-urls "http://${NODE_IP}:2380" \
  --initial-cluster "node=http://${NODE_IP}:2380" --unsafe-no-fsync --quota-backend-bytes 1073741824
start kube-apiserver "${CONTROL_PLANE_BIN}/kube-apiserver" --etcd-servers "http://${NODE_IP}:2379" \
  --bind-address "${NODE_IP}" --advertise-address "${NODE_IP}" --secure-port 6443 \
  --service-cluster-ip-range "${SERVICE_CIDR}" \
  --tls-cert-file "${PKI}/apiserver.crt" --tls-private-key-file "${PKI}/apiserver.key" \
  --client-ca-file "${PKI}/ca.crt" --authorization-mode Node,RBAC \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "${PKI}/sa.pub" --service-account-signing-key-file "${PKI}/sa.key"
wait_for kube-apiserver 90 curl_api /readyz
start kube-controller-manager "${CONTROL_PLANE_BIN}/kube-controller-manager" --kubeconfig "${KUBECONFIG}" \
  --bind-address "${NODE_IP}" --leader-elect=false --root-ca-file "${PKI}/ca.crt" \
  --service-account-private-key-file "${PKI}/sa.key" --use-service-account-credentials=false
start kube-scheduler "${NODE_BIN}/kube-scheduler" --kubeconfig "${KUBECONFIG}" \
  --bind-address "${NODE_IP}" --leader-elect=false

# --- containerd, with the pause image pinned ----------------------------------------------
log "containerd"
cat > "${STATE}/cni/net.d/10-hookline.conflist" <<CNI
{
  "cniVersion": "1.0.0",
  "name": "hookline-node",
  "plugins": [
    {"type": "bridge", "bridge": "${POD_BRIDGE}", "isGateway": true, "ipMasq": false, "hairpinMode": true,
     "ipam": {"type": "host-local", "dataDir": "${STATE}/cni/ipam", "ranges": [[{"subnet": "${POD_CIDR}"}]],
              "routes": [{"dst": "0.0.0.0/0"}]}}
  ]
}
CNI
cat > "${STATE}/containerd/config.toml" <<TOML
version = 3
root = "${STATE}/containerd/root"
state = "${STATE}/containerd/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "${STATE}/containerd.sock"
[ttrpc]
  address = "${STATE}/containerd.sock.ttrpc"
[plugins.'io.containerd.internal.v1.opt']
  path = "${STATE}/containerd/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "${PAUSE_IMAGE}"
[plugins.'io.containerd.cri.v1.runtime']
  # Root here may not lower oom_score_adj (no CAP_SYS_RESOURCE): without this every
  # sandbox fails with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "${STATE}/cni/net.d"
TOML
start containerd "${NODE_BIN}/containerd" --config "${STATE}/containerd/config.toml"
wait_for containerd 60 ctr_ version
(cd "${ROOT}" && go run ./hack/image -pkg ./hack/pause -name pause -ca-bundle "" \
  -out "${STATE}/pause.tar" -tag "${PAUSE_IMAGE}" >/dev/null) || die "building the pause image"
ctr_ images import "${STATE}/pause.tar" >/dev/null || die "importing the pause image"

# --- kubelet and kube-proxy ----------------------------------------------------------------
log "kubelet and kube-proxy"
cat > "${STATE}/kubelet/config.yaml" <<KCFG
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
failSwapOn: false
containerRuntimeEndpoint: unix://${STATE}/containerd.sock
imageServiceEndpoint: unix://${STATE}/containerd.sock
address: ${NODE_IP}
port: 10250
readOnlyPort: 0
healthzBindAddress: ${NODE_IP}
healthzPort: 10248
podLogsDir: ${STATE}/pod-logs
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
  x509: {clientCAFile: ${PKI}/ca.crt}
authorization: {mode: AlwaysAllow}
evictionHard: {memory.available: "1Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
KCFG
start kubelet "${NODE_BIN}/kubelet" --config "${STATE}/kubelet/config.yaml" --kubeconfig "${KUBECONFIG}" \
  --root-dir "${STATE}/kubelet" --cert-dir "${STATE}/kubelet/pki" \
  --hostname-override "${NODE_NAME}" --node-ip "${NODE_IP}"
start kube-proxy "${NODE_BIN}/kube-proxy" --kubeconfig "${KUBECONFIG}" --proxy-mode iptables \
  --hostname-override "${NODE_NAME}" --bind-address "${NODE_IP}" \
  --healthz-bind-address "${NODE_IP}:10256" --metrics-bind-address "${NODE_IP}:10249" \
  --cluster-cidr "${POD_CIDR}" --masquerade-all --nodeport-addresses "${NODE_IP}/32" \
  --iptables-localhost-nodeports=false --conntrack-max-per-core 0 --conntrack-min 0 \
  --conntrack-tcp-timeout-established 0 --conntrack-tcp-timeout-close-wait 0
node_ready() {
  "${CONTROL_PLANE_BIN}/kubectl" --kubeconfig "${KUBECONFIG}" get node "${NODE_NAME}" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' | grep -qx True
}
wait_for "node ${NODE_NAME}" 120 node_ready
default_sa() { "${CONTROL_PLANE_BIN}/kubectl" --kubeconfig "${KUBECONFIG}" get sa default -n default; }
wait_for "the default ServiceAccount (kube-controller-manager)" 60 default_sa
log "node ${NODE_NAME} Ready at ${NODE_IP}; kubeconfig ${KUBECONFIG}"
