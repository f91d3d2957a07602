package dispatcher

import (
	"flag"
	"fmt"
)

// bindNATSFlags registers the flags of the connection to an external NATS
// JetStream cluster. Secrets are files (mounted Secrets), read again on every
// reconnect, so a rotated Secret needs no restart.
func bindNATSFlags(fs *flag.FlagSet, f *Flags) {
	q := &f.cfg.Queue
	fs.StringVar(&q.CredsFile, "nats-creds-file", "", "NATS credentials file (a user JWT and its nkey seed, as `nsc generate creds` writes it) for the external cluster")
	fs.StringVar(&q.Auth.UserFile, "nats-user-file", "", "file holding the NATS user name (with --nats-password-file)")
	fs.StringVar(&q.Auth.PasswordFile, "nats-password-file", "", "file holding the NATS user's password (with --nats-user-file)")
	fs.StringVar(&q.Auth.TokenFile, "nats-token-file", "", "file holding a NATS authorization token")
	fs.StringVar(&q.TLS.CAFile, "nats-ca-file", "", "PEM certificates of the authority that signs the NATS servers' certificates (turns TLS on); empty trusts the system's")
	fs.StringVar(&q.TLS.CertFile, "nats-cert-file", "", "PEM client certificate for NATS servers that verify clients (with --nats-key-file)")
	fs.StringVar(&q.TLS.KeyFile, "nats-key-file", "", "PEM private key of --nats-cert-file")
	fs.StringVar(&q.TLS.ServerName, "nats-tls-server-name", "", "name expected in the NATS servers' certificates (turns TLS on); empty takes the host of --nats-url")
	fs.IntVar(&f.natsReplicas, "nats-replicas", 0, "copies JetStream keeps of each stream: with --queue=external 1 to 5 (default 3: survives the loss of one server); the embedded server keeps 1")
}

// streamReplicas is the --nats-replicas value for the queue mode, defaulted.
func streamReplicas(mode string, given int) (int, error) {
	if mode == "embedded" {
		if given > 1 {
			return 0, fmt.Errorf("--nats-replicas=%d needs --queue=external: the embedded server is one node and keeps one copy", given)
		}
		if given < 0 {
			return 0, fmt.Errorf("--nats-replicas=%d: must be 1 with the embedded server", given)
		}
		return 1, nil
	}
	switch {
	case given == 0:
		return 3, nil
	case given < 1 || given > 5:
		return 0, fmt.Errorf("--nats-replicas=%d: choose 1 to 5 (JetStream keeps at most 5 copies of a stream; 3 survives the loss of one server)", given)
	}
	return given, nil
}
