package helm

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/workload"
)

// cluster is a real kube-apiserver and etcd with the chart's tools pointed at it.
type cluster struct {
	*tools
	env *controlplane.Env
	k8s client.Client
}

func startCluster(t *testing.T) *cluster {
	t.Helper()
	c := setup(t)
	env, err := controlplane.Start(controlplane.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("stopping the control plane: %v", err)
		}
	})
	k8s, err := client.New(env.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &cluster{tools: c, env: env, k8s: k8s}
}

func (c *cluster) helmRun(t *testing.T, args ...string) string {
	t.Helper()
	out, _, err := c.run(nil, c.helm, append(args, "--kubeconfig", c.env.Kubeconfig)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func (c *cluster) get(t *testing.T, ns, name string, obj client.Object) {
	t.Helper()
	if err := c.k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, obj); err != nil {
		t.Fatalf("getting %T %s/%s: %v", obj, ns, name, err)
	}
}

// TestInstallOnAPIServer installs the chart with helm on a real kube-apiserver, runs the
// operator with exactly the flags, environment and settings file its Deployment gives it and
// with its ServiceAccount's permissions, and checks it brings up the dispatcher the values
// describe; then upgrades to the external-queue values and checks the same.
func TestInstallOnAPIServer(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()

	out := c.helmRun(t, "install", release, chartDir, "--namespace", namespace, "--create-namespace")
	for _, want := range []string{
		"kubectl -n hookline-system rollout status deployment/hookline-operator",
		"kubectl -n hookline-system rollout status deployment/hookline-dispatcher",
		"http://hookline-dispatcher.hookline-system:8080/v1/namespaces/shop/events",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("helm install's notes do not say %q:\n%s", want, out)
		}
	}
	// The notes' example, applied as a user would paste it, must be accepted and become
	// Ready once the operator runs.
	for _, ns := range []string{"shop", "billing"} {
		if err := c.k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
			t.Fatal(err)
		}
	}
	example := notesExample(t, out)
	if out, _, err := c.run(strings.NewReader(example), c.kubectl, "--kubeconfig", c.env.Kubeconfig, "apply", "-n", "shop", "-f", "-"); err != nil {
		t.Fatalf("the notes' example is refused: %v\n%s\n%s", err, out, example)
	}
	ready := func(ctx context.Context) (bool, error) {
		for _, kind := range []struct{ kind, name string }{{"WebhookEndpoint", "receiver"}, {"Subscription", "everything"}} {
			obj := &unstructured.Unstructured{}
			obj.SetAPIVersion("hookline.io/v1alpha1")
			obj.SetKind(kind.kind)
			if err := c.k8s.Get(ctx, client.ObjectKey{Namespace: "shop", Name: kind.name}, obj); err != nil {
				return false, err
			}
			conditions, _, _ := unstructured.NestedSlice(obj.Object, "status", "conditions")
			if !slices.ContainsFunc(conditions, func(c any) bool {
				m, _ := c.(map[string]any)
				return m["type"] == "Ready" && m["status"] == "True"
			}) {
				return false, nil
			}
		}
		return true, nil
	}

	var installed appsv1.Deployment
	c.get(t, namespace, "hookline-operator", &installed)
	c.checkDispatcher(t, &installed, ready)
	var pvc corev1.PersistentVolumeClaim
	c.get(t, namespace, workload.VolumeClaimName, &pvc)
	if got := pvc.Spec.Resources.Requests[corev1.ResourceStorage]; got.String() != "10Gi" {
		t.Errorf("the embedded queue's volume requests %s, want 10Gi", got.String())
	}

	// The external-queue values watch shop and billing, created above: the operator gives
	// the dispatcher a Role in each.
	c.helmRun(t, "upgrade", release, chartDir, "--namespace", namespace, "--values", externalValues)
	var upgraded appsv1.Deployment
	c.get(t, namespace, "hookline-operator", &upgraded)
	const checksum = "checksum/dispatcher-settings"
	if before, after := installed.Spec.Template.Annotations[checksum], upgraded.Spec.Template.Annotations[checksum]; before == after {
		t.Errorf("the upgrade changed the dispatcher settings but not the operator pod's %s (%s): it would not roll", checksum, after)
	}
	if *upgraded.Spec.Replicas != 2 {
		t.Errorf("operator replicas = %d after the upgrade, want 2", *upgraded.Spec.Replicas)
	}
	c.checkDispatcher(t, &upgraded, nil)
}

