// Package helm tests the Helm chart in charts/hookline with the helm that `make helm` builds
// into bin/: lint, what it renders compared with the kustomize install it mirrors and with the
// values given, the values schema, and installs on a real kube-apiserver (install_test.go).
package helm

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"

	"github.com/hookline/hookline/internal/workload"
)

func TestLint(t *testing.T) {
	c := setup(t)
	for name, args := range map[string][]string{
		"default values": nil,
		"external queue": {"--values", externalValues},
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := c.run(nil, c.helm, append([]string{"lint", chartDir, "--strict", "--kube-version", c.kubeVersion}, args...)...)
			if err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
		})
	}
}

// TestDefaultsMatchKustomize: with default values the chart installs what
// `kubectl apply -k config/default` does, so the two install paths cannot drift apart.
func TestDefaultsMatchKustomize(t *testing.T) {
	c := setup(t)
	chart := c.render(t, "--include-crds", "--set", "namespace.create=true")
	kustomized, _, err := c.run(nil, c.kubectl, "kustomize", "config/default")
	if err != nil {
		t.Fatal(err)
	}
	kust := decode(t, kustomized)

	key := func(o *unstructured.Unstructured) string {
		name := o.GetName()
		if o.GetKind() == "ConfigMap" {
			name = kustomizeHash.ReplaceAllString(name, "")
		}
		return o.GetKind() + " " + o.GetNamespace() + "/" + name
	}
	keys := func(objs []*unstructured.Unstructured) []string {
		var ks []string
		for _, o := range objs {
			ks = append(ks, key(o))
		}
		slices.Sort(ks)
		return ks
	}
	if diff := cmp.Diff(keys(kust), keys(chart)); diff != "" {
		t.Fatalf("the chart's objects differ from config/default's (-kustomize +chart):\n%s", diff)
	}

	byKey := map[string]*unstructured.Unstructured{}
	for _, o := range chart {
		byKey[key(o)] = o
	}
	for _, k := range kust {
		h := byKey[key(k)]
		t.Run(key(k), func(t *testing.T) {
			for name, value := range k.GetLabels() {
				if got := h.GetLabels()[name]; got != value {
					t.Errorf("label %s = %q, want %q as in config/", name, got, value)
				}
			}
			switch k.GetKind() {
			case "CustomResourceDefinition":
				if diff := cmp.Diff(k.Object, h.Object); diff != "" {
					t.Errorf("charts/hookline/crds differs from config/crd/bases: run `make manifests` (-config +chart):\n%s", diff)
				}
			case "ClusterRole", "Role":
				if diff := cmp.Diff(k.Object["rules"], h.Object["rules"]); diff != "" {
					t.Errorf("rules differ: run `make manifests` to refresh charts/hookline/files/role.yaml, or update the chart's leader election Role (-config +chart):\n%s", diff)
				}
			case "ClusterRoleBinding", "RoleBinding":
				for _, field := range []string{"roleRef", "subjects"} {
					if diff := cmp.Diff(k.Object[field], h.Object[field]); diff != "" {
						t.Errorf("%s differs (-config +chart):\n%s", field, diff)
					}
				}
			case "ConfigMap":
				// The same settings once the operator has filled in its defaults.
				want := settings(t, kust).Default("hookline")
				got := settings(t, chart).Default("hookline")
				if diff := cmp.Diff(want, got, quantities); diff != "" {
					t.Errorf("dispatcher settings differ from config/manager/dispatcher.yaml's (-config +chart):\n%s", diff)
				}
			case "Deployment":
				want, got := operatorDeployment(t, kust), operatorDeployment(t, chart)
				if *want.Spec.Replicas != *got.Spec.Replicas {
					t.Errorf("replicas = %d, want %d", *got.Spec.Replicas, *want.Spec.Replicas)
				}
				if name := got.Spec.Template.Spec.Volumes[0].ConfigMap.Name; name != find(t, chart, "ConfigMap", "hookline-dispatcher-settings").GetName() {
					t.Errorf("the settings volume mounts ConfigMap %s, which the chart does not render", name)
				}
				if diff := cmp.Diff(comparablePodSpec(t, want), comparablePodSpec(t, got), quantities); diff != "" {
					t.Errorf("the operator's pod differs from config/manager/manager.yaml's (-config +chart):\n%s", diff)
				}
			}
		})
	}
}

