package ociimage

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"path"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// NonRoot is the uid and gid the image runs as: distroless's "nonroot", which the
// operator's and dispatcher's pod specs name too.
const NonRoot = 65532

// Spec says what goes into one platform's image.
type Spec struct {
	// Binary is the static executable's path on this machine; it becomes /<Name>.
	Binary string
	// Name is the executable's name in the image, and the entrypoint.
	Name string
	// Args are the default arguments (the image's CMD).
	Args []string
	// CABundle is the PEM CA bundle copied to /etc/ssl/certs/ca-certificates.crt, where
	// Go's crypto/x509 looks first on Linux. Empty leaves it out (the pause image).
	CABundle string
	// Platform is the binary's OS and architecture.
	Platform v1.Platform
	// Labels are the image config's labels (org.opencontainers.image.*).
	Labels map[string]string
	// Created stamps the config and every file; the same inputs and Created give the same
	// digest. The zero time means the Unix epoch.
	Created time.Time
}

// Build returns the image Spec describes: one layer on an empty base, OCI media types.
func Build(s Spec) (v1.Image, error) {
	if s.Name == "" || path.Base(s.Name) != s.Name {
		return nil, fmt.Errorf("image spec: Name %q must be a plain file name", s.Name)
	}
	created := s.Created
	if created.IsZero() {
		created = time.Unix(0, 0)
	}
	layerTar, err := rootfs(s, created)
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.Append(base, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "hookline ociimage: /" + s.Name},
	})
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Variant = s.Platform.OS, s.Platform.Architecture, s.Platform.Variant
	cf.Created = v1.Time{Time: created}
	cf.Config.Entrypoint = []string{"/" + s.Name}
	cf.Config.Cmd = s.Args
	cf.Config.User = fmt.Sprintf("%d:%d", NonRoot, NonRoot)
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = s.Labels
	if s.CABundle != "" {
		cf.Config.Env = []string{"SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	}
	return mutate.ConfigFile(img, cf)
}

// rootfs is the layer's tar: the binary, and for a CA bundle the files a non-root Go
// program with TLS expects (the bundle, /etc/passwd and /etc/group naming uid 65532).
func rootfs(s Spec, created time.Time) ([]byte, error) {
	bin, err := os.ReadFile(s.Binary)
	if err != nil {
		return nil, fmt.Errorf("image binary: %w", err)
	}
	type file struct {
		name string
		mode int64
		body []byte
	}
	files := []file{{name: s.Name, mode: 0o755, body: bin}}
	if s.CABundle != "" {
		ca, err := os.ReadFile(s.CABundle)
		if err != nil {
			return nil, fmt.Errorf("image CA bundle: %w (install Debian's ca-certificates or pass another bundle)", err)
		}
		files = append(files,
			file{name: "etc/", mode: 0o755},
			file{name: "etc/group", mode: 0o644, body: fmt.Appendf(nil, "root:x:0:\nnonroot:x:%d:\n", NonRoot)},
			file{name: "etc/passwd", mode: 0o644, body: fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:%d:%d:nonroot:/home/nonroot:/sbin/nologin\n", NonRoot, NonRoot)},
			file{name: "etc/ssl/", mode: 0o755},
			file{name: "etc/ssl/certs/", mode: 0o755},
			file{name: "etc/ssl/certs/ca-certificates.crt", mode: 0o644, body: ca},
			// A home and a writable /tmp for a non-root user, as distroless has them.
			file{name: "home/", mode: 0o755},
			file{name: "home/nonroot/", mode: 0o700},
			file{name: "tmp/", mode: 0o1777},
		)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		hdr := &tar.Header{Name: f.name, Mode: f.mode, ModTime: created, Format: tar.FormatPAX, Typeflag: tar.TypeReg, Size: int64(len(f.body))}
		if f.name[len(f.name)-1] == '/' {
			hdr.Typeflag, hdr.Size = tar.TypeDir, 0
		}
		if f.name == "home/nonroot/" {
			hdr.Uid, hdr.Gid = NonRoot, NonRoot
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, fmt.Errorf("image layer %s: %w", f.name, err)
		}
		if _, err := tw.Write(f.body); err != nil {
			return nil, fmt.Errorf("image layer %s: %w", f.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("image layer: %w", err)
	}
	return buf.Bytes(), nil
}
