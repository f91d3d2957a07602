//go:build gitops

package gitops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/receiver"
	"github.com/hookline/hookline/internal/signing"
)

// proc is a process under test (a Flux controller, the operator, the dispatcher), its
// output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func startProcess(name string, env []string, bin string, args ...string) *proc {
	logPath := filepath.Join(workDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	log, err := os.Create(logPath)
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	Expect(cmd.Start()).To(Succeed())
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(p.done)
	}()
	return p
}

// stop asks the process to stop and waits, killing it if it takes too long.
func (p *proc) stop() {
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// exited stops an Eventually at once when the process has ended: it will not become ready.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return StopTrying(fmt.Sprintf("%s exited: %v", p.name, p.cmd.ProcessState))
	default:
		return nil
	}
}

// logTail describes the process for a failure message: its log file and the log's last
// lines, so a failed run in CI says why without the temporary directory.
func (p *proc) logTail() string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("%s log %s: %v", p.name, p.logPath, err)
	}
	if len(data) > 6000 {
		data = data[len(data)-6000:]
	}
	return fmt.Sprintf("%s log %s, last lines:\n%s", p.name, p.logPath, data)
}

// waitReady waits for an HTTP readiness endpoint of p, failing at once if p exits.
func (p *proc) waitReady(url string) {
	GinkgoHelper()
	Eventually(func() error {
		if err := p.exited(); err != nil {
			return err
		}
		return httpGetOK(url)
	}).Should(Succeed(), func() string { return p.name + " not ready; " + p.logTail() })
}

func freeAddr() string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

func httpGetOK(url string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	return nil
}

// publisherToken gives a ServiceAccount of ns the right to publish there and returns its token.
func publisherToken(ns string) string {
	ctx := context.Background()
	Expect(k8s.Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "publisher"}})).To(Succeed())
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "hookline-publisher"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"hookline.io"}, Resources: []string{"events"}, Verbs: []string{"create"}}},
	}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "publisher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "publisher", Namespace: ns}},
	})).To(Succeed())
	cs, err := kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())
	tok, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "publisher", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return tok.Status.Token
}

// publish sends one event as the ServiceAccount and returns an error unless it was accepted.
func publish(ns, token, id, typ string, data any) error {
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, apiURL+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, msg)
	}
	return nil
}

// endpointReceiver is a loopback receiver that verifies every delivery with the endpoint's
// current signing keys.
type endpointReceiver struct {
	*receiver.Receiver
	srv *httptest.Server
}

func newReceiver(ns, endpoint string) *endpointReceiver {
	r := &receiver.Receiver{Secrets: func() []string { return liveKeys(ns, endpoint) }}
	srv := httptest.NewServer(r)
	DeferCleanup(func() {
		r.Release()
		srv.Close()
	})
	return &endpointReceiver{Receiver: r, srv: srv}
}

func (r *endpointReceiver) URL() string { return r.srv.URL + "/hooks" }

// liveKeys reads an endpoint's keys from its signing Secret.
func liveKeys(ns, endpoint string) []string {
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: signing.SecretName(endpoint)}, &s); err != nil {
		return nil
	}
	ks, err := signing.KeySetFromSecretData(s.Data)
	if err != nil {
		return nil
	}
	keys := []string{ks.Current.Secret}
	if ks.Previous != nil {
		keys = append(keys, ks.Previous.Secret)
	}
	return keys
}
