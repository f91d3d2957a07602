package workload

import (
	"errors"
	"fmt"
	"strings"

	"github.com/hookline/hookline/internal/delivery"
)

// Egress is the installation's egress proxy: every delivery and OAuth2 token request
// leaves through it, except to the NoProxy destinations and for endpoints whose
// spec.proxy says otherwise. It gives receivers one source address to allow.
type Egress struct {
	// Proxy is http://host:port or https://host:port (the dispatcher's --egress-proxy).
	// Credentials are refused here: the settings are a ConfigMap.
	Proxy string `json:"proxy"`
	// NoProxy lists destinations reached directly, in the NO_PROXY format
	// (--egress-no-proxy).
	NoProxy []string `json:"noProxy,omitempty"`
	// AllowPrivateProxy lets the dispatcher reach a proxy whose address the SSRF guard
	// refuses, such as a Service in the cluster (--egress-proxy-allow-private).
	AllowPrivateProxy bool `json:"allowPrivateProxy,omitempty"`
}

func (e *Egress) problems() []error {
	if e == nil {
		return nil
	}
	if e.Proxy == "" {
		return []error{errors.New("egress.proxy is empty: set the proxy's URL, e.g. http://egress-proxy.hookline-system.svc:3128, or remove egress")}
	}
	u, err := delivery.ParseProxyURL(e.Proxy)
	if err != nil {
		return []error{fmt.Errorf("egress.proxy: %w", err)}
	}
	if u.User != nil {
		return []error{errors.New("egress.proxy must not contain credentials: the settings are stored in a ConfigMap; pass --egress-proxy through extraArgs from a Secret-backed source instead")}
	}
	var errs []error
	for _, n := range e.NoProxy {
		if n == "" || strings.ContainsAny(n, ", \t") {
			errs = append(errs, fmt.Errorf("egress.noProxy %q: give one host name, IP address or CIDR range per entry", n))
		}
	}
	return errs
}

func (e *Egress) args() []string {
	if e == nil {
		return nil
	}
	args := []string{"--egress-proxy=" + e.Proxy}
	if len(e.NoProxy) > 0 {
		args = append(args, "--egress-no-proxy="+strings.Join(e.NoProxy, ","))
	}
	if e.AllowPrivateProxy {
		args = append(args, "--egress-proxy-allow-private")
	}
	return args
}
