package registry

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/signing"
)

// Retry delays of an endpoint whose referenced Secrets could not be read.
const (
	retryMin = 500 * time.Millisecond
	retryMax = time.Minute
)

// New builds a live registry that watches the API through cfg. Run it with Start.
//
// It needs list and watch on webhookendpoints and subscriptions (group hookline.io) and
// on Secrets (only those labelled hookline.io/signing-key=true are listed), and get on
// Secrets for the ones endpoints refer to.
func New(cfg *rest.Config, opts Options) (*Registry, error) {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	copts := cache.Options{
		Scheme: scheme,
		ByObject: map[client.Object]cache.ByObject{
			&corev1.Secret{}: {Label: labels.SelectorFromSet(labels.Set{hooklinev1.LabelSigningSecret: "true"})},
		},
		DefaultTransform: cache.TransformStripManagedFields(),
	}
	if len(opts.Namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	c, err := cache.New(cfg, copts)
	if err != nil {
		return nil, fmt.Errorf("creating the registry's cache: %w", err)
	}
	reader := opts.APIReader
	if reader == nil {
		if reader, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
			return nil, fmt.Errorf("creating the registry's API client: %w", err)
		}
	}
	if opts.BuildConcurrency <= 0 {
		opts.BuildConcurrency = 8
	}
	r := newRegistry(opts)
	r.live = &watcher{
		r:           r,
		cache:       c,
		reader:      reader,
		concurrency: opts.BuildConcurrency,
		state:       map[string]*nsState{},
		dirty:       map[objKey]struct{}{},
		wake:        make(chan struct{}, 1),
	}
	return r, nil
}

type kind uint8

const (
	kindEndpoint kind = iota
	kindSubscription
)

type objKey struct {
	kind      kind
	namespace string
	name      string
}

// watcher keeps the live registry in step with the API. Informer handlers only mark
// objects dirty; one goroutine rebuilds them in batches and publishes the namespaces
// they touched, so a burst of changes (the initial list) publishes once.
type watcher struct {
	r           *Registry
	cache       cache.Cache
	reader      client.Reader
	concurrency int
	onChange    []func(namespace string)

	mu    sync.Mutex
	dirty map[objKey]struct{}
	wake  chan struct{}

	// Owned by the run goroutine.
	state map[string]*nsState
	// publishCost is how long the last publish took to rebuild its views.
	publishCost time.Duration
}

// maxGather bounds how long changes gather before the views are rebuilt (see run).
const maxGather = 500 * time.Millisecond

type nsState struct {
	endpoints map[string]*endpointState
	subs      map[string]*Subscription
}

type endpointState struct {
	entry *Endpoint
	// specKey changes when the endpoint must be rebuilt: its spec, or its signing
	// Secret's presence, owner label or referenced-Secrets annotation. keysKey changes
	// when only the keys may have.
	specKey, keysKey string
	// retry forces a rebuild: the last one could not read a referenced Secret.
	retry   bool
	backoff time.Duration
}

func (w *watcher) mark(k objKey) {
	w.mu.Lock()
	w.dirty[k] = struct{}{}
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) take() []objKey {
	w.mu.Lock()
	defer w.mu.Unlock()
	keys := make([]objKey, 0, len(w.dirty))
	for k := range w.dirty {
		keys = append(keys, k)
	}
	clear(w.dirty)
	return keys
}

