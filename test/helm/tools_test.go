// The tools the chart's tests run, and the helpers that read what helm renders.

package helm

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/workload"
)

const (
	chartDir  = "charts/hookline"
	release   = "hookline"
	namespace = "hookline-system"
	// externalValues changes every operator and dispatcher value from its default.
	externalValues = "test/helm/testdata/external-values.yaml"
	// settingsKey is the file in the settings ConfigMap the operator reads with --config.
	settingsKey = "dispatcher.yaml"
)

// quantities compares resource quantities by value, as the API server does.
var quantities = cmp.Comparer(func(a, b resource.Quantity) bool { return a.Cmp(b) == 0 })

// tools are the binaries the tests run, all from bin/.
type tools struct {
	root    string
	helm    string
	kubectl string
	assets  string
	// kubeVersion is the control plane's: bin/helm, built without Helm's release
	// flags, would otherwise render for Kubernetes 1.20, below the chart's kubeVersion.
	kubeVersion string
	helmHome    string
}

// setup finds the tools, skipping the test when bin/helm is absent.
func setup(t *testing.T) *tools {
	t.Helper()
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	c := &tools{root: root, helm: filepath.Join(root, "bin", "helm")}
	if _, err := os.Stat(c.helm); err != nil {
		t.Skip("bin/helm not found, so the Helm chart is not tested: run `make helm` (`make test` does)")
	}
	if c.assets, err = controlplane.AssetsDir(root); err != nil {
		t.Fatal(err)
	}
	c.kubectl = filepath.Join(c.assets, "kubectl")
	out, err := exec.Command(filepath.Join(c.assets, "kube-apiserver"), "--version").Output()
	if err != nil {
		t.Fatalf("kube-apiserver --version: %v", err)
	}
	// "Kubernetes v1.37.2"
	c.kubeVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "Kubernetes ")
	// Helm's cache, config and data directories, so the tests neither read nor write $HOME.
	c.helmHome = t.TempDir()
	return c
}

// run runs a command from the repository root. The error carries stderr.
func (c *tools) run(stdin io.Reader, name string, args ...string) (stdout, stderr string, err error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = c.root
	cmd.Stdin = stdin
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(c.helmHome, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(c.helmHome, "config"),
		"HELM_DATA_HOME="+filepath.Join(c.helmHome, "data"),
	)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), e.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(name), strings.Join(args, " "), err, e.String())
	}
	return o.String(), e.String(), nil
}

// template renders the chart as release hookline in hookline-system.
func (c *tools) template(args ...string) (string, error) {
	out, _, err := c.run(nil, c.helm, append([]string{"template", release, chartDir,
		"--namespace", namespace, "--kube-version", c.kubeVersion}, args...)...)
	return out, err
}

// render renders the chart and decodes the objects.
func (c *tools) render(t *testing.T, args ...string) []*unstructured.Unstructured {
	t.Helper()
	out, err := c.template(args...)
	if err != nil {
		t.Fatal(err)
	}
	return decode(t, out)
}

// decode reads a stream of YAML documents into objects, skipping empty ones.
func decode(t *testing.T, manifests string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(manifests), 4096)
	var objs []*unstructured.Unstructured
	for {
		var obj map[string]any
		if err := dec.Decode(&obj); errors.Is(err, io.EOF) {
			return objs
		} else if err != nil {
			t.Fatalf("decoding rendered manifests: %v", err)
		}
		if len(obj) > 0 {
			objs = append(objs, &unstructured.Unstructured{Object: obj})
		}
	}
}

// kustomizeHash is the content hash kustomize's configMapGenerator appends to a name.
var kustomizeHash = regexp.MustCompile(`-[a-z0-9]{10}$`)

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, o := range objs {
		if o.GetKind() == kind && (o.GetName() == name || kind == "ConfigMap" && kustomizeHash.ReplaceAllString(o.GetName(), "") == name) {
			return o
		}
	}
	t.Fatalf("no %s %s among the rendered objects", kind, name)
	return nil
}

// typed converts obj into out, a typed API object.
func typed(t *testing.T, obj *unstructured.Unstructured, out any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, out, true); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

func operatorDeployment(t *testing.T, objs []*unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	var d appsv1.Deployment
	typed(t, find(t, objs, "Deployment", "hookline-operator"), &d)
	return &d
}

// settings reads the dispatcher settings ConfigMap the way the operator reads its --config
// file: strictly, so a key the operator does not know fails the test.
func settings(t *testing.T, objs []*unstructured.Unstructured) workload.Settings {
	t.Helper()
	var cm corev1.ConfigMap
	typed(t, find(t, objs, "ConfigMap", "hookline-dispatcher-settings"), &cm)
	file := filepath.Join(t.TempDir(), settingsKey)
	if err := os.WriteFile(file, []byte(cm.Data[settingsKey]), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := workload.LoadFile(file)
	if err != nil {
		t.Fatalf("the operator would not start: %v", err)
	}
	return s
}
