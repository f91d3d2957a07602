package main

import (
	"runtime"
	"strings"
	"testing"
)

func TestVersionLineCarriesTheStamp(t *testing.T) {
	version, commit = "v1.2.3", "abc123"
	t.Cleanup(func() { version, commit = "devel", "unknown" })
	got := versionLine()
	for _, want := range []string{"hookline v1.2.3", "commit abc123", runtime.Version(), runtime.GOOS + "/" + runtime.GOARCH} {
		if !strings.Contains(got, want) {
			t.Errorf("version line %q lacks %q", got, want)
		}
	}
	if err := runVersion([]string{"extra"}); err == nil {
		t.Error("an unexpected argument was accepted")
	}
}
