package dispatcher

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const kubeconfig = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:6443"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`

func parse(t *testing.T, args ...string) (Config, error) {
	t.Helper()
	kc := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kc, []byte(kubeconfig), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	f := BindFlags(fs)
	if err := fs.Parse(append([]string{"--kubeconfig", kc}, args...)); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.Config()
	if err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// TestSecurityFlags: the limits, TLS, audience and Secret opt-in flags reach
// the configuration, with the documented defaults.
func TestSecurityFlags(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	l := cfg.Limits
	if l.ReadHeaderTimeout != 10*time.Second || l.BodyReadTimeout != 30*time.Second || l.MinBodyRate != 4096 || l.WriteTimeout != time.Minute ||
		l.MaxHeaderBytes != 64<<10 || l.MaxConcurrent != 1024 || l.MaxConnsPerClient != 256 || cfg.MaxJSONDepth != 64 || cfg.MaxConcurrentReviews != 8 {
		t.Errorf("defaults: %+v depth %d reviews %d", l, cfg.MaxJSONDepth, cfg.MaxConcurrentReviews)
	}
	if cfg.AllowUnlabelledSecrets || cfg.TokenAudience != "" || cfg.TLSCertFile != "" {
		t.Errorf("defaults: allow unlabelled %v, audience %q, tls %q", cfg.AllowUnlabelledSecrets, cfg.TokenAudience, cfg.TLSCertFile)
	}

	cfg, err = parse(t, "--min-body-rate=100", "--max-conns-per-client=4", "--max-json-depth=10", "--token-audience=hookline",
		"--require-secret-opt-in=false", "--tls-cert-file=/c", "--tls-key-file=/k")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Limits.MinBodyRate != 100 || cfg.Limits.MaxConnsPerClient != 4 || cfg.MaxJSONDepth != 10 || cfg.TokenAudience != "hookline" ||
		!cfg.AllowUnlabelledSecrets || cfg.TLSCertFile != "/c" || cfg.TLSKeyFile != "/k" {
		t.Errorf("set: %+v", cfg)
	}

	for args, want := range map[string]string{
		"--tls-cert-file=/c":  "--tls-cert-file and --tls-key-file go together",
		"--tls-key-file=/k":   "--tls-cert-file and --tls-key-file go together",
		"--max-json-depth=-1": "--max-json-depth=-1 must be positive",
	} {
		if _, err := parse(t, args); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestNATSFlags: the external cluster's connection flags reach the queue's
// configuration, and --nats-replicas defaults by queue mode and is checked.
func TestNATSFlags(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Queue.Embedded || cfg.Queue.Replicas != 1 {
		t.Errorf("embedded default: %+v", cfg.Queue)
	}
	cfg, err = parse(t, "--queue=external", "--nats-url=tls://nats:4222", "--nats-creds-file=/c", "--nats-ca-file=/ca",
		"--nats-cert-file=/crt", "--nats-key-file=/key", "--nats-tls-server-name=nats.messaging")
	if err != nil {
		t.Fatal(err)
	}
	q := cfg.Queue
	if q.Embedded || q.Replicas != 3 || q.CredsFile != "/c" || q.TLS.CAFile != "/ca" || q.TLS.CertFile != "/crt" || q.TLS.KeyFile != "/key" || q.TLS.ServerName != "nats.messaging" {
		t.Errorf("external: %+v", q)
	}
	cfg, err = parse(t, "--queue=external", "--nats-url=nats://nats:4222", "--nats-user-file=/u", "--nats-password-file=/p", "--nats-replicas=5")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Queue.Auth.UserFile != "/u" || cfg.Queue.Auth.PasswordFile != "/p" || cfg.Queue.Replicas != 5 {
		t.Errorf("user and password: %+v", cfg.Queue)
	}
	// The older name of --nats-creds-file still works.
	if cfg, err = parse(t, "--queue=external", "--nats-url=nats://nats:4222", "--nats-creds=/old"); err != nil || cfg.Queue.CredsFile != "/old" {
		t.Errorf("--nats-creds: %v %+v", err, cfg.Queue)
	}

	for args, want := range map[string]string{
		"--nats-replicas=3": "--nats-replicas=3 needs --queue=external",
		"--queue=external --nats-url=nats://n:4222 --nats-replicas=7":  "--nats-replicas=7: choose 1 to 5",
		"--queue=external --nats-url=nats://n:4222 --nats-replicas=-1": "--nats-replicas=-1: choose 1 to 5",
	} {
		if _, err := parse(t, strings.Fields(args)...); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", args, err, want)
		}
	}
}

// TestSuspendedHoldFlag: --suspended-hold reaches the configuration with the
// engine's default, and a value outside 1s..1h is refused naming the flag.
func TestSuspendedHoldFlag(t *testing.T) {
	cfg, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.SuspendedHold != time.Minute {
		t.Errorf("default --suspended-hold %s, want 1m", cfg.SuspendedHold)
	}
	if cfg, err = parse(t, "--suspended-hold=2s"); err != nil || cfg.SuspendedHold != 2*time.Second {
		t.Errorf("--suspended-hold=2s: %s, %v", cfg.SuspendedHold, err)
	}
	for _, bad := range []string{"--suspended-hold=500ms", "--suspended-hold=2h", "--suspended-hold=-1s"} {
		if _, err := parse(t, bad); err == nil || !strings.Contains(err.Error(), "--suspended-hold") || !strings.Contains(err.Error(), "between 1s and 1h") {
			t.Errorf("%s: %v, want a refusal naming the flag and its range", bad, err)
		}
	}
}

// TestUIListenFlag: the dashboard is off by default, and served only with Kubernetes auth,
// since its calls to the admin API must be checked against each user's RBAC.
func TestUIListenFlag(t *testing.T) {
	cfg, err := parse(t)
	if err != nil || cfg.UIListen != "" {
		t.Errorf("default: %q, %v; want off", cfg.UIListen, err)
	}
	if cfg, err = parse(t, "--ui-listen=:8090"); err != nil || cfg.UIListen != ":8090" {
		t.Errorf("--ui-listen=:8090: %q, %v", cfg.UIListen, err)
	}
	if _, err := parse(t, "--ui-listen=:8090", "--auth=none"); err == nil || !strings.Contains(err.Error(), "--ui-listen needs --auth=kubernetes") {
		t.Errorf("--ui-listen with --auth=none: %v", err)
	}
}
