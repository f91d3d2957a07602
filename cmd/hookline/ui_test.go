package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/cookiejar"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestUIListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8090", ":8090", "10.0.0.1:8090", "example.com:8090", "8090"} {
		if _, err := listenLoopback(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("listenLoopback(%q) = %v, want an error naming --listen", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		ln, err := listenLoopback(context.Background(), addr)
		if err != nil {
			if addr == "[::1]:0" && strings.Contains(err.Error(), "cannot assign") {
				continue // no IPv6 loopback on this machine
			}
			t.Errorf("listenLoopback(%q): %v", addr, err)
			continue
		}
		_ = ln.Close()
	}
	kc := kubeconfigWithToken(t, "user-token")
	err := runUI([]string{"--kubeconfig", kc, "--listen", "0.0.0.0:0", "--no-browser"})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("runUI on 0.0.0.0: %v, want a refusal naming loopback", err)
	}
}

// syncBuffer is a bytes.Buffer the command writes to while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestUIServesTheDashboard runs the command: it prints a one-time login address, which
// sets the session and shows the namespaces page, and it stops with its context.
func TestUIServesTheDashboard(t *testing.T) {
	kc := kubeconfigWithToken(t, "user-token")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- serveUI(ctx, []string{"--kubeconfig", kc, "--listen", "127.0.0.1:0", "--no-browser",
			"--server", "http://127.0.0.1:1", "-n", "shop"}, &out)
	}()
	loginRE := regexp.MustCompile(`http://127\.0\.0\.1:\d+/login\?token=[0-9a-f]{64}`)
	var login string
	for deadline := time.Now().Add(30 * time.Second); login == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		login = loginRE.FindString(out.String())
	}
	if login == "" {
		t.Fatalf("no login address printed: %q", out.String())
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	get := func(u string) (int, string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	if code, _ := get(strings.Replace(login, "token=", "token=00", 1)); code != http.StatusUnauthorized {
		t.Errorf("a wrong login token: %d, want 401", code)
	}
	code, body := get(login)
	if code != http.StatusOK || !strings.Contains(body, "<h1>Namespaces</h1>") || !strings.Contains(body, `href="/ns/shop"`) {
		t.Errorf("after login: %d %s", code, body)
	}
	if strings.Contains(body, "user-token") || strings.Contains(body, login[strings.Index(login, "token=")+6:]) {
		t.Error("the page shows the user's token or the login token")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("stopping: %v", err)
	}
}
