// Command image builds hookline's container image with no container engine and no base
// image to pull (see internal/ociimage): `make image` writes one platform's archive for
// `docker load`, `podman load` or `ctr images import`; the release workflow pushes the
// multi-platform image and prints its digest.
//
//	go run ./hack/image -out bin/hookline-image.tar -tag hookline/hookline:dev
//	go run ./hack/image -push ghcr.io/hookline/hookline:v0.1.0 -platforms linux/amd64,linux/arm64
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/ociimage"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "image: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("image", flag.ContinueOnError)
	out := fs.String("out", "", "write a docker-compatible archive of one platform's image here")
	tag := fs.String("tag", "hookline/hookline:dev", "the archive's repository:tag")
	push := fs.String("push", "", "push the multi-platform image to this repository:tag (credentials from the docker config)")
	platforms := fs.String("platforms", "linux/"+runtime.GOARCH, "comma-separated os/arch list; -out takes exactly one")
	version := fs.String("version", "devel", "version stamped into the binary and the image's labels")
	commit := fs.String("commit", "unknown", "commit stamped into the binary and the image's labels")
	ca := fs.String("ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "PEM CA bundle to include; empty for none")
	pkg := fs.String("pkg", "./cmd/hookline", "the Go command to put in the image (hack/pause for the tests' sandbox image)")
	exe := fs.String("name", "hookline", "the command's file name in the image, and the entrypoint")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if (*out == "") == (*push == "") {
		return errors.New("give exactly one of -out and -push")
	}
	plats, err := parsePlatforms(*platforms)
	if err != nil {
		return err
	}
	if *out != "" && len(plats) != 1 {
		return fmt.Errorf("-out holds one platform's image, -platforms names %d", len(plats))
	}
	root, err := controlplane.RepoRoot()
	if err != nil {
		return err
	}
	stamp := ociimage.Stamp{Version: *version, Commit: *commit}
	created, err := sourceDate()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "hookline-image-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	idx := v1.ImageIndex(empty.Index)
	var first v1.Image
	for _, p := range plats {
		bin := filepath.Join(tmp, p.OS+"_"+p.Architecture, *exe)
		if err := ociimage.GoBuild(ctx, root, *pkg, bin, p, stamp); err != nil {
			return err
		}
		img, err := ociimage.Build(ociimage.Spec{
			Binary: bin, Name: *exe, CABundle: *ca, Platform: p, Created: created,
			Labels: map[string]string{
				"org.opencontainers.image.title":    *exe,
				"org.opencontainers.image.source":   "https://github.com/hookline/hookline",
				"org.opencontainers.image.version":  *version,
				"org.opencontainers.image.revision": *commit,
				"org.opencontainers.image.licenses": "Apache-2.0",
			},
		})
		if err != nil {
			return err
		}
		if first == nil {
			first = img
		}
		p := p
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &p}})
	}
	if *out != "" {
		if err := ociimage.WriteArchive(*out, *tag, first); err != nil {
			return err
		}
		digest, err := first.Digest()
		if err != nil {
			return err
		}
		fmt.Printf("%s %s %s\n", *out, *tag, digest)
		return nil
	}
	ref, err := name.NewTag(*push)
	if err != nil {
		return fmt.Errorf("-push %q: %w", *push, err)
	}
	if err := remote.WriteIndex(ref, idx, remote.WithContext(ctx), remote.WithAuthFromKeychain(authn.DefaultKeychain)); err != nil {
		return fmt.Errorf("push %s: %w", ref, err)
	}
	digest, err := idx.Digest()
	if err != nil {
		return err
	}
	// The release signs and pins this: repository@digest.
	fmt.Printf("%s@%s\n", ref.Context().Name(), digest)
	return nil
}

func parsePlatforms(s string) ([]v1.Platform, error) {
	var out []v1.Platform
	for _, f := range strings.Split(s, ",") {
		p, err := v1.ParsePlatform(strings.TrimSpace(f))
		if err != nil || p.OS == "" || p.Architecture == "" {
			return nil, fmt.Errorf("-platforms: %q is not os/arch (e.g. linux/amd64)", f)
		}
		out = append(out, *p)
	}
	return out, nil
}

// sourceDate is SOURCE_DATE_EPOCH (the release sets it to the commit's time, so a rebuild
// gives the same digest), or the Unix epoch.
func sourceDate() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	sec, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH=%q: want seconds since 1970", v)
	}
	return time.Unix(sec, 0).UTC(), nil
}
