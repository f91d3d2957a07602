package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

func TestConfigValidation(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty: valid
	}{
		{"embedded", Config{Embedded: true, DataDir: dir, MaxRequestTimeout: 15 * time.Second}, ""},
		{"external", Config{URL: "nats://127.0.0.1:4222", Replicas: 3, MaxRequestTimeout: 15 * time.Second, AckWait: 20 * time.Second}, ""},
		{"ack wait equal to request timeout", Config{Embedded: true, DataDir: dir, MaxRequestTimeout: 15 * time.Second, AckWait: 15 * time.Second},
			"AckWait (15s) must be longer than the longest request timeout (15s)"},
		{"ack wait shorter than request timeout", Config{Embedded: true, DataDir: dir, MaxRequestTimeout: 30 * time.Second, AckWait: 10 * time.Second},
			"AckWait (10s) must be longer"},
		{"no request timeout", Config{Embedded: true, DataDir: dir}, "MaxRequestTimeout must be set"},
		{"embedded without dir", Config{Embedded: true, MaxRequestTimeout: time.Second}, "needs a DataDir"},
		{"embedded and url", Config{Embedded: true, DataDir: dir, URL: "nats://x", MaxRequestTimeout: time.Second}, "not both"},
		{"embedded replicas", Config{Embedded: true, DataDir: dir, Replicas: 3, MaxRequestTimeout: time.Second}, "one copy"},
		{"neither", Config{MaxRequestTimeout: time.Second}, "set URL"},
		{"external sync always", Config{URL: "nats://x", Sync: SyncAlways, MaxRequestTimeout: time.Second}, "embedded server only"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.withDefaults().validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("want error containing %q, got none", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("want error containing %q, got %v", tt.wantErr, err)
			}
		})
	}
}

func TestOpenRejectsShortAckWait(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.MaxRequestTimeout, cfg.AckWait = 15*time.Second, 10*time.Second
	q, err := Open(context.Background(), cfg, logr.Discard())
	if err == nil {
		q.Close()
		t.Fatal("Open accepted an AckWait shorter than the request timeout")
	}
	if !strings.Contains(err.Error(), "AckWait (10s) must be longer than the longest request timeout (15s)") {
		t.Fatalf("unclear error: %v", err)
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Embedded: true, DataDir: "x", MaxRequestTimeout: 15 * time.Second}.withDefaults()
	if c.AckWait != 30*time.Second || c.DedupeWindow != 10*time.Minute || c.DeadMaxAge != 14*24*time.Hour ||
		c.AttemptLog != 100 || c.Replicas != 1 {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}
