//go:build gitops

package gitops

import (
	"net/http"
	"net/http/cgi" //nolint:gosec // G504 is about Go before 1.6.3; the test serves git-http-backend on loopback only
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// gitBackend is Debian's git-http-backend (package git): the smart HTTP protocol that
// source-controller clones with, served through net/http/cgi on loopback.
const gitBackend = "/usr/lib/git-core/git-http-backend"

// gitServer serves the bare repositories under root as http://<addr>/<name>.git.
type gitServer struct {
	root string
	srv  *httptest.Server
}

func newGitServer(root string) *gitServer {
	_, err := os.Stat(gitBackend)
	Expect(err).NotTo(HaveOccurred(), "%s not found: install Debian's git package (apt-get install git)", gitBackend)
	h := &cgi.Handler{
		Path: gitBackend,
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	return &gitServer{root: root, srv: httptest.NewServer(h)}
}

// repo is a Git repository served by a gitServer, with a working tree the test commits to.
type repo struct {
	URL  string
	bare string
	work string
}

func (s *gitServer) newRepo(name string) *repo {
	r := &repo{URL: s.srv.URL + "/" + name + ".git", bare: filepath.Join(s.root, name+".git"), work: filepath.Join(workDir, "work-"+name)}
	git("", "init", "--quiet", "--bare", "--initial-branch=main", r.bare)
	git("", "init", "--quiet", "--initial-branch=main", r.work)
	return r
}

// commit writes files (path relative to the repository -> content; "" deletes the file),
// commits, pushes to the served repository and returns the commit's SHA.
func (r *repo) commit(msg string, files map[string]string) string {
	GinkgoHelper()
	for path, content := range files {
		p := filepath.Join(r.work, path)
		if content == "" {
			Expect(os.Remove(p)).To(Succeed())
			continue
		}
		Expect(os.MkdirAll(filepath.Dir(p), 0o755)).To(Succeed())
		Expect(os.WriteFile(p, []byte(content), 0o600)).To(Succeed())
	}
	git(r.work, "add", "--all")
	git(r.work, "-c", "user.name=gitops test", "-c", "user.email=gitops@hookline.invalid", "commit", "--quiet", "-m", msg)
	git(r.work, "push", "--quiet", r.bare, "main")
	return strings.TrimSpace(git(r.work, "rev-parse", "HEAD"))
}

func git(dir string, args ...string) string {
	GinkgoHelper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	Expect(err).NotTo(HaveOccurred(), "git %v: %s", args, out)
	return string(out)
}

// newHelmRepository packages charts/hookline with values overridden by nothing, writes the
// index with the loopback URL, and serves the directory: a Helm repository as a chart
// museum or a static site serves it.
func newHelmRepository(helm, chartDir string) *httptest.Server {
	dir := filepath.Join(workDir, "helm-repo")
	Expect(os.MkdirAll(dir, 0o755)).To(Succeed())
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	for _, args := range [][]string{
		{"package", chartDir, "--destination", dir},
		{"repo", "index", dir, "--url", srv.URL},
	} {
		out, err := exec.Command(helm, args...).CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "helm %v: %s", args, out)
	}
	return srv
}
