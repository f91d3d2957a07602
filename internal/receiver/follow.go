package receiver

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/signing"
)

// FollowEndpoint reads a WebhookEndpoint's live signing keys from its Secret now and every
// interval until ctx ends, so a receiver keeps verifying through rotations. It fails when
// the first read fails.
func FollowEndpoint(ctx context.Context, c client.Reader, ns, name string, interval time.Duration, log logr.Logger) (func() []string, error) {
	var keys atomic.Pointer[[]string]
	load := func() error {
		var s corev1.Secret
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: signing.SecretName(name)}, &s); err != nil {
			return fmt.Errorf("reading the signing keys of WebhookEndpoint %s/%s: %w", ns, name, err)
		}
		ks, err := signing.KeySetFromSecretData(s.Data)
		if err != nil {
			return err
		}
		live := []string{ks.Current.Secret}
		for _, k := range ks.Retired() {
			live = append(live, k.Secret)
		}
		keys.Store(&live)
		return nil
	}
	if err := load(); err != nil {
		return nil, err
	}
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				if err := load(); err != nil {
					log.Error(err, "refreshing signing keys")
				}
			}
		}
	}()
	return func() []string { return *keys.Load() }, nil
}
