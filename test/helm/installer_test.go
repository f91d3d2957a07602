package helm

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The released image every install path defaults to: ghcr.io/hookline/hookline:<appVersion>.
func releasedImage(t *testing.T, root string) string {
	t.Helper()
	chart, err := os.ReadFile(filepath.Join(root, chartDir, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^appVersion: "(.+)"$`).FindSubmatch(chart)
	if m == nil {
		t.Fatal("no appVersion in Chart.yaml")
	}
	return "ghcr.io/hookline/hookline:" + string(m[1])
}

// TestInstallPathsOnAPIServer checks that config/default, the chart and `make
// build-installer` install the released image by default, that IMG (a digest) reaches both
// the operator's container and the dispatcher's default image in dist/install.yaml, and that
// the API server takes config/default (applied) and dist/install.yaml (server-side dry run).
func TestInstallPathsOnAPIServer(t *testing.T) {
	c := startCluster(t)
	want := releasedImage(t, c.root)
	kustomized, _, err := c.run(nil, c.kubectl, "kustomize", "config/default")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(kustomized, want); n != 2 {
		t.Errorf("config/default names %s %d times, want 2 (the operator's image and HOOKLINE_IMAGE)", want, n)
	}
	if got := operatorDeployment(t, c.render(t)).Spec.Template.Spec.Containers[0].Image; got != want {
		t.Errorf("the chart's default image is %s, want %s", got, want)
	}
	if out, _, err := c.run(nil, c.kubectl, "--kubeconfig", c.env.Kubeconfig, "apply", "--server-side", "-k", "config/default"); err != nil {
		t.Fatalf("the API server refused config/default: %v\n%s", err, out)
	}

	const pinned = "ghcr.io/hookline/hookline@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	installer := filepath.Join(t.TempDir(), "install.yaml")
	if out, stderr, err := c.run(nil, "make", "--no-print-directory", "build-installer", "IMG="+pinned, "INSTALLER="+installer, "KUBECTL="+c.kubectl); err != nil {
		t.Fatalf("make build-installer: %v\n%s%s", err, out, stderr)
	}
	manifests, err := os.ReadFile(installer)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(manifests), pinned); n != 2 || strings.Contains(string(manifests), want) {
		t.Errorf("dist/install.yaml names the pinned image %d times (want 2) or still names %s", n, want)
	}
	if out, _, err := c.run(nil, c.kubectl, "--kubeconfig", c.env.Kubeconfig, "apply", "--server-side", "--dry-run=server", "-f", installer); err != nil {
		t.Fatalf("the API server refused dist/install.yaml: %v\n%s", err, out)
	}
}
