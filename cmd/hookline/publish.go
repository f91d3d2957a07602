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
	server := fs.String("server", envOr("HOOKLINE_SERVER", "http://127.0.0.1:8080"), "the dispatcher's URL ($HOOKLINE_SERVER)")
	ns := fs.String("n", "default", "namespace of the subscriptions that receive the event")
	typ := fs.String("type", "", "event type, e.g. invoice.paid (required)")
	data := fs.String("data", "{}", "event data: JSON, or @file to read it from a file")
	id := fs.String("id", "", "event id; publishing the same id again is stored once. Default: a new id")
	tokenFile := fs.String("token-file", "", "file with a bearer token (default: the pod's ServiceAccount token when there is one)")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the dispatcher")
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
	url := strings.TrimRight(*server, "/") + "/v1/namespaces/" + *ns + "/events"
	client := &http.Client{Timeout: *timeout}
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
			out, err := publishOnce(client, url, *tokenFile, body)
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

// publishOnce posts one event and returns the dispatcher's answer when it accepted it.
func publishOnce(client *http.Client, url, tokenFile string, body []byte) (string, error) {
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	if tf := tokenFile; tf != "" || fileExists(serviceAccountToken) {
		if tf == "" {
			tf = serviceAccountToken
		}
		tok, err := os.ReadFile(tf)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusAccepted {
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
