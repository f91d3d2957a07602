package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token" //nolint:gosec // G101: where the token is, not a token

func init() {
	register("publish", "publish an event to a dispatcher", runPublish)
}

func runPublish(args []string) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	ns := fs.String("n", "default", "namespace of the subscriptions that receive the event")
	typ := fs.String("type", "", "event type, e.g. invoice.paid (required)")
	data := fs.String("data", "{}", "event data: JSON, or @file to read it from a file")
	id := fs.String("id", "", "event id; publishing the same id again is stored once. Default: a new id")
	count := fs.Int("count", 1, "publish this many events, one after another; with --id, their ids are <id>-1 ... <id>-<count>")
	interval := fs.Duration("interval", 0, "pause between events (with --count)")
	retryFor := fs.Duration("retry-for", 0, "keep retrying an event that was not accepted, with the same id (stored once), for this long")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *typ == "" {
		return fmt.Errorf("--type is required, e.g. --type invoice.paid")
	}
	raw := []byte(*data)
	if strings.HasPrefix(*data, "@") {
		var err error
		if raw, err = os.ReadFile((*data)[1:]); err != nil {
			return fmt.Errorf("--data: %w", err)
		}
	}
	if !json.Valid(raw) {
		return fmt.Errorf("--data is not valid JSON: %s", raw)
	}
	if *count < 1 {
		return fmt.Errorf("--count must be at least 1")
	}
	if *count > 1 && *id == "" {
		return fmt.Errorf("--count needs --id: retries and repeats are only safe with ids the dispatcher can recognise")
	}
	for i := 1; i <= *count; i++ {
		eventID := *id
		if *count > 1 {
			eventID = fmt.Sprintf("%s-%d", *id, i)
		}
		body, _ := json.Marshal(struct {
			Type string          `json:"type"`
			ID   string          `json:"id,omitempty"`
			Data json.RawMessage `json:"data"`
		}{*typ, eventID, raw})
		deadline := time.Now().Add(*retryFor)
		for {
			out, err := callAPI(context.Background(), *api, http.MethodPost, "/v1/namespaces/"+*ns+"/events", body, http.StatusAccepted)
			if err == nil {
				fmt.Println(out)
				break
			}
			if time.Now().After(deadline) {
				return err
			}
			fmt.Fprintf(os.Stderr, "retrying %s: %v\n", eventID, err)
			time.Sleep(200 * time.Millisecond)
		}
		if i < *count {
			time.Sleep(*interval)
		}
	}
	return nil
}

// apiFlags say how to reach the dispatcher's API.
type apiFlags struct {
	server, tokenFile, caFile string
	timeout                   time.Duration
	// kubeconfigToken, set by the commands that use the kubeconfig's
	// credentials, is sent when neither --token-file nor a pod's token is.
	kubeconfigToken string
}

// bindAPIFlags registers --server, --token-file, --ca-file and --timeout.
func bindAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fs.StringVar(&f.server, "server", envOr("HOOKLINE_SERVER", "http://127.0.0.1:8080"), "the dispatcher's URL ($HOOKLINE_SERVER)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file with a bearer token (default: the pod's ServiceAccount token when there is one)")
	fs.StringVar(&f.caFile, "ca-file", os.Getenv("HOOKLINE_CA_FILE"), "PEM file of the CA that issued the dispatcher's certificate, for an https:// --server ($HOOKLINE_CA_FILE; default: the system's roots)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the dispatcher")
	return f
}

// callAPI sends one request to the dispatcher's API, with the bearer token
// of --token-file or the pod's ServiceAccount, and returns the answer's body
// if its status is want.
func callAPI(ctx context.Context, f apiFlags, method, path string, body []byte, want int) (string, error) {
	return callAPIWith(ctx, f, method, path, body, nil, want)
}

// callAPIWith is callAPI with extra request headers; want 0 takes any 2xx
// answer. Without --token-file
// or a pod's token, it sends the token of the kubeconfig's user
// (kubecreds.go).
func callAPIWith(ctx context.Context, f apiFlags, method, path string, body []byte, header http.Header, want int) (string, error) {
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(f.server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if f.kubeconfigToken != "" && f.tokenFile == "" && !fileExists(serviceAccountToken) {
		req.Header.Set("Authorization", "Bearer "+f.kubeconfigToken)
	}
	if tf := f.tokenFile; tf != "" || fileExists(serviceAccountToken) {
		if tf == "" {
			tf = serviceAccountToken
		}
		tok, err := os.ReadFile(tf) //nolint:gosec // G304: the user names the file to read (--token-file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	hc, err := apiClient(f.caFile, f.timeout)
	if err != nil {
		return "", err
	}
	if req.URL.Scheme == "http" && req.Header.Get("Authorization") != "" && !isLoopback(req.URL.Hostname()) {
		fmt.Fprintln(os.Stderr, "warning: sending a bearer token over plain HTTP; serve the dispatcher over HTTPS (docs/security.md) and use an https:// --server")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return "", unreachable(f.server, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want && (want != 0 || resp.StatusCode/100 != 2) {
		return "", fmt.Errorf("the dispatcher answered %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
}

// apiClient trusts caFile's certificates, when given, instead of the
// system's roots.
func apiClient(caFile string, timeout time.Duration) (*http.Client, error) {
	hc := &http.Client{Timeout: timeout}
	if caFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(caFile) //nolint:gosec // G304: the user names the file to read (--ca-file)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file=%s holds no PEM certificate", caFile)
	}
	hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}}
	return hc, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
