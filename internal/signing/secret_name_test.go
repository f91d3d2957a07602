package signing

import (
	"strings"
	"testing"
)

func TestSigningSecretName(t *testing.T) {
	if got := SecretName("billing"); got != "billing-hookline-signing" {
		t.Errorf("got %q", got)
	}
	long := strings.Repeat("a", 250)
	got := SecretName(long)
	if len(got) > 253 || !strings.HasSuffix(got, "-hookline-signing") {
		t.Errorf("long name %q (%d chars) is not a valid, recognisable name", got, len(got))
	}
	if got == SecretName(strings.Repeat("a", 249)+"b") {
		t.Error("two long names map to the same Secret")
	}
}
