package workload

import (
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestRenderDashboard: an enabled dashboard is the --ui-listen flag, a container port and a
// Service port, all named dashboard, the Service's reaching the container's by name; off,
// none of them is rendered.
func TestRenderDashboard(t *testing.T) {
	for _, tt := range []struct {
		name string
		s    Settings
		port int32 // 0: no dashboard
	}{
		{name: "off by default", s: embedded()},
		{name: "explicitly off", s: Settings{Dashboard: &Dashboard{Port: 8091}}.Default(image)},
		{name: "on, default port", s: Settings{Dashboard: &Dashboard{Enabled: true}}.Default(image), port: 8090},
		{name: "on, own port, over HTTPS", s: Settings{Dashboard: &Dashboard{Enabled: true, Port: 8443}, TLS: &TLS{SecretName: "dispatcher-tls"}}.Default(image), port: 8443},
		{name: "on, external queue", s: func() Settings { s := external(); s.Dashboard = (&Dashboard{Enabled: true}).defaulted(); return s }(), port: 8090},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.s.Validate(); err != nil {
				t.Fatal(err)
			}
			o := Render(tt.s)
			d := typed[appsv1.Deployment](t, o.Deployment)
			c := d.Spec.Template.Spec.Containers[0]
			var listen []string
			for _, a := range c.Args {
				if strings.HasPrefix(a, "--ui-listen") {
					listen = append(listen, a)
				}
			}
			containerPorts := map[string]int32{}
			for _, p := range c.Ports {
				containerPorts[p.Name] = p.ContainerPort
			}
			svc := typed[corev1.Service](t, o.Service)
			servicePorts := map[string]corev1.ServicePort{}
			for _, p := range svc.Spec.Ports {
				servicePorts[p.Name] = p
			}
			wantContainer := map[string]int32{"http": 8080, "metrics": 9090}
			if tt.port == 0 {
				if len(listen) > 0 {
					t.Errorf("args %q without the dashboard", listen)
				}
			} else {
				if want := []string{"--ui-listen=:" + strconv.Itoa(int(tt.port))}; !reflect.DeepEqual(listen, want) {
					t.Errorf("args %q, want %q", listen, want)
				}
				wantContainer["dashboard"] = tt.port
				p, ok := servicePorts["dashboard"]
				if !ok || p.Port != tt.port || p.TargetPort.String() != "dashboard" || p.Protocol != corev1.ProtocolTCP {
					t.Errorf("Service port dashboard = %+v, want port %d to the container port named dashboard", p, tt.port)
				}
			}
			if !reflect.DeepEqual(containerPorts, wantContainer) {
				t.Errorf("container ports = %v, want %v", containerPorts, wantContainer)
			}
			if len(servicePorts) != len(wantContainer) {
				t.Errorf("Service ports = %v, want one per container port %v", servicePorts, wantContainer)
			}
		})
	}
}

// TestDashboardSettings: the dashboard's port defaults to 8090, a disabled dashboard is the
// same as none (so the checksum does not roll the pods for it), and turning it on or moving
// it rolls them.
func TestDashboardSettings(t *testing.T) {
	if got := (Settings{Dashboard: &Dashboard{Enabled: true}}).Default(image).Dashboard; got == nil || got.Port != DefaultDashboardPort {
		t.Errorf("enabled without a port: %+v, want port %d", got, DefaultDashboardPort)
	}
	off := Settings{Dashboard: &Dashboard{Enabled: false, Port: 8091}}.Default(image)
	if off.Dashboard != nil || off.Checksum() != embedded().Checksum() {
		t.Errorf("a disabled dashboard %+v changes the settings", off.Dashboard)
	}
	on := Settings{Dashboard: &Dashboard{Enabled: true}}.Default(image)
	moved := Settings{Dashboard: &Dashboard{Enabled: true, Port: 8091}}.Default(image)
	sums := []string{embedded().Checksum(), on.Checksum(), moved.Checksum()}
	slices.Sort(sums)
	if len(slices.Compact(sums)) != 3 {
		t.Errorf("checksums off, on and moved = %q: each must roll the pods", sums)
	}
}

func TestLastFlag(t *testing.T) {
	for _, tt := range []struct {
		args  []string
		value string
		found bool
	}{
		{args: nil},
		{args: []string{"--authority=x", "--token-audience=auth"}},
		{args: []string{"--auth=none"}, value: "none", found: true},
		{args: []string{"-auth", "none"}, value: "none", found: true},
		{args: []string{"--auth=none", "--auth", "kubernetes"}, value: "kubernetes", found: true},
		{args: []string{"--", "--auth=none"}},
	} {
		value, found := lastFlag(tt.args, "auth")
		if value != tt.value || found != tt.found {
			t.Errorf("lastFlag(%q) = %q, %v; want %q, %v", tt.args, value, found, tt.value, tt.found)
		}
	}
}
