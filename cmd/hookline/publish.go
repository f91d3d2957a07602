package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
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
	server := fs.String("server", envOr("HOOKLINE_SERVER", "http://127.0.0.1:8080"), "the dispatcher's URL ($HOOKLINE_SERVER)")
	ns := fs.String("n", "default", "namespace of the subscriptions that receive the event")
	typ := fs.String("type", "", "event type, e.g. invoice.paid (required)")
	data := fs.String("data", "{}", "event data: JSON, or @file to read it from a file")
	id := fs.String("id", "", "event id; publishing the same id again is stored once. Default: a new id")
	tokenFile := fs.String("token-file", "", "file with a bearer token (default: the pod's ServiceAccount token when there is one)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the dispatcher")
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

	// One short command: the client's --timeout bounds the request, and Ctrl-C ends the process.
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost, strings.TrimRight(*server, "/")+"/v1/namespaces/"+*ns+"/events", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if tf := *tokenFile; tf != "" || fileExists(serviceAccountToken) {
		if tf == "" {
			tf = serviceAccountToken
		}
		tok, err := os.ReadFile(tf) //nolint:gosec // G304: the user's own --token-file, read by their own command
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := (&http.Client{Timeout: *timeout}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("the dispatcher answered %s: %s", resp.Status, strings.TrimSpace(string(out)))
	}
	fmt.Println(strings.TrimSpace(string(out)))
	return nil
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