func (w *watcher) run(ctx context.Context) error {
	handlers := []struct {
		obj  client.Object
		mark func(obj any)
	}{
		{&hooklinev1.WebhookEndpoint{}, func(obj any) {
			if o, ok := obj.(client.Object); ok {
				w.mark(objKey{kindEndpoint, o.GetNamespace(), o.GetName()})
			}
		}},
		{&hooklinev1.Subscription{}, func(obj any) {
			if o, ok := obj.(client.Object); ok {
				w.mark(objKey{kindSubscription, o.GetNamespace(), o.GetName()})
			}
		}},
		{&corev1.Secret{}, func(obj any) {
			// A signing Secret names its endpoint in a label; its name alone cannot be
			// mapped back when a long endpoint name was shortened.
			if o, ok := obj.(client.Object); ok {
				if ep := o.GetLabels()[hooklinev1.LabelEndpoint]; ep != "" {
					w.mark(objKey{kindEndpoint, o.GetNamespace(), ep})
				}
			}
		}},
	}
	var regs []toolscache.ResourceEventHandlerRegistration
	for _, h := range handlers {
		inf, err := w.cache.GetInformer(ctx, h.obj)
		if err != nil {
			return fmt.Errorf("watching %T: %w", h.obj, err)
		}
		mark := h.mark
		reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
			AddFunc:    mark,
			UpdateFunc: func(old, obj any) { mark(old); mark(obj) },
			DeleteFunc: func(obj any) {
				if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
					obj = t.Obj
				}
				mark(obj)
			},
		})
		if err != nil {
			return fmt.Errorf("watching %T: %w", h.obj, err)
		}
		regs = append(regs, reg)
	}

	cacheDone := make(chan error, 1)
	go func() { cacheDone <- w.cache.Start(ctx) }()
	if !w.cache.WaitForCacheSync(ctx) {
		if err := ctx.Err(); err != nil {
			return nil
		}
		return errors.New("the registry's cache did not sync")
	}
	// The handlers have seen every object listed at start once their registrations
	// have synced; everything is then dirty and one pass builds the initial view.
	for _, reg := range regs {
		if err := waitFor(ctx, reg.HasSynced); err != nil {
			return nil
		}
	}
	w.process(ctx, w.take())
	close(w.r.synced)
	w.r.log.Info("registry synced", "namespaces", len(w.r.snap.Load().namespaces))

	for {
		select {
		case <-ctx.Done():
			return <-cacheDone
		case err := <-cacheDone:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("the registry's cache stopped: %w", err)
		case <-w.wake:
			w.process(ctx, w.take())
			// Rebuilding a namespace's view costs time in proportion to its objects,
			// so objects changing one at a time (a GitOps tool applying 10,000
			// Subscriptions) would cost a rebuild each: quadratic, and 30 % of the
			// dispatcher's CPU in make bench's fan-out setup. Changes gather for
			// four times what the last rebuild took, so rebuilding takes at most a
			// fifth of the time; for a registry of a few hundred objects that is
			// well under a millisecond.
			if gather := min(4*w.publishCost, maxGather); gather > time.Millisecond {
				select {
				case <-ctx.Done():
				case <-time.After(gather):
				}
			}
		}
	}
}

func waitFor(ctx context.Context, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

// buildJob is one endpoint to build from scratch.
type buildJob struct {
	key              objKey
	ep               *hooklinev1.WebhookEndpoint
	secret           *corev1.Secret
	specKey, keysKey string
	entry            *Endpoint
	err              error
}

// process brings the dirty objects up to date and publishes the namespaces that
// changed. Targets replaced or removed are closed after the new view is visible.
func (w *watcher) process(ctx context.Context, keys []objKey) {
	if len(keys) == 0 {
		return
	}
	changed := map[string]bool{}
	var jobs []*buildJob
	var retired []*Endpoint
	for _, k := range keys {
		switch k.kind {
		case kindSubscription:
			if w.syncSubscription(ctx, k) {
				changed[k.namespace] = true
			}
		case kindEndpoint:
			job, old, ch := w.planEndpoint(ctx, k)
			if job != nil {
				jobs = append(jobs, job)
			}
			if old != nil {
				retired = append(retired, old)
			}
			if ch {
				changed[k.namespace] = true
			}
		}
	}

	w.buildAll(ctx, jobs)
	for _, j := range jobs {
		st := w.ns(j.key.namespace)
		cur := st.endpoints[j.key.name]
		if j.err != nil {
			// Keep what works; a Secret that cannot be read now may be readable soon.
			if cur == nil {
				cur = &endpointState{entry: &Endpoint{
					Namespace: j.ep.Namespace, Name: j.ep.Name, UID: j.ep.UID, Generation: j.ep.Generation,
					Suspended: j.ep.Spec.Suspend, Reason: ReasonSecretUnreadable,
					Message: "A referenced Secret could not be read; retrying.", clock: w.r.build.clock,
				}}
				st.endpoints[j.key.name] = cur
				changed[j.key.namespace] = true
			}
			cur.retry = true
			cur.backoff = min(max(2*cur.backoff, retryMin), retryMax)
			w.r.log.Error(j.err, "building endpoint; will retry", "namespace", j.key.namespace, "endpoint", j.key.name, "after", cur.backoff)
			key := j.key
			time.AfterFunc(cur.backoff, func() { w.mark(key) })
			continue
		}
		if cur != nil {
			retired = append(retired, cur.entry)
		}
		st.endpoints[j.key.name] = &endpointState{entry: j.entry, specKey: j.specKey, keysKey: j.keysKey}
		changed[j.key.namespace] = true
		if !j.entry.Ready {
			w.r.log.Info("endpoint not ready", "namespace", j.key.namespace, "endpoint", j.key.name, "reason", j.entry.Reason, "message", j.entry.Message)
		}
	}

	w.publish(changed)
	for _, e := range retired {
		e.close()
	}
	for ns := range changed {
		for _, fn := range w.onChange {
			fn(ns)
		}
	}
}

func (w *watcher) ns(name string) *nsState {
	st := w.state[name]
	if st == nil {
		st = &nsState{endpoints: map[string]*endpointState{}, subs: map[string]*Subscription{}}
		w.state[name] = st
	}
	return st
}

func (w *watcher) syncSubscription(ctx context.Context, k objKey) bool {
	var s hooklinev1.Subscription
	err := w.cache.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, &s)
	st := w.ns(k.namespace)
	cur := st.subs[k.name]
	if apierrors.IsNotFound(err) {
		if cur != nil {
			w.r.markGone(cur.UID)
		}
		delete(st.subs, k.name)
		return cur != nil
	}
	if err != nil {
		w.r.log.Error(err, "reading subscription from the cache", "namespace", k.namespace, "subscription", k.name)
		return false
	}
	// Status writes do not change the generation and need no rebuild.
	if cur != nil && cur.UID == s.UID && cur.Generation == s.Generation {
		return false
	}
	if cur != nil && cur.UID != s.UID {
		w.r.markGone(cur.UID)
	}
	st.subs[k.name] = buildSubscription(&s)
	return true
}