// comparablePodSpec is the operator's pod spec without what legitimately differs between the
// installs: the image's tag and pull policy, the ConfigMap's hash suffix, and the log level
// the chart always passes.
func comparablePodSpec(t *testing.T, d *appsv1.Deployment) corev1.PodSpec {
	t.Helper()
	spec := *d.Spec.Template.Spec.DeepCopy()
	for i := range spec.Containers {
		c := &spec.Containers[i]
		for j := range c.Env {
			if c.Env[j].Name == "HOOKLINE_IMAGE" {
				if c.Env[j].Value != c.Image {
					t.Errorf("HOOKLINE_IMAGE = %q, want the container's image %q: the dispatcher runs the operator's image", c.Env[j].Value, c.Image)
				}
				c.Env[j].Value = ""
			}
		}
		c.Image, c.ImagePullPolicy = "", ""
		c.Args = slices.DeleteFunc(c.Args, func(a string) bool { return strings.HasPrefix(a, "--zap-log-level=") })
	}
	for i := range spec.Volumes {
		if cm := spec.Volumes[i].ConfigMap; cm != nil {
			cm.Name = kustomizeHash.ReplaceAllString(cm.Name, "")
		}
	}
	return spec
}

// values is the part of the chart's values that TestValuesReachManifests checks.
type values struct {
	Image struct {
		Registry   string
		Repository string
		Tag        string
		Digest     string
		PullPolicy corev1.PullPolicy `json:"pullPolicy"`
	}
	ImagePullSecrets []corev1.LocalObjectReference `json:"imagePullSecrets"`
	Operator         struct {
		Replicas           int32
		WatchNamespaces    []string `json:"watchNamespaces"`
		LogLevel           string   `json:"logLevel"`
		Resources          corev1.ResourceRequirements
		NodeSelector       map[string]string          `json:"nodeSelector"`
		Tolerations        []corev1.Toleration        `json:"tolerations"`
		Affinity           *corev1.Affinity           `json:"affinity"`
		PodSecurityContext *corev1.PodSecurityContext `json:"podSecurityContext"`
		PriorityClassName  string                     `json:"priorityClassName"`
	}
	Dispatcher workload.Settings
}

// TestValuesReachManifests renders testdata/external-values.yaml and finds each value where
// the operator reads it: its Deployment, its flags, and its settings file.
func TestValuesReachManifests(t *testing.T) {
	c := setup(t)
	data, err := os.ReadFile(filepath.Join(c.root, externalValues))
	if err != nil {
		t.Fatal(err)
	}
	var v values
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	objs := c.render(t, "--values", externalValues)

	d := operatorDeployment(t, objs)
	pod := d.Spec.Template.Spec
	op := pod.Containers[0]
	image := v.Image.Registry + "/" + v.Image.Repository + "@" + v.Image.Digest
	check := func(what string, want, got any) {
		t.Helper()
		if diff := cmp.Diff(want, got, quantities); diff != "" {
			t.Errorf("%s (-values +rendered):\n%s", what, diff)
		}
	}
	check("replicas", v.Operator.Replicas, *d.Spec.Replicas)
	check("image", image, op.Image)
	check("imagePullPolicy", v.Image.PullPolicy, op.ImagePullPolicy)
	check("imagePullSecrets", v.ImagePullSecrets, pod.ImagePullSecrets)
	check("resources", v.Operator.Resources, op.Resources)
	check("nodeSelector", v.Operator.NodeSelector, pod.NodeSelector)
	check("tolerations", v.Operator.Tolerations, pod.Tolerations)
	check("affinity", v.Operator.Affinity, pod.Affinity)
	check("podSecurityContext", v.Operator.PodSecurityContext, pod.SecurityContext)
	check("priorityClassName", v.Operator.PriorityClassName, pod.PriorityClassName)
	check("operator args", []string{
		"operator",
		"--leader-elect",
		"--metrics-bind-address=:8080",
		"--health-probe-bind-address=:8081",
		"--watch-namespaces=" + strings.Join(v.Operator.WatchNamespaces, ","),
		"--zap-log-level=" + v.Operator.LogLevel,
		"--manage-dispatcher",
		"--config=/etc/hookline/" + settingsKey,
	}, op.Args)
	for _, e := range op.Env {
		if e.Name == "HOOKLINE_IMAGE" {
			check("HOOKLINE_IMAGE", image, e.Value)
		}
	}

	// The settings file holds the dispatcher values and nothing else: the embedded queue's
	// storage, which the values file leaves at its default, is left out for the external
	// queue, or the operator would refuse to start.
	s := settings(t, objs)
	// The release's pull secrets reach the dispatcher the operator renders too.
	wantDispatcher := v.Dispatcher
	for _, ref := range v.ImagePullSecrets {
		wantDispatcher.ImagePullSecrets = append(wantDispatcher.ImagePullSecrets, ref.Name)
	}
	check("dispatcher settings", wantDispatcher, s)
	if err := s.Default(image).Validate(); err != nil {
		t.Errorf("the operator refuses the rendered settings: %v", err)
	}
}

