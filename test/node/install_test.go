package node

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	"github.com/hookline/hookline/internal/receiver"
)

const (
	system   = "hookline-system"
	users    = "node-test"
	events   = 150
	dispName = "hookline-dispatcher"
)

// TestInstallOnRealNode installs hookline with kustomize on a real node and runs the
// product's promises there: the image runs as the operator renders it, a pod publishes
// through the dispatcher's Service, a killed dispatcher pod loses nothing, the operator
// repairs drift, and the pod security settings hold on the running processes. Then the same
// install with Helm, and helm uninstall keeping the CRDs and the users' objects.
func TestInstallOnRealNode(t *testing.T) {
	k := startNode(t)
	k.importImage(t)
	k.localStorage(t, "queue-kustomize")

	t.Run("kustomize", func(t *testing.T) {
		k.installKustomize(t)
		k.waitRollout(t, system, "hookline-operator")
		k.waitRollout(t, system, dispName)
		k.checkPodSecurity(t, system, "app.kubernetes.io/component=dispatcher")
		k.checkPodSecurity(t, system, "app.kubernetes.io/component=operator")

		l, url := listenOnNode(t)
		k.usersNamespace(t, url)
		rx := serveReceiver(t, k, l)
		k.publishThroughKill(t, rx)
		k.checkBundleMetrics(t)
		k.checkDrift(t)
	})
	t.Run("helm", func(t *testing.T) {
		k.uninstallKustomize(t)
		k.localStorage(t, "queue-helm")
		k.helmInstallUninstall(t)
	})
}

// listenOnNode listens on the node's own address (never the machine's outward interface),
// where pods reach it through the bridge.
func listenOnNode(t *testing.T) (net.Listener, string) {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", nodeIP+":0")
	if err != nil {
		t.Fatalf("listening on the node's address %s: %v", nodeIP, err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, "http://" + l.Addr().String()
}

// serveReceiver serves a receiver on l that verifies every delivery with the endpoint's live
// signing keys.
func serveReceiver(t *testing.T, k *cluster, l net.Listener) *receiver.Receiver {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var keys func() []string
	waitFor(t, "the endpoint's signing Secret", stepWait, func() error {
		var err error
		keys, err = receiver.FollowEndpoint(ctx, k.c, users, "node-receiver", 5*time.Second, testr.New(t))
		return err
	})
	rx := &receiver.Receiver{Secrets: keys}
	mux := http.NewServeMux()
	mux.Handle("/hooks", rx)
	// Receivers that go away for good and that fail, so the alerts' metrics have series.
	mux.HandleFunc("/gone", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusGone) })
	mux.HandleFunc("/failing", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return rx
}

// localStorage provides a local PersistentVolume and the default StorageClass binding it,
// for the dispatcher's embedded queue.
func (k *cluster) localStorage(t *testing.T, name string) {
	dir := filepath.Join(k.state, name)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, 65532, 65532); err != nil {
		t.Fatal(err)
	}
	k.kubectl(t, []byte(fmt.Sprintf(`
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata:
  name: node-local
  annotations: {storageclass.kubernetes.io/is-default-class: "true"}
provisioner: kubernetes.io/no-provisioner
volumeBindingMode: WaitForFirstConsumer
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: %s}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: node-local
  local: {path: %s}
  nodeAffinity:
    required:
      nodeSelectorTerms:
      - matchExpressions: [{key: kubernetes.io/hostname, operator: In, values: [hookline-node]}]
`, name, dir)), "apply", "--server-side", "-f", "-")
}

