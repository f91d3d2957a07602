package main

import (
	"strings"
	"testing"
)

func TestUIListensOnLoopbackOnly(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:8090", ":8090", "10.0.0.1:8090", "example.com:8090", "8090"} {
		if _, err := listenLoopback(addr); err == nil || !strings.Contains(err.Error(), "--listen") {
			t.Errorf("listenLoopback(%q) = %v, want an error naming --listen", addr, err)
		}
	}
	for _, addr := range []string{"127.0.0.1:0", "localhost:0", "[::1]:0"} {
		ln, err := listenLoopback(addr)
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