// TestChecksumRollsOperator: a change to the dispatcher values changes the operator pod's
// checksum annotation, which rolls it (it reads --config once, at start); others do not.
func TestChecksumRollsOperator(t *testing.T) {
	c := setup(t)
	checksum := func(args ...string) string {
		t.Helper()
		return operatorDeployment(t, c.render(t, args...)).Spec.Template.Annotations["checksum/dispatcher-settings"]
	}
	base := checksum()
	if base == "" {
		t.Fatal("the operator's pod template has no checksum/dispatcher-settings annotation")
	}
	for _, tc := range []struct {
		set   string
		rolls bool
	}{
		{"dispatcher.durability=always", true},
		{"dispatcher.maxBodyBytes=1048576", true},
		{"dispatcher.storage.size=20Gi", true},
		{"dispatcher.eventRetention.maxAge=72h", true},
		{"dispatcher.dashboard.enabled=true", true},
		{"dispatcher.dashboard.port=8091", false}, // the dashboard is off
		{"operator.logLevel=debug", false},
		{"operator.replicas=2", false},
	} {
		if got := checksum("--set", tc.set); (got != base) != tc.rolls {
			t.Errorf("--set %s: checksum %s, base %s; want a change: %v", tc.set, got, base, tc.rolls)
		}
	}
}

