package status

import (
	"context"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/clock"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/engine"
	"github.com/hookline/hookline/internal/queue"
)

// Backlogger counts the deliveries waiting in the queue; *queue.Queue is one.
type Backlogger interface {
	Backlog(ctx context.Context) (queue.Backlog, error)
}

// writer is the status writer, run by the lease holder only.
type writer struct {
	st      *store
	objs    *objects
	c       client.Client
	backlog Backlogger
	events  *events
	metrics *metrics
	clock   clock.PassiveClock
	log     logr.Logger

	interval  time.Duration // per object, between writes
	goneAfter time.Duration
	present   time.Duration // a report older than this no longer shows circuits

	// State of one term as lease holder.
	reports   map[string]entry
	lastWrite map[objRef]time.Time
	backlogs  queue.Backlog
}

// statKey names figures: those of an older object of the same name are
// another's.
type statKey struct{ ns, name, uid string }

type objRef struct {
	kind     objKind
	ns, name string
}

var (
	endpointGVK     = hooklinev1.GroupVersion.WithKind("WebhookEndpoint")
	subscriptionGVK = hooklinev1.GroupVersion.WithKind("Subscription")
)

// applyConcurrency bounds the status writes in flight; the client's rate
// limit bounds their rate.
const applyConcurrency = 4

// tick writes the status of every object whose status changed and was not
// written within the interval.
func (w *writer) tick(ctx context.Context) error {
	eps, err := w.objs.endpoints(ctx)
	if err != nil {
		return err
	}
	subs, err := w.objs.subscriptions(ctx)
	if err != nil {
		return err
	}
	merged, err := w.merge(ctx, eps, subs)
	if err != nil {
		return err
	}
	if w.backlog != nil {
		if bl, err := w.backlog.Backlog(ctx); err != nil {
			w.log.V(1).Info("Could not read the backlog; keeping the last one", "error", err.Error())
		} else {
			w.backlogs = bl
			w.metrics.setBacklog(bl)
		}
	}
	return w.writeAll(ctx, eps, subs, merged, w.clock.Now())
}

// merge reads the reports, folds those of processes that are gone into the
// base, and merges the rest on top of it.
func (w *writer) merge(ctx context.Context, eps []hooklinev1.WebhookEndpoint, subs []hooklinev1.Subscription) (engine.Snapshot, error) {
	ix := newIndex(eps, subs)
	entries, b, rev, err := w.st.load(ctx, w.reports, w.log)
	if err != nil {
		return engine.Snapshot{}, err
	}
	if rev == 0 {
		// No base yet: a new bucket. Whatever status shows was counted by
		// processes whose reports are lost; it is where the figures resume.
		if err := w.st.writeBase(ctx, seed(eps, subs), 0); err != nil {
			return engine.Snapshot{}, err
		}
		w.log.Info("Started the delivery figures from the counts in status", "bucket", Bucket)
		return w.merge(ctx, eps, subs)
	}
	now := w.clock.Now()
	f := fold(b, entries, now, w.goneAfter, ix.alive)
	if f.changed {
		// Compare-and-set: if another writer got there first, nothing is
		// deleted and the next round starts from its base.
		if err := w.st.writeBase(ctx, f.base, rev); err != nil {
			return engine.Snapshot{}, err
		}
	}
	for _, k := range f.remove {
		if err := w.st.remove(ctx, k); err != nil {
			w.log.Error(err, "Could not delete a folded report; it is deleted on the next round")
		}
	}
	return mergeReports(f.base.Snapshot, f.live, ix, now, w.present), nil
}