// notesExample is the YAML the notes tell a user to apply.
func notesExample(t *testing.T, notes string) string {
	t.Helper()
	const start, end = "<<'YAML'\n", "\n  YAML\n"
	i := strings.Index(notes, start)
	j := strings.Index(notes, end)
	if i < 0 || j < i {
		t.Fatalf("the notes have no example between %q and %q:\n%s", start, end, notes)
	}
	lines := strings.Split(notes[i+len(start):j], "\n")
	for k, l := range lines {
		lines[k] = strings.TrimPrefix(l, "  ")
	}
	return strings.Join(lines, "\n")
}

// checkDispatcher runs the operator as its Deployment would, from the installed objects,
// and waits for the dispatcher Deployment it creates to run with the settings in the
// installed ConfigMap, and for also (when not nil) to be done.
func (c *cluster) checkDispatcher(t *testing.T, operator *appsv1.Deployment, also wait.ConditionWithContextFunc) {
	t.Helper()
	ctx := context.Background()
	var cm corev1.ConfigMap
	c.get(t, namespace, operator.Spec.Template.Spec.Volumes[0].ConfigMap.Name, &cm)
	dir := t.TempDir()
	config := filepath.Join(dir, settingsKey)
	if err := os.WriteFile(config, []byte(cm.Data[settingsKey]), 0o600); err != nil {
		t.Fatal(err)
	}

	// What the operator should make of them: the settings file, overridden by its
	// --watch-namespaces, in its own namespace, with its own image by default.
	container := operator.Spec.Template.Spec.Containers[0]
	var image string
	for _, e := range container.Env {
		if e.Name == "HOOKLINE_IMAGE" {
			image = e.Value
		}
	}
	want, err := workload.LoadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	args := slices.Clone(container.Args[1:]) // after the "operator" subcommand
	for i, a := range args {
		switch {
		case strings.HasPrefix(a, "--config="):
			args[i] = "--config=" + config
		case strings.HasPrefix(a, "--metrics-bind-address="), strings.HasPrefix(a, "--health-probe-bind-address="):
			args[i] = a[:strings.Index(a, "=")+1] + "0"
		case strings.HasPrefix(a, "--watch-namespaces="):
			want.WatchNamespaces = strings.Split(strings.TrimPrefix(a, "--watch-namespaces="), ",")
		}
	}
	if want.Namespace == "" {
		want.Namespace = namespace
	}
	want = want.Default(image)

	// Out of a cluster the Lease's namespace is not found on its own, and the operator runs
	// with its ServiceAccount's permissions, so the chart's RBAC is what is tested.
	args = append(args, "--leader-election-namespace="+namespace, "--kubeconfig="+c.serviceAccountKubeconfig(t, dir, operator))
	bin := c.hooklineBinary(t)
	logPath := filepath.Join(dir, "operator.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = log.Close() }()
	cmd := exec.Command(bin, append([]string{"operator"}, args...)...)
	cmd.Env = append(os.Environ(), "POD_NAMESPACE="+namespace, "HOOKLINE_IMAGE="+image)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var exitErr error
	exited := make(chan struct{})
	go func() { exitErr = cmd.Wait(); close(exited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-exited
		// The next operator need not wait for this one's Lease to expire.
		_ = c.k8s.Delete(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Namespace: namespace, Name: "hookline-operator.hookline.io"}})
	}()
	fail := func(format string, args ...any) {
		t.Helper()
		logs, _ := os.ReadFile(logPath)
		lines := strings.Split(strings.TrimSpace(string(logs)), "\n")
		lines = lines[max(0, len(lines)-30):]
		t.Fatalf("%s\noperator %s\noperator log, the last %d lines:\n%s",
			fmt.Sprintf(format, args...), strings.Join(cmd.Args[1:], " "), len(lines), strings.Join(lines, "\n"))
	}

	var got appsv1.Deployment
	wantArgs := workload.Args(want)
	var lastErr error
	// What is awaited, for the failure message.
	awaiting := "a dispatcher Deployment " + want.Namespace + "/" + workload.Name
	err = wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 90*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-exited:
			return false, fmt.Errorf("the operator exited: %v", exitErr)
		default:
		}
		if err := c.k8s.Get(ctx, client.ObjectKey{Namespace: want.Namespace, Name: workload.Name}, &got); err != nil {
			if !apierrors.IsNotFound(err) {
				lastErr = err
			}
			return false, nil
		}
		lastErr = nil
		if len(got.Spec.Template.Spec.Containers) == 0 {
			return false, nil
		}
		if *got.Spec.Replicas != want.Replicas || !slices.Equal(got.Spec.Template.Spec.Containers[0].Args, wantArgs) {
			awaiting = fmt.Sprintf("the dispatcher Deployment to run as the values say: replicas %d, want %d; args (-want +got):\n%s",
				*got.Spec.Replicas, want.Replicas, cmp.Diff(wantArgs, got.Spec.Template.Spec.Containers[0].Args))
			return false, nil
		}
		if also != nil {
			awaiting = "the notes' example to be Ready"
			done, err := also(ctx)
			lastErr = err
			return done, nil
		}
		return true, nil
	})
	if err != nil {
		fail("waiting for %s: %v (last error: %v)", awaiting, err, lastErr)
	}
	d := got.Spec.Template.Spec.Containers[0]
	if d.Image != want.Image || (want.ImagePullPolicy != "" && d.ImagePullPolicy != want.ImagePullPolicy) {
		t.Errorf("dispatcher image %s (%s), want %s (%s)", d.Image, d.ImagePullPolicy, want.Image, want.ImagePullPolicy)
	}
	if diff := cmp.Diff(*want.Resources, d.Resources, quantities); diff != "" {
		t.Errorf("dispatcher resources (-want +got):\n%s", diff)
	}
}

