package dispatcher

import (
	"strings"
	"testing"
)

// TestEgressFlags: the proxy flags reach the configuration and build the installation's
// proxy; a bad value names the flag.
func TestEgressFlags(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if p, err := cfg.egressProxy(); p != nil || err != nil {
		t.Errorf("default: proxy %+v, %v; want none", p, err)
	}
	cfg, err = parse(t, "--egress-proxy=http://egress.hookline-system.svc:3128", "--egress-no-proxy=.svc,10.0.0.0/8", "--egress-proxy-allow-private")
	if err != nil {
		t.Fatal(err)
	}
	p, err := cfg.egressProxy()
	if err != nil || p == nil || p.URL.Host != "egress.hookline-system.svc:3128" || p.NoProxy != ".svc,10.0.0.0/8" || !p.Trusted {
		t.Errorf("set: %+v, %v", p, err)
	}
	for args, want := range map[string]string{
		"--egress-proxy=socks5://p:1080":    `--egress-proxy: proxy URL scheme "socks5": use http:// or https://`,
		"--egress-proxy=http://p:3128/path": "--egress-proxy: proxy URL must be only scheme://host:port",
		"--egress-no-proxy=.svc":            "--egress-no-proxy and --egress-proxy-allow-private need --egress-proxy",
		"--egress-proxy-allow-private=true": "need --egress-proxy",
		"--egress-proxy=http://:3128":       "--egress-proxy: proxy URL has no host",
	} {
		if _, err := parse(t, args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}
