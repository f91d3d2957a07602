package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"
)

// Stamped by the build with -ldflags "-X main.version=... -X main.commit=..." (make build,
// make image, the Dockerfile, the release workflow). A plain `go build` leaves these.
var (
	version = "devel"
	commit  = "unknown"
)

func init() {
	register("version", "print the version, commit and Go version of this binary", runVersion)
}

func runVersion(args []string) error {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	_, err := fmt.Fprintln(os.Stdout, versionLine())
	return err
}

// versionLine is what `hookline version` prints, one line a script can split on spaces.
func versionLine() string {
	return fmt.Sprintf("hookline %s commit %s %s %s/%s", version, commit, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
