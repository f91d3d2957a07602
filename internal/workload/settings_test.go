package workload

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

const image = "registry.invalid/hookline:v1"

func TestDefault(t *testing.T) {
	tests := []struct {
		name string
		in   Settings
		want func(s *Settings) // edits the embedded defaults into what is expected
	}{
		{name: "empty gets the embedded defaults and the operator's image"},
		{
			name: "explicit values are kept",
			in:   Settings{Image: "mine:1", Namespace: "ops", Storage: Storage{Size: "1Gi", Class: "fast"}, Durability: DurabilityAlways, MaxBodyBytes: 1024},
			want: func(s *Settings) {
				s.Image, s.Namespace, s.Storage, s.Durability, s.MaxBodyBytes = "mine:1", "ops", Storage{Size: "1Gi", Class: "fast"}, DurabilityAlways, 1024
			},
		},
		{
			name: "external queue gets no volume size",
			in:   Settings{Queue: QueueExternal, Replicas: 3, NATS: NATS{URL: "nats://nats:4222"}},
			want: func(s *Settings) {
				s.Queue, s.Replicas, s.Storage, s.NATS = QueueExternal, 3, Storage{}, NATS{URL: "nats://nats:4222", Replicas: 3}
			},
		},
		{
			name: "external queue: three dispatchers and three copies of each stream unless told otherwise",
			in:   Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://nats:4222"}},
			want: func(s *Settings) {
				s.Queue, s.Replicas, s.Storage, s.NATS = QueueExternal, 3, Storage{}, NATS{URL: "nats://nats:4222", Replicas: 3}
			},
		},
		{
			name: "external queue: explicit replicas are kept",
			in:   Settings{Queue: QueueExternal, Replicas: 5, NATS: NATS{URL: "nats://nats:4222", Replicas: 1}},
			want: func(s *Settings) {
				s.Queue, s.Replicas, s.Storage, s.NATS = QueueExternal, 5, Storage{}, NATS{URL: "nats://nats:4222", Replicas: 1}
			},
		},
		{
			name: "watched namespaces are sorted and de-duplicated",
			in:   Settings{WatchNamespaces: []string{"b", "a", "b"}},
			want: func(s *Settings) { s.WatchNamespaces = []string{"a", "b"} },
		},
		{
			name: "explicit empty resources stay empty",
			in:   Settings{Resources: &corev1.ResourceRequirements{}},
			want: func(s *Settings) { s.Resources = &corev1.ResourceRequirements{} },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := DefaultResources()
			want := Settings{Image: image, Namespace: "hookline-system", Replicas: 1, Resources: &r, Queue: QueueEmbedded,
				Storage: Storage{Size: "10Gi"}, Durability: DurabilityDefault, MaxBodyBytes: 256 << 10}
			if tt.want != nil {
				tt.want(&want)
			}
			got := tt.in.Default(image)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("defaulted settings do not validate: %v", err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings // defaulted with image before validating
		want []string // substrings of the error; none: valid
	}{
		{name: "defaults", s: Settings{}},
		{name: "external with creds", s: Settings{Queue: QueueExternal, Replicas: 3, NATS: NATS{URL: "nats://nats:4222", CredentialsSecret: "nats-creds"}}},
		{
			name: "replicas need the external queue",
			s:    Settings{Replicas: 3},
			want: []string{"--dispatcher-replicas=3 needs --queue=external: the embedded queue is one pod with its own volume"},
		},
		{name: "negative replicas", s: Settings{Replicas: -1}, want: []string{"--dispatcher-replicas=-1: must be at least 1"}},
		{name: "unknown queue", s: Settings{Queue: "kafka"}, want: []string{"--queue=kafka: must be embedded or external"}},
		{
			name: "external with every NATS Secret",
			s: Settings{Queue: QueueExternal, NATS: NATS{URL: "tls://nats:4222", UserSecret: "nats-user",
				TLS: &NATSTLS{CASecret: "nats-ca", ClientSecret: "nats-client", ServerName: "nats.messaging"}}},
		},
		{
			name: "two ways to authenticate",
			s:    Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://x:4222", CredentialsSecret: "c", TokenSecret: "t"}},
			want: []string{"--nats-creds-secret and nats.tokenSecret: choose one way to authenticate to NATS"},
		},
		{
			name: "stream replicas out of range",
			s:    Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://x:4222", Replicas: 7}},
			want: []string{"nats.replicas=7: choose 1 to 5"},
		},
		{
			name: "stream replicas with the embedded queue",
			s:    Settings{NATS: NATS{Replicas: 3}},
			want: []string{"nats.replicas=3 needs --queue=external: the embedded server is one node"},
		},
		{
			name: "NATS Secrets with the embedded queue",
			s:    Settings{NATS: NATS{UserSecret: "u", TLS: &NATSTLS{ClientSecret: "c", ServerName: "n"}}},
			want: []string{"nats.userSecret=u needs --queue=external", "nats.tls.clientSecret=c needs --queue=external", "nats.tls.serverName needs --queue=external"},
		},
		{
			name: "bad Secret name",
			s:    Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://x:4222", TLS: &NATSTLS{CASecret: "NATS_CA"}}},
			want: []string{"nats.tls.caSecret=NATS_CA: a lowercase RFC 1123 subdomain"},
		},
		{
			name: "empty TLS",
			s:    Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://x:4222", TLS: &NATSTLS{}}},
			want: []string{"nats.tls is empty"},
		},
		{name: "external without URL", s: Settings{Queue: QueueExternal}, want: []string{"--queue=external needs --nats-url"}},
		{
			name: "NATS settings with the embedded queue",
			s:    Settings{NATS: NATS{URL: "nats://x:4222", CredentialsSecret: "c"}},
			want: []string{"--nats-url=nats://x:4222 needs --queue=external", "--nats-creds-secret=c needs --queue=external"},
		},
		{
			name: "storage with the external queue",
			s:    Settings{Queue: QueueExternal, NATS: NATS{URL: "nats://x:4222"}, Storage: Storage{Size: "1Gi", Class: "fast"}},
			want: []string{"--dispatcher-storage-size=1Gi needs --queue=embedded", "--dispatcher-storage-class=fast needs --queue=embedded"},
		},
		{name: "bad storage size", s: Settings{Storage: Storage{Size: "lots"}}, want: []string{"--dispatcher-storage-size=lots: not a quantity"}},
		{name: "zero storage size", s: Settings{Storage: Storage{Size: "0"}}, want: []string{"--dispatcher-storage-size=0: must be more than zero"}},
		{name: "bad storage class", s: Settings{Storage: Storage{Class: "Fast_SSD"}}, want: []string{"--dispatcher-storage-class=Fast_SSD"}},
		{name: "bad durability", s: Settings{Durability: "sometimes"}, want: []string{"--durability=sometimes: must be default or always"}},
		{name: "bad namespace", s: Settings{Namespace: "Hookline"}, want: []string{"--dispatcher-namespace=Hookline"}},
		{name: "bad watched namespace", s: Settings{WatchNamespaces: []string{"ok", "not_ok"}}, want: []string{`--watch-namespaces: "not_ok"`}},
		{name: "bad log level", s: Settings{LogLevel: "loud"}, want: []string{"--dispatcher-log-level=loud"}},
		{name: "numeric log level", s: Settings{LogLevel: "3"}},
		{name: "negative body limit", s: Settings{MaxBodyBytes: -1}, want: []string{"maxBodyBytes -1"}},
		{name: "dashboard on", s: Settings{Dashboard: &Dashboard{Enabled: true}, ExtraArgs: []string{"--auth=kubernetes"}}},
		{name: "dashboard off ignores its port", s: Settings{Dashboard: &Dashboard{Port: 8080}, ExtraArgs: []string{"--auth=none"}}},
		{name: "dashboard on the API port", s: Settings{Dashboard: &Dashboard{Enabled: true, Port: 8080}},
			want: []string{"dashboard.port=8080: the dispatcher's API listens there; choose another port (default 8090)"}},
		{name: "dashboard on the metrics port", s: Settings{Dashboard: &Dashboard{Enabled: true, Port: 9090}},
			want: []string{"dashboard.port=9090: the dispatcher's metrics listen there"}},
		{name: "dashboard port out of range", s: Settings{Dashboard: &Dashboard{Enabled: true, Port: 70000}},
			want: []string{"dashboard.port=70000: choose a port from 1 to 65535"}},
		{name: "dashboard without Kubernetes auth", s: Settings{Dashboard: &Dashboard{Enabled: true}, ExtraArgs: []string{"--auth", "none"}},
			want: []string{"dashboard.enabled needs the dispatcher's --auth=kubernetes, but extraArgs sets --auth=none"}},
		{name: "dashboard set twice", s: Settings{Dashboard: &Dashboard{Enabled: true}, ExtraArgs: []string{"--ui-listen=:8090"}},
			want: []string{"dashboard.enabled and extraArgs --ui-listen=:8090 both say where the dashboard listens"}},
		{name: "bad pull policy", s: Settings{ImagePullPolicy: "Sometimes"}, want: []string{`imagePullPolicy "Sometimes"`}},
		{
			name: "request above limit",
			s: Settings{Resources: &corev1.ResourceRequirements{
				Requests: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("1Gi")},
				Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("512Mi")},
			}},
			want: []string{"the memory request 1Gi is above its limit 512Mi"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.s.Default(image).Validate()
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Validate() = %v, want no error", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate() = nil, want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate() = %q, want it to contain %q", err, w)
				}
			}
		})
	}

	if err := (Settings{}).Default("").Validate(); err == nil || !strings.Contains(err.Error(), "set --dispatcher-image") {
		t.Errorf("without an image: Validate() = %v, want it to ask for --dispatcher-image", err)
	}
}

