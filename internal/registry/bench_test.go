package registry_test

import (
	"fmt"
	"testing"

	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/signing"
)

// benchRegistry has one namespace with 20 endpoints and 200 subscriptions over 50 event
// types: 150 exact, 40 prefix wildcards, 10 catch-alls.
func benchRegistry(b *testing.B) *registry.Registry {
	var objs registry.StaticObjects
	ks := signing.KeySet{Current: newKey("k1", t0)}
	for i := range 20 {
		name := fmt.Sprintf("ep-%d", i)
		objs.Endpoints = append(objs.Endpoints, endpointObj("bench", name, "https://example.com/"+name))
		objs.Secrets = append(objs.Secrets, registry.SigningSecret("bench", name, ks))
	}
	for i := range 200 {
		var pattern string
		switch {
		case i < 150:
			pattern = fmt.Sprintf("group%d.type%d", i%10, i%50)
		case i < 190:
			pattern = fmt.Sprintf("group%d.*", i%10)
		default:
			pattern = "*"
		}
		objs.Subscriptions = append(objs.Subscriptions, subscriptionObj("bench", fmt.Sprintf("sub-%d", i), fmt.Sprintf("ep-%d", i%20), pattern))
	}
	reg, err := registry.NewStatic(objs, registry.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(reg.Close)
	return reg
}

func BenchmarkMatching(b *testing.B) {
	reg := benchRegistry(b)
	types := make([]string, 50)
	for i := range types {
		types[i] = fmt.Sprintf("group%d.type%d", i%10, i)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			if len(reg.Matching("bench", types[i%len(types)])) == 0 {
				b.Fatal("no match")
			}
			i++
		}
	})
}

// BenchmarkMatchingUnmemoized matches event types beyond the memo's bound: the cost of a
// full scan of 200 subscriptions.
func BenchmarkMatchingUnmemoized(b *testing.B) {
	reg := benchRegistry(b)
	for i := range 2000 { // fill the memo
		reg.Matching("bench", fmt.Sprintf("fill.t%d", i))
	}
	b.ReportAllocs()
	for b.Loop() {
		if len(reg.Matching("bench", "group3.type13")) == 0 {
			b.Fatal("no match")
		}
	}
}

func BenchmarkLookup(b *testing.B) {
	reg := benchRegistry(b)
	sub := reg.Subscription("bench", "sub-7")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			s := reg.SubscriptionByUID("bench", sub.UID)
			if reg.Endpoint("bench", s.Endpoint) == nil {
				b.Fatal("no endpoint")
			}
		}
	})
}

func BenchmarkSign(b *testing.B) {
	reg := benchRegistry(b)
	e := reg.Endpoint("bench", "ep-1")
	body := make([]byte, 1024)
	b.ReportAllocs()
	for b.Loop() {
		e.Sign("msg_01JD5X2K3M4N5P6Q7R8S9T0V1W", t0, body)
	}
}