// serviceAccountKubeconfig is the admin kubeconfig impersonating the operator's
// ServiceAccount, so the API server authorises the operator's requests with the chart's RBAC.
func (c *cluster) serviceAccountKubeconfig(t *testing.T, dir string, operator *appsv1.Deployment) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(c.env.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	sa := operator.Spec.Template.Spec.ServiceAccountName
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = "system:serviceaccount:" + namespace + ":" + sa
		auth.ImpersonateGroups = []string{"system:serviceaccounts", "system:serviceaccounts:" + namespace, "system:authenticated"}
	}
	path := filepath.Join(dir, "operator.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// hooklineBinary builds bin/hookline's source into a temporary directory, once per test.
func (c *cluster) hooklineBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(c.helmHome, "hookline")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	if _, _, err := c.run(nil, "go", "build", "-o", bin, "./cmd/hookline"); err != nil {
		t.Fatal(err)
	}
	return bin
}

// TestApplyRenderedManifests is the GitOps path (Argo CD applies `helm template` output):
// the rendered manifests, the CRDs and the namespace included, are applied with kubectl
// server-side apply, and the operator's pod passes the restricted Pod Security Standard.
func TestApplyRenderedManifests(t *testing.T) {
	c := startCluster(t)
	const ns = "hookline-gitops"
	valuesFile := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(valuesFile, []byte(`
fullnameOverride: gitops
namespace:
  create: true
  labels:
    pod-security.kubernetes.io/enforce: restricted
    pod-security.kubernetes.io/warn: restricted
`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, args := range map[string][]string{
		"default values": nil,
		"external queue": {"--values", externalValues},
	} {
		t.Run(name, func(t *testing.T) {
			manifests, _, err := c.run(nil, c.helm, append([]string{"template", "gitops", chartDir, "--namespace", ns,
				"--kube-version", c.kubeVersion, "--include-crds", "--values", valuesFile}, args...)...)
			if err != nil {
				t.Fatal(err)
			}
			// Applied for real, not as a dry run: the namespace must exist for the objects in it.
			out, stderr, err := c.run(strings.NewReader(manifests), c.kubectl, "--kubeconfig", c.env.Kubeconfig,
				"apply", "--server-side", "--field-manager=helm-test", "-f", "-")
			if err != nil {
				t.Fatalf("the API server refused the rendered manifests: %v\n%s", err, out)
			}
			if strings.Contains(stderr, "PodSecurity") {
				t.Errorf("the operator's pod does not meet the restricted Pod Security Standard:\n%s", stderr)
			}
			var nsObj corev1.Namespace
			c.get(t, "", ns, &nsObj)
			if got := nsObj.Labels["pod-security.kubernetes.io/enforce"]; got != "restricted" {
				t.Errorf("namespace %s enforces %q, want restricted", ns, got)
			}
			var d appsv1.Deployment
			c.get(t, ns, "gitops-operator", &d)
		})
	}
}