// planEndpoint decides what an endpoint change needs: nothing, new keys in place, a
// rebuild (returned as a job) or removal (the old entry is returned to be closed).
func (w *watcher) planEndpoint(ctx context.Context, k objKey) (job *buildJob, retired *Endpoint, changed bool) {
	st := w.ns(k.namespace)
	cur := st.endpoints[k.name]
	var ep hooklinev1.WebhookEndpoint
	err := w.cache.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: k.name}, &ep)
	if apierrors.IsNotFound(err) {
		if cur == nil {
			return nil, nil, false
		}
		delete(st.endpoints, k.name)
		return nil, cur.entry, true
	}
	if err != nil {
		w.r.log.Error(err, "reading endpoint from the cache", "namespace", k.namespace, "endpoint", k.name)
		return nil, nil, false
	}
	var secret *corev1.Secret
	var s corev1.Secret
	switch err := w.cache.Get(ctx, client.ObjectKey{Namespace: k.namespace, Name: signing.SecretName(k.name)}, &s); {
	case err == nil:
		secret = &s
	case !apierrors.IsNotFound(err):
		w.r.log.Error(err, "reading signing Secret from the cache", "namespace", k.namespace, "endpoint", k.name)
		return nil, nil, false
	}
	specKey, keysKey := endpointKeys(&ep, secret)
	if cur != nil && !cur.retry && cur.specKey == specKey {
		if cur.keysKey == keysKey {
			return nil, nil, false
		}
		// Only the keys changed (a rotation): swap the signer in place, so deliveries
		// already holding the entry sign with the new keys too.
		if set, err := signing.KeySetFromSecretData(secret.Data); err == nil && cur.entry.Ready {
			if err := cur.entry.setKeys(set); err == nil {
				cur.keysKey = keysKey
				return nil, nil, false
			}
		}
	}
	return &buildJob{key: k, ep: &ep, secret: secret, specKey: specKey, keysKey: keysKey}, nil, false
}

func endpointKeys(ep *hooklinev1.WebhookEndpoint, secret *corev1.Secret) (specKey, keysKey string) {
	specKey = string(ep.UID) + "/" + strconv.FormatInt(ep.Generation, 10)
	if secret == nil {
		return specKey + "/no-secret", ""
	}
	specKey += "/" + secret.Labels[hooklinev1.LabelEndpoint] + "/" + secret.Annotations[hooklinev1.AnnotationReferencedSecrets]
	return specKey, secret.ResourceVersion
}

// buildAll builds endpoints in parallel: each may read Secrets from the API.
func (w *watcher) buildAll(ctx context.Context, jobs []*buildJob) {
	get := func(ctx context.Context, ns, name string) (*corev1.Secret, error) {
		var s corev1.Secret
		if err := w.reader.Get(ctx, types.NamespacedName{Namespace: ns, Name: name}, &s); err != nil {
			return nil, err
		}
		return &s, nil
	}
	sem := make(chan struct{}, w.concurrency)
	var wg sync.WaitGroup
	for _, j := range jobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			j.entry, j.err = w.r.build.endpoint(ctx, j.ep, j.secret, get)
		})
	}
	wg.Wait()
}

func (w *watcher) publish(changed map[string]bool) {
	if len(changed) == 0 {
		return
	}
	start := time.Now()
	defer func() { w.publishCost = time.Since(start) }()
	old := w.r.snap.Load()
	next := &snapshot{namespaces: make(map[string]*view, len(old.namespaces)+len(changed))}
	for ns, v := range old.namespaces {
		if !changed[ns] {
			next.namespaces[ns] = v
		}
	}
	for ns := range changed {
		st := w.state[ns]
		if st == nil || (len(st.endpoints) == 0 && len(st.subs) == 0) {
			delete(w.state, ns)
			continue
		}
		eps := make(map[string]*Endpoint, len(st.endpoints))
		for n, e := range st.endpoints {
			eps[n] = e.entry
		}
		next.namespaces[ns] = newView(eps, st.subs)
	}
	w.r.snap.Store(next)
}
