package ociimage

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func writeFile(t *testing.T, dir, name, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestBuildAndArchive builds an image from a stand-in binary and reads the archive back as
// docker load would: non-root user, entrypoint, the files of the layer and their modes, and
// the same digest for the same inputs.
func TestBuildAndArchive(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{
		Binary: writeFile(t, dir, "bin", "#not really an executable"), Name: "hookline", Args: []string{"version"},
		CABundle: writeFile(t, dir, "ca.pem", "-----BEGIN CERTIFICATE-----\n"),
		Platform: v1.Platform{OS: "linux", Architecture: "arm64"}, Created: time.Unix(1700000000, 0),
		Labels: map[string]string{"org.opencontainers.image.version": "v1"},
	}
	img, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "image.tar")
	if err := WriteArchive(archive, "example.test/hookline:v1", img); err != nil {
		t.Fatal(err)
	}
	back, err := tarball.ImageFromPath(archive, nil)
	if err != nil {
		t.Fatalf("reading the archive back: %v", err)
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || strings.Join(cf.Config.Entrypoint, " ") != "/hookline" ||
		strings.Join(cf.Config.Cmd, " ") != "version" || cf.Architecture != "arm64" || cf.OS != "linux" ||
		cf.Config.Labels["org.opencontainers.image.version"] != "v1" {
		t.Errorf("config: user %q entrypoint %q cmd %q platform %s/%s labels %v", cf.Config.User, cf.Config.Entrypoint, cf.Config.Cmd, cf.OS, cf.Architecture, cf.Config.Labels)
	}
	layers, err := back.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("layers %d, %v; want 1", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	modes := map[string]int64{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		modes[h.Name] = h.Mode
	}
	for name, mode := range map[string]int64{"hookline": 0o755, "etc/passwd": 0o644, "etc/ssl/certs/ca-certificates.crt": 0o644, "tmp/": 0o1777} {
		if got, ok := modes[name]; !ok || got != mode {
			t.Errorf("layer: %s mode %o (present %v), want %o", name, got, ok, mode)
		}
	}
	for name := range modes {
		if strings.HasPrefix(name, "bin/") || name == "bin/sh" {
			t.Errorf("layer has %s: the image must have no shell", name)
		}
	}
	again, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("the same inputs gave digests %s and %s", d1, d2)
	}
}

func TestBuildRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	bin := writeFile(t, dir, "bin", "x")
	for name, s := range map[string]Spec{
		"name with a path": {Binary: bin, Name: "usr/bin/hookline"},
		"missing binary":   {Binary: filepath.Join(dir, "nope"), Name: "hookline"},
		"missing CA":       {Binary: bin, Name: "hookline", CABundle: filepath.Join(dir, "nope.pem")},
	} {
		if _, err := Build(s); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := WriteArchive(filepath.Join(dir, "x.tar"), "no tag here!", nil); err == nil {
		t.Error("a malformed tag was accepted")
	}
}
