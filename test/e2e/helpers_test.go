package e2e

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
	"strings"
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

// proc is a hookline process under test, its output in a log file.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{}
}

func startProcess(name, bin string, args ...string) *proc {
	logPath := filepath.Join(workDir, fmt.Sprintf("%s-%d.log", name, time.Now().UnixNano()))
	log, err := os.Create(logPath)
	Expect(err).NotTo(HaveOccurred())
	cmd := exec.Command(bin, args...)
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
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process with SIGKILL, as a node failure or OOM kill would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

func freeAddr() string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer l.Close()
	return l.Addr().String()
}

func httpGetOK(ctx context.Context, url string) error {
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

func stringsReader(s string) io.Reader { return strings.NewReader(s) }

// newNamespace makes a namespace with a ServiceAccount allowed to publish to it, and
// returns the namespace and the account's token.
func newNamespace() (string, string) {
	ctx := context.Background()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "e2e-"}}
	Expect(k8s.Create(ctx, ns)).To(Succeed())
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "publisher"}}
	Expect(k8s.Create(ctx, sa)).To(Succeed())
	role := &rbacv1.Role{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "hookline-publisher"},
		Rules:      []rbacv1.PolicyRule{{APIGroups: []string{"hookline.io"}, Resources: []string{"events"}, Verbs: []string{"create"}}},
	}
	Expect(k8s.Create(ctx, role)).To(Succeed())
	Expect(k8s.Create(ctx, &rbacv1.RoleBinding{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns.Name, Name: "publisher"},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "Role", Name: role.Name},
		Subjects:   []rbacv1.Subject{{Kind: "ServiceAccount", Name: "publisher", Namespace: ns.Name}},
	})).To(Succeed())
	cs, err := kubernetes.NewForConfig(env.Config)
	Expect(err).NotTo(HaveOccurred())
	tok, err := cs.CoreV1().ServiceAccounts(ns.Name).CreateToken(ctx, "publisher", &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	Expect(err).NotTo(HaveOccurred())
	return ns.Name, tok.Status.Token
}

// publish sends one event as the ServiceAccount and expects it accepted.
func publish(ns, token, id, typ string, data any) {
	body, _ := json.Marshal(map[string]any{"id": id, "type": typ, "data": data})
	var lastErr error
	// A publish is retried with the same id, as a producer would: it is stored once.
	for i := 0; i < 50; i++ {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, apiURL+"/v1/namespaces/"+ns+"/events", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			msg, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusAccepted {
				return
			}
			lastErr = fmt.Errorf("%s: %s", resp.Status, msg)
			if resp.StatusCode < 500 {
				break
			}
		} else {
			lastErr = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	Fail(fmt.Sprintf("publishing %s: %v", id, lastErr))
}

// endpointReceiver is a loopback receiver that verifies with the keys keys() returns.
type endpointReceiver struct {
	*receiver.Receiver
	srv *httptest.Server
}

func newReceiver(keys func() []string) *endpointReceiver {
	r := &receiver.Receiver{Secrets: keys}
	srv := httptest.NewServer(r)
	DeferCleanup(func() {
		r.Release()
		srv.Close()
	})
	return &endpointReceiver{Receiver: r, srv: srv}
}

func (r *endpointReceiver) URL() string { return r.srv.URL + "/hooks" }

// liveKeys reads an endpoint's keys from its Secret: the current key, and the previous one
// during an overlap unless currentOnly.
func liveKeys(ns, endpoint string, currentOnly bool) []string {
	var s corev1.Secret
	if err := k8s.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: signing.SecretName(endpoint)}, &s); err != nil {
		return nil
	}
	ks, err := signing.KeySetFromSecretData(s.Data)
	if err != nil {
		return nil
	}
	keys := []string{ks.Current.Secret}
	if ks.Previous != nil && !currentOnly {
		keys = append(keys, ks.Previous.Secret)
	}
	return keys
}

// endpointYAML is a WebhookEndpoint delivering to url over loopback.
func endpointYAML(name, url string) string {
	return fmt.Sprintf(`apiVersion: hookline.io/v1alpha1
kind: WebhookEndpoint
metadata: {name: %s}
spec:
  url: %s
  allowInsecureHTTP: true
  limits: {timeout: 3s}
`, name, url)
}

// subscriptionYAML subscribes endpoint to types with a fast retry schedule, so a test sees
// retries within seconds.
func subscriptionYAML(name, endpoint string, types ...string) string {
	return fmt.Sprintf(`apiVersion: hookline.io/v1alpha1
kind: Subscription
metadata: {name: %s}
spec:
  endpointRef: {name: %s}
  eventTypes: [%s]
  delivery:
    schedule: [1s, 1s, 2s, 2s, 3s, 3s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s, 5s]
`, name, endpoint, `"`+strings.Join(types, `", "`)+`"`)
}