func (w *writer) writeAll(ctx context.Context, eps []hooklinev1.WebhookEndpoint, subs []hooklinev1.Subscription, merged engine.Snapshot, now time.Time) error {
	epStats := map[statKey]*engine.EndpointStats{}
	for i := range merged.Endpoints {
		s := &merged.Endpoints[i]
		epStats[statKey{s.Namespace, s.Name, s.UID}] = s
	}
	subStats := map[statKey]*engine.SubscriptionStats{}
	for i := range merged.Subscriptions {
		s := &merged.Subscriptions[i]
		subStats[statKey{s.Namespace, s.Name, s.UID}] = s
	}
	// An endpoint's backlog is its queue's and its ordered subscriptions'.
	ordered := map[nsName]int64{}
	for i := range subs {
		s := &subs[i]
		n := int64(w.backlogs.Ordered[queue.SubscriptionKey{Namespace: s.Namespace, Subscription: s.Name}])
		ordered[nsName{s.Namespace, s.Spec.EndpointRef.Name}] += n
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(applyConcurrency)
	seen := map[objRef]bool{}
	health := map[nsName]endpointHealth{}
	for i := range eps {
		ep := &eps[i]
		k := nsName{ep.Namespace, ep.Name}
		backlog := int64(w.backlogs.Endpoints[queue.EndpointKey{Namespace: ep.Namespace, Endpoint: ep.Name}]) + ordered[k]
		desired, h := endpointStatus(ep, epStats[statKey{ep.Namespace, ep.Name, string(ep.UID)}], backlog, now)
		health[k] = h
		cur := owned(ep.Status.Conditions, endpointConditions, ep.Status.Delivery, ep.Status.LastHandledEnable)
		ref := objRef{kindEndpoint, ep.Namespace, ep.Name}
		seen[ref] = true
		if !w.due(ref, desired, cur, now) {
			continue
		}
		enabled := desired.LastHandledEnable != ep.Status.LastHandledEnable
		ns, name := ep.Namespace, ep.Name
		g.Go(func() error {
			if w.apply(gctx, endpointGVK, ns, name, desired) && enabled {
				w.events.endpointEnabled(ns, name, desired.LastHandledEnable)
			}
			return nil
		})
	}
	for i := range subs {
		s := &subs[i]
		backlog := int64(w.backlogs.Ordered[queue.SubscriptionKey{Namespace: s.Namespace, Subscription: s.Name}])
		desired := subscriptionStatus(s, subStats[statKey{s.Namespace, s.Name, string(s.UID)}],
			health[nsName{s.Namespace, s.Spec.EndpointRef.Name}], backlog, now)
		cur := owned(s.Status.Conditions, subscriptionConditions, s.Status.Delivery, "")
		ref := objRef{kindSubscription, s.Namespace, s.Name}
		seen[ref] = true
		if !w.due(ref, desired, cur, now) {
			continue
		}
		ns, name := s.Namespace, s.Name
		g.Go(func() error {
			w.apply(gctx, subscriptionGVK, ns, name, desired)
			return nil
		})
	}
	err := g.Wait()
	for ref := range w.lastWrite {
		if !seen[ref] {
			delete(w.lastWrite, ref)
		}
	}
	return err
}

// due decides whether to write now: the status changed and the object was
// not written within the interval. It counts the write as done.
func (w *writer) due(ref objRef, desired, cur ownedStatus, now time.Time) bool {
	if sameStatus(desired, cur) {
		return false
	}
	if last, ok := w.lastWrite[ref]; ok && now.Sub(last) < w.interval {
		return false
	}
	w.lastWrite[ref] = now
	return true
}

// apply writes the dispatcher's part of an object's status with server-side
// apply. Figures are matched to objects by UID before, from the cache; an
// object deleted and created again between the two gets the old one's
// figures for one interval at most. (An apply takes no UID precondition: the
// API server ignores metadata.uid in it.)
func (w *writer) apply(ctx context.Context, gvk schema.GroupVersionKind, ns, name string, st ownedStatus) bool {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(&st)
	if err == nil {
		u := &unstructured.Unstructured{Object: map[string]any{"status": m}}
		u.SetGroupVersionKind(gvk)
		u.SetNamespace(ns)
		u.SetName(name)
		err = w.c.Status().Apply(ctx, client.ApplyConfigurationFromUnstructured(u),
			client.FieldOwner(FieldOwner), client.ForceOwnership)
	}
	switch {
	case err == nil:
		w.metrics.wrote(gvk.Kind, writeOK)
		return true
	case ctx.Err() != nil:
	case apierrors.IsNotFound(err):
		w.metrics.wrote(gvk.Kind, writeGone)
		w.log.V(1).Info("Status not written: the object is gone", "kind", gvk.Kind, "namespace", ns, "name", name)
	default:
		w.metrics.wrote(gvk.Kind, writeFailed)
		w.log.Error(err, "Writing delivery status", "kind", gvk.Kind, "namespace", ns, "name", name)
	}
	return false
}

// seed turns the counts status shows into a base.
func seed(eps []hooklinev1.WebhookEndpoint, subs []hooklinev1.Subscription) base {
	var b base
	for i := range eps {
		ep := &eps[i]
		if d := ep.Status.Delivery; d != nil {
			b.Snapshot.Endpoints = append(b.Snapshot.Endpoints, engine.EndpointStats{
				Namespace: ep.Namespace, Name: ep.Name, UID: string(ep.UID), Counts: countsOf(d),
			})
		}
	}
	for i := range subs {
		s := &subs[i]
		if d := s.Status.Delivery; d != nil {
			b.Snapshot.Subscriptions = append(b.Snapshot.Subscriptions, engine.SubscriptionStats{
				Namespace: s.Namespace, Name: s.Name, UID: string(s.UID), Counts: countsOf(d),
			})
		}
	}
	return b
}

// countsOf reads counts back from status. The failure streak is left out:
// the processes still running report theirs.
func countsOf(d *hooklinev1.DeliveryStatus) engine.Counts {
	c := engine.Counts{Delivered: uint64(max(d.Delivered, 0)), Failed: uint64(max(d.Failed, 0)), Dead: uint64(max(d.Dead, 0))}
	if d.LastDeliveryTime != nil {
		c.LastDeliveryTime = d.LastDeliveryTime.Time
	}
	if f := d.LastFailure; f != nil {
		c.LastFailure = &engine.Failure{Time: f.Time.Time, StatusCode: int(f.StatusCode), Reason: f.Reason}
	}
	return c
}