func TestChecksum(t *testing.T) {
	base := Settings{}.Default(image)
	change := map[string]func(s *Settings){
		"image":      func(s *Settings) { s.Image = "other:2" },
		"durability": func(s *Settings) { s.Durability = DurabilityAlways },
		"namespaces": func(s *Settings) { s.WatchNamespaces = []string{"a"} },
		"log level":  func(s *Settings) { s.LogLevel = "debug" },
		"resources":  func(s *Settings) { s.Resources = &corev1.ResourceRequirements{} },
		"extra args": func(s *Settings) { s.ExtraArgs = []string{"--x"} },
		"dashboard":  func(s *Settings) { s.Dashboard = &Dashboard{Enabled: true, Port: DefaultDashboardPort} },
	}
	for name, edit := range change {
		s := base
		edit(&s)
		if s.Checksum() == base.Checksum() {
			t.Errorf("changing %s leaves the checksum as it was", name)
		}
	}
	scaled := base
	scaled.Replicas = 5
	if scaled.Checksum() != base.Checksum() {
		t.Error("scaling changes the checksum, so it would restart every pod")
	}
	if base.Checksum() != (Settings{}).Default(image).Checksum() {
		t.Error("the checksum of equal settings differs")
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(good, []byte(`
queue: external
replicas: 3
nats:
  url: nats://nats.messaging:4222
  credentialsSecret: nats-creds
watchNamespaces: [billing, shipping]
resources:
  requests: {cpu: 250m, memory: 256Mi}
extraArgs: ["--max-in-flight=64"]
dashboard: {enabled: true, port: 8091}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	if s.Queue != QueueExternal || s.Replicas != 3 || s.NATS.URL != "nats://nats.messaging:4222" || s.NATS.CredentialsSecret != "nats-creds" ||
		!reflect.DeepEqual(s.WatchNamespaces, []string{"billing", "shipping"}) || s.Resources.Requests.Cpu().String() != "250m" ||
		!reflect.DeepEqual(s.ExtraArgs, []string{"--max-in-flight=64"}) || !reflect.DeepEqual(s.Dashboard, &Dashboard{Enabled: true, Port: 8091}) {
		t.Errorf("LoadFile() = %+v", s)
	}

	typo := filepath.Join(dir, "typo.yaml")
	if err := os.WriteFile(typo, []byte("replica: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadFile(typo); err == nil || !strings.Contains(err.Error(), `unknown field "replica"`) {
		t.Errorf("LoadFile(typo) = %v, want an unknown field error", err)
	}
	if _, err := LoadFile(filepath.Join(dir, "absent.yaml")); err == nil {
		t.Error("LoadFile(absent) = nil error")
	}
}

// The settings file the kustomize install ships must load and validate.
func TestShippedSettingsFile(t *testing.T) {
	s, err := LoadFile("../../config/manager/dispatcher.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Default(image).Validate(); err != nil {
		t.Fatal(err)
	}
}
