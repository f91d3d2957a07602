package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"

	"github.com/go-logr/logr"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"

	hooklinev1 "github.com/hookline/hookline/api/v1alpha1"
	"github.com/hookline/hookline/internal/server"
)

// Entry is one EventType as the dispatcher uses it. Entries are shared and must not be
// modified.
type Entry struct {
	Namespace, Name string
	UID             types.UID
	Generation      int64
	Type            string
	Enforce         bool
	Deprecated      bool
	// Schema is nil when the EventType has none, or when it does not compile (SchemaErr).
	Schema    *jsonschema.Schema
	SchemaErr error
	// Example is spec.example, or nil.
	Example json.RawMessage
}

// Check validates data against e's schema when e enforces one. It returns nil when the
// data may be published.
func (e *Entry) Check(data []byte) (*Violation, error) {
	if e == nil || !e.Enforce || e.Schema == nil {
		return nil, nil
	}
	return Validate(e.Schema, data)
}

// Catalog is the dispatcher's view of the EventTypes: lookups take no lock.
type Catalog struct {
	snap   atomic.Pointer[map[string]map[string]*Entry] // namespace -> type -> entry
	synced chan struct{}
	log    logr.Logger

	mu sync.Mutex
	// objs holds every EventType by namespace/name, for rebuilding a namespace.
	objs  map[types.NamespacedName]*Entry
	cache cache.Cache
}

func newCatalog(log logr.Logger) *Catalog {
	c := &Catalog{synced: make(chan struct{}), log: log, objs: map[types.NamespacedName]*Entry{}}
	empty := map[string]map[string]*Entry{}
	c.snap.Store(&empty)
	return c
}

// Lookup returns the entry of eventType in ns, or nil when the namespace's catalog does
// not list it. When two EventTypes of a namespace name the same type, the one whose
// object name sorts first counts.
func (c *Catalog) Lookup(ns, eventType string) *Entry {
	return (*c.snap.Load())[ns][eventType]
}