// installKustomize applies config/default the way a user with their own image does: an
// overlay that sets the image, and dispatcher settings that allow the receiver's address.
func (k *cluster) installKustomize(t *testing.T) {
	overlay := filepath.Join(k.state, "overlay")
	if err := os.MkdirAll(overlay, 0o755); err != nil {
		t.Fatal(err)
	}
	base, err := filepath.Rel(overlay, filepath.Join(k.root, "config", "default"))
	if err != nil {
		t.Fatal(err)
	}
	repo, tag, _ := strings.Cut(testTag, ":")
	files := map[string]string{
		"kustomization.yaml": fmt.Sprintf(`resources: [%s]
images:
  - {name: ghcr.io/hookline/hookline, newName: %s, newTag: %s}
configMapGenerator:
  - name: hookline-dispatcher-settings
    namespace: hookline-system
    behavior: replace
    files: [dispatcher.yaml]
`, base, repo, tag),
		"dispatcher.yaml": fmt.Sprintf(`queue: embedded
image: %s
imagePullPolicy: Never
storage: {size: 1Gi}
extraArgs: ["--allow-cidr=%s/32"]
`, testTag, nodeIP),
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(overlay, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	k.kubectl(t, nil, "apply", "--server-side", "-k", overlay)
}

func (k *cluster) waitRollout(t *testing.T, ns, deploy string) {
	t.Helper()
	waitFor(t, "Deployment "+ns+"/"+deploy, stepWait, func() error {
		_, err := k.kubectlErr(nil, "-n", ns, "rollout", "status", "deploy/"+deploy, "--timeout=20s")
		return err
	})
}

// usersNamespace is what a user of hookline makes: a namespace held to the restricted Pod
// Security Standard, an endpoint pointing at the receiver, a subscription, and a
// ServiceAccount allowed to publish.
func (k *cluster) usersNamespace(t *testing.T, url string) {
	k.kubectl(t, []byte(fmt.Sprintf(`
apiVersion: v1
kind: Namespace
metadata:
  name: %[1]s
  labels: {pod-security.kubernetes.io/enforce: restricted}
---
apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: node-receiver, namespace: %[1]s}
spec: {url: "%[2]s/hooks", allowInsecureHTTP: true}
---
apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: everything, namespace: %[1]s}
spec:
  endpointRef: {name: node-receiver}
  eventTypes: ["order.*"]
---
apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: node-gone, namespace: %[1]s}
spec:
  url: "%[2]s/gone"
  allowInsecureHTTP: true
  signing: {rotation: {every: 720h, overlap: 24h}}
---
apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: to-gone, namespace: %[1]s}
spec:
  endpointRef: {name: node-gone}
  eventTypes: ["order.*"]
---
apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: node-failing, namespace: %[1]s}
spec: {url: "%[2]s/failing", allowInsecureHTTP: true}
---
apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: to-failing, namespace: %[1]s}
spec:
  endpointRef: {name: node-failing}
  eventTypes: ["order.*"]
  delivery: {maxAttempts: 1}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: publisher, namespace: %[1]s}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: hookline-publisher, namespace: %[1]s}
rules: [{apiGroups: [hookline.io], resources: [events], verbs: [create]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: publisher, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: hookline-publisher}
subjects: [{kind: ServiceAccount, name: publisher, namespace: %[1]s}]
`, users, url)), "apply", "--server-side", "-f", "-")
	waitFor(t, "WebhookEndpoint node-receiver Ready", stepWait, func() error {
		out, err := k.kubectlErr(nil, "-n", users, "get", "webhookendpoint", "node-receiver", "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if err != nil || strings.TrimSpace(out) != "True" {
			return fmt.Errorf("Ready=%q %v", out, err)
		}
		return nil
	})
}

// publisherPod publishes `events` events through the dispatcher's Service with its
// ServiceAccount token, retrying each (same id) while the dispatcher is away.
// There is no cluster DNS on the node: the pod gets the Service's ClusterIP.
func publisherPod(image, server string) string {
	svc := server
	return fmt.Sprintf(`
apiVersion: v1
kind: Pod
metadata: {name: publisher, namespace: %[1]s}
spec:
  serviceAccountName: publisher
  restartPolicy: Never
  enableServiceLinks: false
  securityContext: {runAsNonRoot: true, runAsUser: 65532, seccompProfile: {type: RuntimeDefault}}
  containers:
  - name: publish
    image: %[2]s
    imagePullPolicy: Never
    env: [{name: HOOKLINE_SERVER, value: "%[3]s"}]
    args: [publish, -n, %[1]s, --type, order.created, --data, '{"from":"a pod"}',
           --id, node, --count, "%[4]d", --interval, 100ms, --retry-for, 2m]
    securityContext: {allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: {drop: [ALL]}}
`, users, image, svc, events)
}

// accepted is the set of producers' event ids the receiver accepted, each verified.
func accepted(rx *receiver.Receiver) map[string]bool {
	got := map[string]bool{}
	for _, d := range rx.Deliveries() {
		got[d.EventID] = true
	}
	return got
}
