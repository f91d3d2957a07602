package registry

import (
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/types"
)

// BenchmarkNewView is what one rebuild of a namespace's view costs, which the
// watcher pays for every batch of changes (see maxGather in watch.go): at
// 10,000 subscriptions, the size make bench's fan-out phase creates.
func BenchmarkNewView(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprintf("subscriptions=%d", n), func(b *testing.B) {
			eps := map[string]*Endpoint{"ep": {Namespace: "bench", Name: "ep", Ready: true}}
			subs := make(map[string]*Subscription, n)
			for i := range n {
				name := fmt.Sprintf("fan-%05d", i)
				subs[name] = &Subscription{Namespace: "bench", Name: name, UID: types.UID(name), Endpoint: "ep", Usable: true}
			}
			b.ResetTimer()
			for b.Loop() {
				_ = newView(eps, subs)
			}
		})
	}
}
