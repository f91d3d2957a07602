package queue

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

const groupedChildEnv = "HOOKLINE_GROUPED_CHILD"

func init() {
	if dir := os.Getenv(groupedChildEnv); dir != "" {
		groupedChild(dir)
		os.Exit(1)
	}
}

// groupedChild fans out and delivers the events stored in dir with groups on,
// appending each delivered event's id to dir/delivered before it resolves
// the job (the receiver has it then), and prints a line every 100 deliveries.
// The file is written without a sync: a SIGKILL keeps what the kernel has.
func groupedChild(dir string) {
	q, err := Open(context.Background(), testConfig(dir), logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return
	}
	out, err := os.OpenFile(filepath.Join(dir, "delivered"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600) //nolint:gosec // G703: the parent test's temporary directory
	if err != nil {
		fmt.Println("error", err)
		return
	}
	ctx := context.Background()
	src, err := q.OpenDeliveries(ctx, 256)
	if err != nil {
		fmt.Println("error", err)
		return
	}
	for !q.GroupsOn() {
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Println("grouping")
	var delivered atomic.Int64
	var mu sync.Mutex
	for range 8 {
		go func() {
			for j := range src.Jobs() {
				// A send takes a while, so that the kill finds groups
				// with members delivered and members not.
				time.Sleep(time.Millisecond)
				mu.Lock()
				_, _ = out.WriteString(j.Delivery().Event.ID + "\n")
				mu.Unlock()
				_ = j.Done()
				if n := delivered.Add(1); n%100 == 0 {
					fmt.Println("delivered", n)
				}
			}
		}()
	}
	if err := runFanout(ctx, q, toEndpoint("billing", "erp")); err != nil {
		fmt.Println("error", err)
	}
}

// A dispatcher killed (SIGKILL) while it delivers groups loses no delivery:
// a group whose members were not all resolved comes back whole after its
// lease, and the next start delivers it again, the members already
// delivered included (at least once, the same webhook-id).
func TestGroupSIGKILL(t *testing.T) {
	t.Parallel()
	const events = 3000
	// Killed as it starts delivering, and after 500 and 1,500 deliveries.
	for _, after := range []int{0, 5, 15} {
		t.Run(fmt.Sprintf("after %d deliveries", after*100), func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			seedEvents(t, testConfig(dir), events)
			cmd, lines := startTestChild(t, []string{groupedChildEnv + "=" + dir}, "grouping")
			for range after {
				if !lines.Scan() {
					t.Fatal("the child ended early")
				}
			}
			_ = cmd.Process.Kill()
			_ = cmd.Wait()

			before, err := os.ReadFile(filepath.Join(dir, "delivered"))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			seen := map[string]int{}
			for id := range strings.FieldsSeq(string(before)) {
				seen[id]++
			}
			childSaw := len(seen)

			q := openTest(t, testConfig(dir))
			groups := 0
			for _, m := range storedDeliveries(t, q) {
				if _, n, ok := splitGroupSubject(m.Subject); ok {
					groups += n
				}
			}
			redeliver(t, q, 8, seen)
			again := 0
			for i := range events {
				n := seen[fmt.Sprintf("e%d", i)]
				if n == 0 {
					t.Errorf("event e%d never delivered", i)
				}
				again += max(n-1, 0)
			}
			t.Logf("the child delivered %d events; %d deliveries in groups were stored at the kill; %d delivered twice or more", childSaw, groups, again)
		})
	}
}
