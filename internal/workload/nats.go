package workload

import (
	"strconv"

	corev1 "k8s.io/api/core/v1"
)

// Keys of the NATS Secrets, and where the dispatcher's pods mount them. Each Secret is
// mounted as a directory (never with subPath), so the kubelet's updates of a rotated
// Secret reach the running pods.
const (
	// NATSCredentialsKey is the key of the credentials Secret that holds the creds file.
	NATSCredentialsKey = "creds"
	NATSUsernameKey    = corev1.BasicAuthUsernameKey
	NATSPasswordKey    = corev1.BasicAuthPasswordKey
	NATSTokenKey       = "token"
	NATSCAKey          = "ca.crt"

	natsCredsDir  = "/etc/hookline/nats"        //nolint:gosec // G101: a mount path, not a credential
	natsUserDir   = "/etc/hookline/nats-user"   //nolint:gosec // G101: a mount path, not a credential
	natsTokenDir  = "/etc/hookline/nats-token"  //nolint:gosec // G101: a mount path, not a credential
	natsCADir     = "/etc/hookline/nats-ca"     //nolint:gosec // G101: a mount path, not a credential
	natsClientDir = "/etc/hookline/nats-client" //nolint:gosec // G101: a mount path, not a credential
)

// SecretRef is one Secret the dispatcher mounts, and what it must hold.
type SecretRef struct {
	// Setting names where the Secret is set (a config file key or the operator's flag).
	Setting string
	Secret  string
	// Keys the Secret must have; each is mounted as a file of the same name.
	Keys []string
	// Kind says what the keys hold, for the checks and the messages: one of the
	// SecretKind values.
	Kind SecretKind

	volume, dir string
	flags       []string // the dispatcher's file flag for each key
	auth        bool     // one of the ways to authenticate (only one may be set)
}

// SecretKind is what a NATS Secret holds.
type SecretKind string

//
//nolint:gosec // G101: these are descriptions of what a Secret holds, not credentials.
const (
	SecretNATSCreds SecretKind = "NATS credentials file"
	SecretUser      SecretKind = "NATS user name and password"
	SecretToken     SecretKind = "NATS token"
	SecretCA        SecretKind = "certificate authority"
	SecretClientTLS SecretKind = "client certificate and key"
)

// secretRefs are the Secrets the NATS settings name, in a fixed order.
func (n NATS) secretRefs() []SecretRef {
	var refs []SecretRef
	if n.CredentialsSecret != "" {
		refs = append(refs, SecretRef{Setting: "--nats-creds-secret", Secret: n.CredentialsSecret, Keys: []string{NATSCredentialsKey},
			Kind: SecretNATSCreds, volume: "nats-creds", dir: natsCredsDir, flags: []string{"--nats-creds-file"}, auth: true})
	}
	if n.UserSecret != "" {
		refs = append(refs, SecretRef{Setting: "nats.userSecret", Secret: n.UserSecret, Keys: []string{NATSUsernameKey, NATSPasswordKey},
			Kind: SecretUser, volume: "nats-user", dir: natsUserDir, flags: []string{"--nats-user-file", "--nats-password-file"}, auth: true})
	}
	if n.TokenSecret != "" {
		refs = append(refs, SecretRef{Setting: "nats.tokenSecret", Secret: n.TokenSecret, Keys: []string{NATSTokenKey},
			Kind: SecretToken, volume: "nats-token", dir: natsTokenDir, flags: []string{"--nats-token-file"}, auth: true})
	}
	if n.TLS != nil && n.TLS.CASecret != "" {
		refs = append(refs, SecretRef{Setting: "nats.tls.caSecret", Secret: n.TLS.CASecret, Keys: []string{NATSCAKey},
			Kind: SecretCA, volume: "nats-ca", dir: natsCADir, flags: []string{"--nats-ca-file"}})
	}
	if n.TLS != nil && n.TLS.ClientSecret != "" {
		refs = append(refs, SecretRef{Setting: "nats.tls.clientSecret", Secret: n.TLS.ClientSecret, Keys: []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey},
			Kind: SecretClientTLS, volume: "nats-client-tls", dir: natsClientDir, flags: []string{"--nats-cert-file", "--nats-key-file"}})
	}
	return refs
}

// NATSSecrets are the Secrets the dispatcher mounts for its connection to the external
// NATS cluster, for the operator to check; none with the embedded queue.
func (s Settings) NATSSecrets() []SecretRef {
	if s.Queue != QueueExternal {
		return nil
	}
	return s.NATS.secretRefs()
}

// natsArgs are the dispatcher's flags for the external cluster.
func (s Settings) natsArgs() []string {
	args := []string{"--nats-url=" + s.NATS.URL, "--nats-replicas=" + itoa(s.NATS.Replicas)}
	for _, ref := range s.NATS.secretRefs() {
		for i, key := range ref.Keys {
			args = append(args, ref.flags[i]+"="+ref.dir+"/"+key)
		}
	}
	if s.NATS.TLS != nil && s.NATS.TLS.ServerName != "" {
		args = append(args, "--nats-tls-server-name="+s.NATS.TLS.ServerName)
	}
	return args
}

func itoa(n int32) string { return strconv.FormatInt(int64(n), 10) }
