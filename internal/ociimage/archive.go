package ociimage

import (
	"fmt"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// WriteArchive writes img to file as a docker-compatible image archive tagged ref: the
// format `docker load` and `podman load` read, and `ctr images import` too (containerd
// converts it and keeps ref as the image's name).
func WriteArchive(file, ref string, img v1.Image) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("image tag %q: %w (want repository:tag)", ref, err)
	}
	if err := tarball.WriteToFile(file, tag, img); err != nil {
		return fmt.Errorf("write image archive %s: %w", file, err)
	}
	return nil
}
