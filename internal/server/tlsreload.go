package server

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/utils/clock"
)

// certCheckInterval is how often, at most, the certificate files are looked
// at again: a handshake after it stats them, and reloads them when they
// changed.
const certCheckInterval = 10 * time.Second

// CertReloader serves a certificate and key from files that may be replaced
// while the process runs (a Secret volume that cert-manager renews: kubelet
// swaps the files in place). Its GetCertificate goes in tls.Config.
type CertReloader struct {
	certFile, keyFile string
	clock             clock.PassiveClock
	log               logr.Logger

	mu        sync.Mutex
	cert      *tls.Certificate
	stamp     string // the files' sizes and modification times when loaded
	checkedAt time.Time
}

// NewCertReloader loads the certificate and key, failing when they cannot
// be used; later problems keep the last good certificate and are logged.
func NewCertReloader(certFile, keyFile string, clk clock.PassiveClock, log logr.Logger) (*CertReloader, error) {
	if clk == nil {
		clk = clock.RealClock{}
	}
	r := &CertReloader{certFile: certFile, keyFile: keyFile, clock: clk, log: log}
	stamp, err := r.fileStamp()
	if err != nil {
		return nil, err
	}
	if err := r.load(stamp); err != nil {
		return nil, err
	}
	r.checkedAt = clk.Now()
	return r, nil
}

// TLSConfig is the server configuration that serves the reloaded certificate.
func (r *CertReloader) TLSConfig() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: r.GetCertificate}
}

// GetCertificate returns the current certificate, reloading it first when the
// files changed since they were last looked at.
func (r *CertReloader) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := r.clock.Now(); now.Sub(r.checkedAt) >= certCheckInterval {
		r.checkedAt = now
		stamp, err := r.fileStamp()
		switch {
		case err != nil:
			r.log.Error(err, "Checking the API's certificate files; serving the last good certificate")
		case stamp != r.stamp:
			if err := r.load(stamp); err != nil {
				r.log.Error(err, "Reloading the API's certificate; serving the last good certificate")
			} else {
				r.log.Info("Reloaded the API's certificate", "certFile", r.certFile)
			}
		}
	}
	return r.cert, nil
}

func (r *CertReloader) fileStamp() (string, error) {
	stamp := ""
	for _, f := range []string{r.certFile, r.keyFile} {
		fi, err := os.Stat(f)
		if err != nil {
			return "", fmt.Errorf("--tls-cert-file/--tls-key-file: %w", err)
		}
		stamp += fmt.Sprintf("%d/%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}

// load reads the pair; called with mu held, or before r is shared.
func (r *CertReloader) load(stamp string) error {
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("loading the API's certificate from %s and %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.stamp = &cert, stamp
	return nil
}
