package queue

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// laneChildEnv makes the test binary run laneChild instead of the tests: a
// dispatcher-like process reading the ordered lane of team-a/ledger from the
// queue in $HOOKLINE_LANE_DIR, in the mode the variable names.
const laneChildEnv = "HOOKLINE_LANE_CHILD"

func init() {
	if mode := os.Getenv(laneChildEnv); mode != "" {
		os.Exit(laneChild(mode, os.Getenv("HOOKLINE_LANE_DIR")))
	}
}

// laneChild prints one line per delivery it is handed, "<what> <event>
// <attempt>", and handles it as mode says:
//
//	hold: holds every delivery briefly, as for a suspended endpoint
//	hang: takes the first and never settles it, as a send under way
//	fail2: the first two attempts fail (RetryAt), then every delivery succeeds
//
// "setup" first stores the lane and three events. It runs until killed.
func laneChild(mode, dir string) int {
	ctx := context.Background()
	q, err := Open(ctx, testConfig(dir), logr.Discard())
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	if mode == "setup" {
		if err := q.EnsureOrdered(ctx, "team-a", "ledger", "erp"); err != nil {
			fmt.Println("error", err)
			return 1
		}
		for _, id := range []string{"e1", "e2", "e3"} {
			if _, err := q.PublishEvent(ctx, testEvent("team-a", id)); err != nil {
				fmt.Println("error", err)
				return 1
			}
		}
		go func() {
			_ = runFanout(ctx, q, func(_ context.Context, ev Event) ([]Delivery, error) {
				return []Delivery{{Subscription: "ledger", SubscriptionUID: "u1", Ordered: true}}, nil
			})
		}()
		mode = "hold"
	}
	failed := 0
	_ = runDeliveries(ctx, q, 1, func(_ context.Context, j *Job) {
		d := j.Delivery()
		var err error
		switch {
		case mode == "hold":
			fmt.Println("held", d.Event.ID, d.Attempt)
			err = j.Hold(time.Now().Add(100 * time.Millisecond))
		case mode == "hang":
			fmt.Println("sending", d.Event.ID, d.Attempt)
			select {}
		case failed < 2:
			failed++
			fmt.Println("failed", d.Event.ID, d.Attempt)
			err = j.RetryAt(time.Now())
		default:
			fmt.Println("done", d.Event.ID, d.Attempt)
			err = j.Done()
		}
		if err != nil {
			fmt.Println("error", err)
		}
	})
	return 0
}

// laneProcess is one run of laneChild.
type laneProcess struct {
	cmd   *exec.Cmd
	lines chan string
}

func startLaneChild(t *testing.T, dir, mode string) *laneProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$") //nolint:gosec // G702: re-runs this test binary itself, with fixed arguments.
	cmd.Env = append(os.Environ(), laneChildEnv+"="+mode, "HOOKLINE_LANE_DIR="+dir)
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

// next waits for the child's next line.
func (p *laneProcess) next(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-p.lines:
		if !ok {
			t.Fatal("the lane process ended")
		}
		if strings.HasPrefix(l, "error") {
			t.Fatalf("lane process: %s", l)
		}
		return l
	case <-time.After(60 * time.Second):
		t.Fatal("no line from the lane process within 60s")
		return ""
	}
}

// kill ends the child with SIGKILL, as a node failure or OOM kill would.
func (p *laneProcess) kill() {
	if p.cmd.ProcessState == nil {
		_ = p.cmd.Process.Kill()
		_ = p.cmd.Wait()
	}
}

// TestOrderedLaneSurvivesSIGKILL: processes reading an ordered lane are
// killed with SIGKILL while they hold its head (twice) and while a send of
// it is under way; the next process still hands it out as attempt 1, its
// two failures count as attempts 1 and 2, it succeeds as attempt 3 of its
// policy, and only then do the events behind it come, in order, as attempt 1.
func TestOrderedLaneSurvivesSIGKILL(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for i, mode := range []string{"setup", "hold"} {
		p := startLaneChild(t, dir, mode)
		for range 3 {
			if l := p.next(t); l != "held e1 1" {
				t.Fatalf("process %d: %q, want the head held as attempt 1", i, l)
			}
		}
		p.kill()
	}
	p := startLaneChild(t, dir, "hang")
	if l := p.next(t); l != "sending e1 1" {
		t.Fatalf("%q, want the head sent as attempt 1", l)
	}
	p.kill()

	p = startLaneChild(t, dir, "fail2")
	var got []string
	for range 5 {
		got = append(got, p.next(t))
	}
	want := []string{"failed e1 1", "failed e1 2", "done e1 3", "done e2 1", "done e3 1"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("after three SIGKILLs the lane went %q, want %q", got, want)
	}
}
