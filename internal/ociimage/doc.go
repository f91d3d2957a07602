// Package ociimage builds hookline's container image without a container engine: a static
// binary, a CA bundle and a passwd entry for uid 65532 in one layer on an empty base, no
// shell. `make image` (hack/image) writes it as an archive that `docker load`, `podman
// load` and `ctr images import` accept; the release pushes the multi-platform index; the
// real-node tests (test/node) build the image and the node's pause image with it.
//
// It is build tooling: nothing the shipped binary imports.
package ociimage
