package gitops

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"testing"
)

// docSnippet is a YAML block in docs/gitops.md introduced by a comment naming the file of
// testdata it shows: <!-- test/gitops/testdata/<path> -->.
var docSnippet = regexp.MustCompile("(?s)<!-- test/gitops/testdata/([^ ]+) -->\n```yaml\n(.*?)```\n")

// TestDocsShowTheTestedManifests checks that every manifest docs/gitops.md shows is, byte
// for byte, a file this suite applies, and that the doc shows each of them.
func TestDocsShowTheTestedManifests(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "docs", "gitops.md"))
	if err != nil {
		t.Fatal(err)
	}
	testdata := os.DirFS("testdata")
	shown := map[string]bool{}
	for _, m := range docSnippet.FindAllStringSubmatch(string(doc), -1) {
		path, snippet := m[1], m[2]
		shown[path] = true
		// fs.ReadFile on the testdata directory refuses paths that leave it.
		want, err := fs.ReadFile(testdata, path)
		if err != nil {
			t.Errorf("docs/gitops.md shows test/gitops/testdata/%s, which does not exist: %v", path, err)
			continue
		}
		if snippet != string(want) {
			t.Errorf("docs/gitops.md's copy of test/gitops/testdata/%s differs from the file; paste the file into the doc.\ndoc:\n%s\nfile:\n%s", path, snippet, want)
		}
	}
	for _, path := range []string{"flux/platform.yaml", "flux/helm.yaml", "repo/webhooks/endpoints.yaml",
		"repo/webhooks/subscriptions.yaml", "repo/broken/broken.yaml"} {
		if !shown[path] {
			t.Errorf("docs/gitops.md does not show test/gitops/testdata/%s (a block introduced by <!-- test/gitops/testdata/%s -->)", path, path)
		}
	}
}
