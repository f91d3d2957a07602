package workload

import (
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
)

// DefaultDashboardPort is where the dispatcher serves the dashboard when Dashboard.Port is 0.
const DefaultDashboardPort = 8090

// dashboardPortName names the dashboard's container and Service port; a proxy's Service
// reference or a NetworkPolicy can use it instead of the number.
const dashboardPortName = "dashboard"

// Dashboard has the dispatcher serve the pages of `hookline ui` to users an authenticating
// proxy in front of it has signed in (docs/dashboard.md): its --ui-listen, a container port
// and a port of the dispatcher's Service, all named dashboard. Each request must carry the
// user's bearer token, so it needs the dispatcher's Kubernetes authentication.
type Dashboard struct {
	// Enabled turns the dashboard on; a disabled Dashboard is the same as none.
	Enabled bool `json:"enabled,omitempty"`
	// Port the dashboard listens on, in the pod and on the Service; default 8090.
	Port int32 `json:"port,omitempty"`
}

// on says whether the dispatcher serves the dashboard.
func (d *Dashboard) on() bool { return d != nil && d.Enabled }

// defaulted returns d with the default port, and nil when it is off, so that an explicit
// "enabled: false" and no dashboard key have the same checksum and roll nothing.
func (d *Dashboard) defaulted() *Dashboard {
	if !d.on() {
		return nil
	}
	out := *d
	if out.Port == 0 {
		out.Port = DefaultDashboardPort
	}
	return &out
}

// dashboardProblems checks the dashboard against the ports the dispatcher already uses
// and against the flags in ExtraArgs that would make the dispatcher refuse to start.
func (s Settings) dashboardProblems() []error {
	if !s.Dashboard.on() {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	switch p := s.Dashboard.Port; {
	case p < 1 || p > 65535:
		bad("dashboard.port=%d: choose a port from 1 to 65535 (default %d)", p, DefaultDashboardPort)
	case p == APIPort:
		bad("dashboard.port=%d: the dispatcher's API listens there; choose another port (default %d)", p, DefaultDashboardPort)
	case p == MetricsPort:
		bad("dashboard.port=%d: the dispatcher's metrics listen there; choose another port (default %d)", p, DefaultDashboardPort)
	}
	if auth, ok := lastFlag(s.ExtraArgs, "auth"); ok && auth != "kubernetes" {
		bad("dashboard.enabled needs the dispatcher's --auth=kubernetes, but extraArgs sets --auth=%s: the dashboard acts with each user's token and the admin API checks it against that user's RBAC; remove --auth from extraArgs or turn the dashboard off", auth)
	}
	if listen, ok := lastFlag(s.ExtraArgs, "ui-listen"); ok {
		bad("dashboard.enabled and extraArgs --ui-listen=%s both say where the dashboard listens: remove --ui-listen from extraArgs and set dashboard.port", listen)
	}
	return errs
}

// lastFlag returns the value the dispatcher's flag parsing would take for name from args:
// the last of -name=v, --name=v, -name v and --name v.
func lastFlag(args []string, name string) (string, bool) {
	var value string
	var found bool
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") {
			continue
		}
		if a == "--" {
			break
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		switch {
		case a == name && i+1 < len(args):
			value, found = args[i+1], true
			i++
		case strings.HasPrefix(a, name+"="):
			value, found = strings.TrimPrefix(a, name+"="), true
		}
	}
	return value, found
}

func (d *Dashboard) args() []string {
	if !d.on() {
		return nil
	}
	return []string{"--ui-listen=:" + strconv.Itoa(int(d.Port))}
}

func (d *Dashboard) containerPorts() []*corev1ac.ContainerPortApplyConfiguration {
	if !d.on() {
		return nil
	}
	return []*corev1ac.ContainerPortApplyConfiguration{
		corev1ac.ContainerPort().WithName(dashboardPortName).WithContainerPort(d.Port).WithProtocol(corev1.ProtocolTCP),
	}
}

func (d *Dashboard) servicePorts() []*corev1ac.ServicePortApplyConfiguration {
	if !d.on() {
		return nil
	}
	return []*corev1ac.ServicePortApplyConfiguration{
		corev1ac.ServicePort().WithName(dashboardPortName).WithPort(d.Port).
			WithTargetPort(intstr.FromString(dashboardPortName)).WithProtocol(corev1.ProtocolTCP),
	}
}