// TestInvalidValuesRefused: the schema (or, for what it cannot say, the templates) refuse
// values the operator would refuse at start, with a message naming the value to change.
func TestInvalidValuesRefused(t *testing.T) {
	c := setup(t)
	const schema = "values don't meet the specifications of the schema"
	for _, tc := range []struct {
		name string
		set  []string
		want []string
	}{
		{"replicas 3 with the embedded queue", []string{"dispatcher.replicas=3"},
			[]string{schema, "'/dispatcher/queue': value must be 'external'", "'/dispatcher/replicas': maximum: got 3, want 1"}},
		{"unknown queue mode", []string{"dispatcher.queue=kafka"},
			[]string{schema, "'/dispatcher/queue': value must be one of 'embedded', 'external'"}},
		{"unknown durability", []string{"dispatcher.durability=sometimes"},
			[]string{schema, "'/dispatcher/durability': value must be one of 'default', 'always'"}},
		{"external queue without a NATS URL", []string{"dispatcher.queue=external"},
			[]string{schema, "'/dispatcher/nats/url'"}},
		{"NATS URL with the embedded queue", []string{"dispatcher.nats.url=nats://nats:4222"},
			[]string{schema, "'/dispatcher/nats/url'"}},
		{"not a NATS URL", []string{"dispatcher.queue=external", "dispatcher.nats.url=http://nats:4222"},
			[]string{schema, "'/dispatcher/nats/url'"}},
		{"two ways to authenticate to NATS", []string{"dispatcher.queue=external", "dispatcher.nats.url=nats://nats:4222",
			"dispatcher.nats.credentialsSecret=a", "dispatcher.nats.tokenSecret=b"},
			[]string{"dispatcher.nats.credentialsSecret and dispatcher.nats.tokenSecret: set one way for the dispatcher to authenticate to NATS"}},
		{"six copies of each stream", []string{"dispatcher.queue=external", "dispatcher.nats.url=nats://nats:4222", "dispatcher.nats.replicas=6"},
			[]string{schema, "'/dispatcher/nats/replicas': maximum: got 6, want 5"}},
		{"stream replicas with the embedded queue", []string{"dispatcher.nats.replicas=3"},
			[]string{schema, "'/dispatcher/nats/replicas'"}},
		{"NATS TLS with the embedded queue", []string{"dispatcher.nats.tls.caSecret=nats-ca"},
			[]string{schema, "'/dispatcher/nats/tls/caSecret'"}},
		{"NATS Secret not a Secret name", []string{"dispatcher.queue=external", "dispatcher.nats.url=nats://nats:4222", "dispatcher.nats.userSecret=NATS_User"},
			[]string{schema, "'/dispatcher/nats/userSecret'"}},
		{"two operators without leader election", []string{"operator.replicas=2", "operator.leaderElection.enabled=false"},
			[]string{schema, "'/operator/leaderElection/enabled': value must be true"}},
		{"retention not a Go duration", []string{"dispatcher.eventRetention.maxAge=7d"},
			[]string{schema, "'/dispatcher/eventRetention/maxAge'"}},
		{"retention bytes not a size", []string{"dispatcher.eventRetention.maxBytes=lots"},
			[]string{schema, "'/dispatcher/eventRetention/maxBytes'"}},
		{"storage size not a quantity", []string{"dispatcher.storage.size=ten"},
			[]string{schema, "'/dispatcher/storage/size'"}},
		{"log level", []string{"operator.logLevel=loud"},
			[]string{schema, "'/operator/logLevel'"}},
		{"misspelt key", []string{"dispatcher.replica=2"},
			[]string{schema, "additional properties 'replica' not allowed"}},
		{"dashboard on the API port", []string{"dispatcher.dashboard.enabled=true", "dispatcher.dashboard.port=8080"},
			[]string{"dispatcher.dashboard.port=8080: the dispatcher's API listens there; choose another port"}},
		{"dashboard port out of range", []string{"dispatcher.dashboard.enabled=true", "dispatcher.dashboard.port=70000"},
			[]string{schema, "'/dispatcher/dashboard/port'"}},
		{"dashboard without Kubernetes auth", []string{"dispatcher.dashboard.enabled=true", "dispatcher.extraArgs={--auth,none}"},
			[]string{"dispatcher.dashboard.enabled needs the dispatcher's --auth=kubernetes, but dispatcher.extraArgs sets --auth=none"}},
		{"dashboard listen address set twice", []string{"dispatcher.dashboard.enabled=true", "dispatcher.extraArgs={--ui-listen=:8090}"},
			[]string{"dispatcher.dashboard.enabled and dispatcher.extraArgs --ui-listen=:8090 both say where the dashboard listens"}},
		{"dashboard behind a NetworkPolicy that lets no proxy in", []string{"dispatcher.dashboard.enabled=true", "networkPolicy.enabled=true"},
			[]string{"dispatcher.dashboard.enabled with networkPolicy.enabled needs networkPolicy.dashboardFrom"}},
		{"misspelt dashboard key", []string{"dispatcher.dashboard.enable=true"},
			[]string{schema, "additional properties 'enable' not allowed"}},
		{"watch namespaces set twice", []string{"operator.watchNamespaces={shop}", "dispatcher.watchNamespaces={billing}"},
			[]string{"set operator.watchNamespaces or dispatcher.watchNamespaces, not both"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var args []string
			for _, s := range tc.set {
				args = append(args, "--set", s)
			}
			_, err := c.template(args...)
			if err == nil {
				t.Fatalf("helm template accepted --set %s", strings.Join(tc.set, " --set "))
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the error does not say %q:\n%v", want, err)
				}
			}
		})
	}
}

// TestExternalOverlay: config/external replaces the default install's dispatcher settings
// with ones for an external JetStream cluster that the operator accepts, and changes
// nothing else.
func TestExternalOverlay(t *testing.T) {
	c := setup(t)
	out, _, err := c.run(nil, c.kubectl, "kustomize", "config/external")
	if err != nil {
		t.Fatal(err)
	}
	base, _, err := c.run(nil, c.kubectl, "kustomize", "config/default")
	if err != nil {
		t.Fatal(err)
	}
	objs, baseObjs := decode(t, out), decode(t, base)
	if len(objs) != len(baseObjs) {
		t.Errorf("config/external has %d objects, config/default %d", len(objs), len(baseObjs))
	}
	s := settings(t, objs)
	if s.Queue != workload.QueueExternal || s.NATS.URL == "" {
		t.Errorf("settings = %+v, want the external queue", s)
	}
	d := s.Default("hookline:test")
	if err := d.Validate(); err != nil {
		t.Errorf("the operator refuses config/external's settings: %v", err)
	}
	if d.Replicas != 3 || d.NATS.Replicas != 3 {
		t.Errorf("replicas %d, stream replicas %d; want 3 and 3", d.Replicas, d.NATS.Replicas)
	}
}
