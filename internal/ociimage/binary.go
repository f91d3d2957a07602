package ociimage

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Stamp is what `hookline version` prints besides the Go version.
type Stamp struct {
	Version string
	Commit  string
}

// LDFlags are the linker flags that stamp s into cmd/hookline and strip debug info.
func (s Stamp) LDFlags() string {
	return fmt.Sprintf("-s -w -X main.version=%s -X main.commit=%s", s.Version, s.Commit)
}

// GoBuild builds pkg (run from the module in dir) as a static binary for p into out:
// CGO_ENABLED=0, -trimpath, stamped, without build tags (so `hookline dev` and its local
// control plane stay out).
func GoBuild(ctx context.Context, dir, pkg, out string, p v1.Platform, s Stamp) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags", s.LDFlags(), "-o", out, pkg)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+p.OS, "GOARCH="+p.Architecture)
	if p.Architecture == "arm" && p.Variant != "" {
		cmd.Env = append(cmd.Env, "GOARM="+strings.TrimPrefix(p.Variant, "v"))
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s for %s: %w\n%s", pkg, p.String(), err, b)
	}
	return nil
}
