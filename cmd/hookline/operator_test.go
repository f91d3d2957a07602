package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookline/hookline/internal/workload"
)

func TestDispatcherSettingsFromFlags(t *testing.T) {
	file := filepath.Join(t.TempDir(), "dispatcher.yaml")
	if err := os.WriteFile(file, []byte("queue: external\nreplicas: 2\nnats: {url: nats://file:4222}\nlogLevel: debug\nwatchNamespaces: [from-file]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"HOOKLINE_IMAGE": "hookline:v1", "POD_NAMESPACE": "ops"}
	tests := []struct {
		name    string
		args    []string
		check   func(t *testing.T, s *workload.Settings)
		wantErr string
	}{
		{
			name: "not managed",
			args: nil,
			check: func(t *testing.T, s *workload.Settings) {
				expect(t, s == nil, "settings %+v without --manage-dispatcher", s)
			},
		},
		{
			name: "managed with defaults from the environment",
			args: []string{"--manage-dispatcher"},
			check: func(t *testing.T, s *workload.Settings) {
				expect(t, s.Image == "hookline:v1" && s.Namespace == "ops" && s.Queue == workload.QueueEmbedded && s.Replicas == 1, "%+v", s)
			},
		},
		{
			name: "flags override the file, one by one",
			args: []string{"--manage-dispatcher", "--config=" + file, "--dispatcher-replicas=4", "--nats-url=nats://flag:4222", "--watch-namespaces=b,a"},
			check: func(t *testing.T, s *workload.Settings) {
				expect(t, s.Queue == workload.QueueExternal && s.Replicas == 4 && s.NATS.URL == "nats://flag:4222" && s.LogLevel == "debug" &&
					strings.Join(s.WatchNamespaces, ",") == "a,b", "%+v", s)
			},
		},
		{
			name:    "refused with the flag named",
			args:    []string{"--manage-dispatcher", "--dispatcher-replicas=3"},
			wantErr: "--dispatcher-replicas=3 needs --queue=external: the embedded queue is one pod with its own volume",
		},
		{name: "zero replicas", args: []string{"--manage-dispatcher", "--dispatcher-replicas=0"}, wantErr: "--dispatcher-replicas=0: must be at least 1"},
		{name: "dispatcher flag without managing", args: []string{"--queue=external"}, wantErr: "--queue needs --manage-dispatcher"},
		{name: "bad file", args: []string{"--manage-dispatcher", "--config=" + file + ".absent"}, wantErr: "reading dispatcher settings"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("operator", flag.ContinueOnError)
			fs.SetOutput(io.Discard)
			fs.String("watch-namespaces", "", "")
			d := bindDispatcherFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatal(err)
			}
			s, err := d.settings(fs, func(k string) string { return env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, s)
		})
	}
}

func expect(t *testing.T, ok bool, format string, args ...any) {
	t.Helper()
	if !ok {
		t.Errorf(format, args...)
	}
}

// TestSecretOptInSwitch: one switch for the installation, from the flag or
// the settings file, reaching the operator and the dispatcher alike.
func TestSecretOptInSwitch(t *testing.T) {
	no, yes := false, true
	tests := []struct {
		name         string
		args         []string
		settings     *workload.Settings
		wantOff      bool
		wantSettings *bool
	}{
		{name: "default: the rule holds", settings: &workload.Settings{}, wantOff: false},
		{name: "flag off, not managing the dispatcher", args: []string{"--require-secret-opt-in=false"}, wantOff: true},
		{name: "flag off reaches the dispatcher", args: []string{"--require-secret-opt-in=false"}, settings: &workload.Settings{RequireSecretOptIn: &yes}, wantOff: true, wantSettings: &no},
		{name: "flag on overrides the file", args: []string{"--require-secret-opt-in=true"}, settings: &workload.Settings{RequireSecretOptIn: &no}, wantOff: false, wantSettings: &yes},
		{name: "the file turns it off for both", settings: &workload.Settings{RequireSecretOptIn: &no}, wantOff: true, wantSettings: &no},
	}
	for _, tt := range tests {
		fs := flag.NewFlagSet("operator", flag.ContinueOnError)
		require := fs.Bool("require-secret-opt-in", true, "")
		if err := fs.Parse(tt.args); err != nil {
			t.Fatal(err)
		}
		if off := secretOptInOff(fs, *require, tt.settings); off != tt.wantOff {
			t.Errorf("%s: off = %v, want %v", tt.name, off, tt.wantOff)
		}
		if tt.wantSettings != nil && (tt.settings.RequireSecretOptIn == nil || *tt.settings.RequireSecretOptIn != *tt.wantSettings) {
			t.Errorf("%s: settings requireSecretOptIn = %v, want %v", tt.name, tt.settings.RequireSecretOptIn, *tt.wantSettings)
		}
	}
}
