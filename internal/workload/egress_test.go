package workload

import (
	"slices"
	"strings"
	"testing"
)

func TestEgressSettings(t *testing.T) {
	for _, tt := range []struct {
		name string
		e    *Egress
		want string // substring of the error; empty: valid
	}{
		{"none", nil, ""},
		{"proxy", &Egress{Proxy: "http://egress.hookline-system.svc:3128", NoProxy: []string{".svc", "10.0.0.0/8"}, AllowPrivateProxy: true}, ""},
		{"empty", &Egress{}, "egress.proxy is empty"},
		{"socks", &Egress{Proxy: "socks5://p:1080"}, `egress.proxy: proxy URL scheme "socks5"`},
		{"credentials", &Egress{Proxy: "http://u:p@p:3128"}, "egress.proxy must not contain credentials"},
		{"list in one entry", &Egress{Proxy: "http://p:3128", NoProxy: []string{"a.example,b.example"}}, `egress.noProxy "a.example,b.example"`},
	} {
		s := Settings{Egress: tt.e}.Default("hookline:test")
		err := s.Validate()
		if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: Validate() = %v, want %q", tt.name, err, tt.want)
		}
	}

	args := Args(Settings{Egress: &Egress{Proxy: "http://p:3128", NoProxy: []string{".svc", "10.0.0.0/8"}, AllowPrivateProxy: true}}.Default("hookline:test"))
	for _, want := range []string{"--egress-proxy=http://p:3128", "--egress-no-proxy=.svc,10.0.0.0/8", "--egress-proxy-allow-private"} {
		if !slices.Contains(args, want) {
			t.Errorf("Args() = %v, missing %s", args, want)
		}
	}
	if args := Args(Settings{}.Default("hookline:test")); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--egress") }) {
		t.Errorf("Args() without egress = %v", args)
	}
}
