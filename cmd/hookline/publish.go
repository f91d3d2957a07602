package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

const serviceAccountToken = "/var/run/secrets/kubernetes.io/serviceaccount/token"

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
	body, _ := json.Marshal(struct {
		Type string          `json:"type"`
		ID   string          `json:"id,omitempty"`
		Data json.RawMessage `json:"data"`
	}{*typ, *id, raw})

	out, err := callAPI(*api, http.MethodPost, "/v1/namespaces/"+*ns+"/events", body, http.StatusAccepted)
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}

// apiFlags say how to reach the dispatcher's API.
type apiFlags struct {
	server, tokenFile string
	timeout           time.Duration
}

// bindAPIFlags registers --server, --token-file and --timeout.
func bindAPIFlags(fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{}
	fs.StringVar(&f.server, "server", envOr("HOOKLINE_SERVER", "http://127.0.0.1:8080"), "the dispatcher's URL ($HOOKLINE_SERVER)")
	fs.StringVar(&f.tokenFile, "token-file", "", "file with a bearer token (default: the pod's ServiceAccount token when there is one)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Second, "how long to wait for the dispatcher")
	return f
}

// callAPI sends one request to the dispatcher's API, with the bearer token
// of --token-file or the pod's ServiceAccount, and returns the answer's body
// if its status is want.
func callAPI(f apiFlags, method, path string, body []byte, want int) (string, error) {
	req, err := http.NewRequest(method, strings.TrimRight(f.server, "/")+path, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if tf := f.tokenFile; tf != "" || fileExists(serviceAccountToken) {
		if tf == "" {
			tf = serviceAccountToken
		}
		tok, err := os.ReadFile(tf)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := (&http.Client{Timeout: f.timeout}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != want {
		return "", fmt.Errorf("the dispatcher answered %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	return strings.TrimSpace(string(out)), nil
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