// Types returns the types listed in ns, sorted.
func (c *Catalog) Types(ns string) []string {
	m := (*c.snap.Load())[ns]
	out := make([]string, 0, len(m))
	for t := range m {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

// NewStatic builds a catalog from objects, ready at once and never changing.
func NewStatic(objs []hooklinev1.EventType) *Catalog {
	c := newCatalog(logr.Discard())
	for i := range objs {
		c.upsert(&objs[i])
	}
	c.publishAll()
	close(c.synced)
	return c
}

// New builds a live catalog that watches EventTypes through cfg (list and watch on
// eventtypes, group hookline.io), in namespaces or all of them. Run it with Start.
func New(cfg *rest.Config, namespaces []string, log logr.Logger) (*Catalog, error) {
	scheme := runtime.NewScheme()
	if err := hooklinev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	copts := cache.Options{Scheme: scheme, DefaultTransform: cache.TransformStripManagedFields()}
	if len(namespaces) > 0 {
		copts.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range namespaces {
			copts.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	ca, err := cache.New(cfg, copts)
	if err != nil {
		return nil, fmt.Errorf("creating the event catalog's cache: %w", err)
	}
	c := newCatalog(log)
	c.cache = ca
	return c, nil
}

// Start watches EventTypes until ctx ends. For a static catalog it only waits.
func (c *Catalog) Start(ctx context.Context) error {
	if c.cache == nil {
		<-ctx.Done()
		return nil
	}
	inf, err := c.cache.GetInformer(ctx, &hooklinev1.EventType{})
	if meta.IsNoMatchError(err) {
		return fmt.Errorf("watching EventTypes: the EventType CRD (eventtypes.hookline.io) is not installed; "+
			"apply this version's CRDs first (kubectl apply --server-side -f charts/hookline/crds/, see docs/operations.md): %w", err)
	}
	if err != nil {
		return fmt.Errorf("watching EventTypes: %w", err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.changed(obj, false) },
		UpdateFunc: func(_, obj any) { c.changed(obj, false) },
		DeleteFunc: func(obj any) {
			if t, ok := obj.(toolscache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			c.changed(obj, true)
		},
	})
	if err != nil {
		return fmt.Errorf("watching EventTypes: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- c.cache.Start(ctx) }()
	if !c.cache.WaitForCacheSync(ctx) {
		if ctx.Err() != nil {
			return nil
		}
		return errors.New("the event catalog's cache did not sync")
	}
	if !toolscache.WaitForCacheSync(ctx.Done(), reg.HasSynced) {
		return nil
	}
	close(c.synced)
	select {
	case <-ctx.Done():
		<-done //nolint:errcheck // after a cancel the informer's error is only the cancellation
		return nil
	case err := <-done:
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("the event catalog's cache stopped: %w", err)
	}
}

// CheckReady reports whether the initial list of EventTypes is loaded, for /readyz:
// until then, schemas would not be enforced.
func (c *Catalog) CheckReady(context.Context) error {
	select {
	case <-c.synced:
		return nil
	default:
		return errors.New("event types are still being loaded from the API")
	}
}

// WaitForSync returns once the initial list is loaded, or with ctx's error.
func (c *Catalog) WaitForSync(ctx context.Context) error {
	select {
	case <-c.synced:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Catalog) changed(obj any, deleted bool) {
	et, ok := obj.(*hooklinev1.EventType)
	if !ok {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	key := types.NamespacedName{Namespace: et.Namespace, Name: et.Name}
	if deleted {
		delete(c.objs, key)
	} else if !c.upsert(et) {
		return
	}
	c.publish(et.Namespace)
}

// upsert records et, compiling its schema unless the same generation is known. It
// reports whether anything changed.
func (c *Catalog) upsert(et *hooklinev1.EventType) bool {
	key := types.NamespacedName{Namespace: et.Namespace, Name: et.Name}
	if cur := c.objs[key]; cur != nil && cur.UID == et.UID && cur.Generation == et.Generation {
		return false
	}
	e := &Entry{
		Namespace: et.Namespace, Name: et.Name, UID: et.UID, Generation: et.Generation,
		Type: et.Spec.Type, Enforce: et.Spec.Enforce, Deprecated: et.Spec.Deprecated,
	}
	if et.Spec.Schema != nil {
		e.Schema, e.SchemaErr = Compile(et.Spec.Schema.Raw)
		if e.SchemaErr != nil {
			c.log.Info("EventType schema does not compile; it is not enforced", "namespace", et.Namespace, "eventType", et.Name, "error", e.SchemaErr.Error())
		}
	}
	if et.Spec.Example != nil {
		e.Example = json.RawMessage(et.Spec.Example.Raw)
	}
	c.objs[key] = e
	return true
}

// publish rebuilds the view of ns; the caller holds mu.
func (c *Catalog) publish(ns string) {
	old := *c.snap.Load()
	next := make(map[string]map[string]*Entry, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	byType := map[string]*Entry{}
	for key, e := range c.objs {
		if key.Namespace != ns {
			continue
		}
		if cur := byType[e.Type]; cur == nil || e.Name < cur.Name {
			byType[e.Type] = e
		}
	}
	if len(byType) == 0 {
		delete(next, ns)
	} else {
		next[ns] = byType
	}
	c.snap.Store(&next)
}

func (c *Catalog) publishAll() {
	seen := map[string]bool{}
	for key := range c.objs {
		if !seen[key.Namespace] {
			seen[key.Namespace] = true
			c.publish(key.Namespace)
		}
	}
}

// CheckData implements server.DataChecker: data of a type whose EventType enforces a
// schema must match it. A type the catalog does not list, or whose schema does not
// compile, is not checked.
func (c *Catalog) CheckData(ns, eventType string, data []byte) *server.DataViolation {
	e := c.Lookup(ns, eventType)
	v, err := e.Check(data)
	switch {
	case err != nil:
		// The API has already checked that data is JSON; this is a failure of the
		// validator, reported rather than let through silently.
		return &server.DataViolation{EventType: e.Name, Rule: "schema", KeywordLocation: "#", Message: err.Error()}
	case v == nil:
		return nil
	}
	return &server.DataViolation{EventType: e.Name, Path: v.Path, Rule: v.Rule, KeywordLocation: v.KeywordLocation, Message: v.Message}
}
