package status

import (
	"context"
	"sync"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Lease chooses the one process that writes status.
type Lease struct {
	// Namespace and Name of the coordination.k8s.io Lease. The dispatcher
	// needs get, create and update on it.
	Namespace string
	Name      string
	// Duration, RenewDeadline and RetryPeriod as in client-go's leader
	// election; zero takes 15s, 10s and 2s.
	Duration      time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

// DefaultLeaseName is the Lease the dispatchers share.
const DefaultLeaseName = "hookline-dispatcher-status"

// elect runs lead while this process holds the lease, campaigning again
// whenever it loses it, until ctx ends. lead must return when its context
// ends; elect waits for it, then releases the lease.
func elect(ctx context.Context, cs kubernetes.Interface, l Lease, id string, log logr.Logger, lead func(context.Context)) error {
	if l.Name == "" {
		l.Name = DefaultLeaseName
	}
	setDefault(&l.Duration, 15*time.Second)
	setDefault(&l.RenewDeadline, 10*time.Second)
	setDefault(&l.RetryPeriod, 2*time.Second)
	for ctx.Err() == nil {
		// OnStartedLeading runs on a goroutine of its own; stopped tells it,
		// if it starts late, that this term is over.
		var (
			mu      sync.Mutex
			stopped bool
			wg      sync.WaitGroup
		)
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock: &resourcelock.LeaseLock{
				LeaseMeta:  metav1.ObjectMeta{Namespace: l.Namespace, Name: l.Name},
				Client:     cs.CoordinationV1(),
				LockConfig: resourcelock.ResourceLockConfig{Identity: id},
			},
			LeaseDuration:   l.Duration,
			RenewDeadline:   l.RenewDeadline,
			RetryPeriod:     l.RetryPeriod,
			ReleaseOnCancel: true,
			Name:            l.Name,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					mu.Lock()
					if stopped {
						mu.Unlock()
						return
					}
					wg.Add(1)
					mu.Unlock()
					defer wg.Done()
					log.Info("Writing delivery status: this process holds the lease", "lease", l.Namespace+"/"+l.Name)
					lead(ctx)
				},
				OnStoppedLeading: func() {},
			},
		})
		if err != nil {
			return err
		}
		le.Run(ctx)
		mu.Lock()
		stopped = true
		mu.Unlock()
		wg.Wait()
	}
	return nil
}

func setDefault(d *time.Duration, v time.Duration) {
	if *d <= 0 {
		*d = v
	}
}
