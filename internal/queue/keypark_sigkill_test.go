package queue

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// keyChildEnv makes the test binary run keyChild instead of the tests: a
// dispatcher-like process reading the one keyed lane of team-a/ledger from
// the queue in $HOOKLINE_KEY_DIR.
const keyChildEnv = "HOOKLINE_KEY_CHILD"

// keyEvents are published in this order; a1 fails once. With one lane, every
// step of parking per key happens: a1's retry is recorded and scheduled, a2
// and a3 are parked behind it while b1..b3 go on, and a1's success brings a2
// back, a2's a3, and a3's frees the key.
var keyEvents = []string{"a1", "b1", "a2", "b2", "a3", "b3"}

func init() {
	if mode := os.Getenv(keyChildEnv); mode != "" {
		os.Exit(keyChild(mode, os.Getenv("HOOKLINE_KEY_DIR")))
	}
}

// keyChild runs in one of these modes until killed:
//
//	setup: stores the lane and the events' deliveries, prints "stored"
//	kill:<step>: delivers, a1 failing its first attempt; at the first
//	  <step> of parking per key it prints "at <step>" and stops there, for
//	  the test to SIGKILL it
//	run: delivers, nothing failing
//
// It prints "done <event> <attempt>" or "failed <event> <attempt>" per
// delivery it is handed.
func keyChild(mode, dir string) int {
	ctx := context.Background()
	q, err := Open(ctx, testConfig(dir), logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if mode == "setup" {
		return keyChildSetup(ctx, q)
	}
	if step, ok := strings.CutPrefix(mode, "kill:"); ok {
		testHookKey = func(s string) {
			if s == step {
				fmt.Println("at", s)
				select {}
			}
		}
	}
	failed := mode == "run"
	_ = runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
		d := j.Delivery()
		var err error
		if d.Event.ID == "a1" && !failed {
			failed = true
			fmt.Println("failed", d.Event.ID, d.Attempt)
			err = j.RetryAt(time.Now().Add(200 * time.Millisecond))
		} else {
			fmt.Println("done", d.Event.ID, d.Attempt)
			err = j.Done()
		}
		if err != nil {
			fmt.Println("error", err)
		}
	})
	return 0
}

func keyChildSetup(ctx context.Context, q *Queue) int {
	if err := q.EnsureKeyed(ctx, "team-a", "ledger", "erp", 1); err != nil {
		fmt.Println("error", err)
		return 1
	}
	for _, id := range keyEvents {
		if _, err := q.PublishEvent(ctx, testEvent("team-a", id)); err != nil {
			fmt.Println("error", err)
			return 1
		}
	}
	go func() {
		_ = runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
			key := ev.ID[:1]
			return []Delivery{{Subscription: "ledger", SubscriptionUID: "u1", Ordered: true, Lane: 1, KeyHash: KeyHash(key)}}, nil
		})
	}()
	for {
		counts, err := q.subjectCounts(ctx, laneSubjectOf("team-a", "ledger", 1))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		if counts[laneSubjectOf("team-a", "ledger", 1)] == uint64(len(keyEvents)) {
			fmt.Println("stored")
			select {}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startKeyChild(t *testing.T, dir, mode string) *laneProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$") //nolint:gosec // G702: re-runs this test binary itself, with fixed arguments.
	cmd.Env = append(os.Environ(), keyChildEnv+"="+mode, "HOOKLINE_KEY_DIR="+dir)
	return startChild(t, cmd)
}

// TestKeyParkingSurvivesSIGKILL kills a process at every step of parking per
// key, between storing something and acknowledging the lane message, and
// checks that the next process delivers every event, each key in publish
// order (a delivery may come again, right after itself), a1's retry as
// attempt 2, and leaves nothing of the parking behind.
func TestKeyParkingSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	for _, step := range []string{"retry-recorded", "retry-scheduled", "parked", "promote-published", "promote-recorded", "promote-removed", "freed"} {
		t.Run(step, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			p := startKeyChild(t, dir, "setup")
			if l := p.next(t); l != "stored" {
				t.Fatalf("setup: %q", l)
			}
			p.kill()

			p = startKeyChild(t, dir, "kill:"+step)
			var before []string
			for {
				l := p.next(t)
				if l == "at "+step {
					break
				}
				before = append(before, l)
			}
			p.kill()

			p = startKeyChild(t, dir, "run")
			got := append([]string(nil), before...)
			done := map[string]bool{}
			for _, l := range before {
				if f := strings.Fields(l); f[0] == "done" {
					done[f[1]] = true
				}
			}
			for len(done) < len(keyEvents) {
				l := p.next(t)
				got = append(got, l)
				if f := strings.Fields(l); f[0] == "done" {
					done[f[1]] = true
				}
			}
			p.kill()

			// The last process was killed too, perhaps before it settled its
			// last delivery: this one takes what is left.
			q := openTest(t, testConfig(dir))
			var mu sync.Mutex
			var w laneWatch
			run(t, func(ctx context.Context) error {
				err := runDeliveriesWatched(ctx, q, 1, func(_ context.Context, j *Job) {
					d := j.Delivery()
					mu.Lock()
					got = append(got, fmt.Sprintf("done %s %d", d.Event.ID, d.Attempt))
					mu.Unlock()
					_ = j.Done()
				}, &w)
				if ctx.Err() != nil {
					return nil // stopped by the end of the test, perhaps while opening
				}
				return err
			})
			eventually(t, "nothing left of the parking", func() bool {
				ord, err := q.subjectCounts(context.Background(), subjOrdered+".>")
				if err != nil {
					t.Fatal(err)
				}
				sch, err := q.subjectCounts(context.Background(), subjSchedules+".>")
				if err != nil {
					t.Fatal(err)
				}
				return len(ord) == 0 && len(sch) == 0 && keyRecords(context.Background(), t, q) == 0
			})
			// What the killed processes left, counted as the lane starts,
			// and what this one resolved of it: no blocked key.
			eventually(t, "the lane counting no blocked key", func() bool {
				n, lanes := w.blockedKeys(SubscriptionKey{"team-a", "ledger"})
				if n < 0 {
					t.Errorf("%d blocked keys", n)
				}
				return n == 0 && lanes == 1
			})
			mu.Lock()
			defer mu.Unlock()
			checkKeyOrder(t, got)
		})
	}
}

// checkKeyOrder checks a run's lines: per key, the events delivered in
// publish order, a repeat only right after itself; a1 failing once, as
// attempt 1, and delivered as attempt 2; the others delivered as attempt 1.
func checkKeyOrder(t *testing.T, lines []string) {
	t.Helper()
	last := map[byte]int{}
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) != 3 {
			t.Fatalf("line %q", l)
		}
		id, attempt := f[1], f[2]
		if f[0] == "failed" {
			if id != "a1" || attempt != "1" {
				t.Errorf("%q failed; only a1's first attempt fails", l)
			}
			continue
		}
		n, _ := strconv.Atoi(id[1:])
		if n < last[id[0]] {
			t.Errorf("%s came after %s%d: out of order in %q", id, id[:1], last[id[0]], lines)
		}
		last[id[0]] = n
		if want := map[bool]string{true: "2", false: "1"}[id == "a1"]; attempt != want {
			t.Errorf("%s delivered as attempt %s, want %s", id, attempt, want)
		}
	}
	t.Logf("%s", strings.Join(lines, "; "))
}

// startChild starts cmd with its output read line by line.
func startChild(t *testing.T, cmd *exec.Cmd) *laneProcess {
	t.Helper()
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &laneProcess{cmd: cmd, lines: make(chan string, 1024)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { p.kill() })
	return p
}
