package queue

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"
)

// seedEvents stores n events of team-a, e0 to e<n-1>, in the queue cfg
// opens, and closes it again.
func seedEvents(t *testing.T, cfg Config, n int) {
	t.Helper()
	q := openTest(t, cfg)
	defer q.Close()
	evs := make([]Event, n)
	for i := range evs {
		evs[i] = testEvent("team-a", fmt.Sprintf("e%d", i))
	}
	if _, err := q.PublishEvents(context.Background(), evs); err != nil {
		t.Fatal(err)
	}
}

// startTestChild runs this test binary again with env added, for a child that
// the init of a crash test recognises, and waits for its first line to be
// hello. It returns the child, to kill, and the lines that follow.
func startTestChild(t *testing.T, env []string, hello string) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run", "^$")
	cmd.Env = append(os.Environ(), env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stdout)
	if !lines.Scan() || lines.Text() != hello {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("child: %q, want %q", lines.Text(), hello)
	}
	return cmd, lines
}

// redeliver runs the fan-out and concurrency delivery workers on q, as a
// restarted dispatcher does, until both work queues are empty, counting each
// delivery handed out by its event id into seen. The fan-out's events come
// back after its ack wait (30 s), hence the long deadline.
func redeliver(t *testing.T, q *Queue, concurrency int, seen map[string]int) {
	t.Helper()
	var mu sync.Mutex
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	wg.Go(func() { _ = runFanout(ctx, q, toEndpoint("billing", "erp")) })
	wg.Go(func() {
		_ = runDeliveries(ctx, q, concurrency, func(_ context.Context, j *Job) {
			mu.Lock()
			seen[j.Delivery().Event.ID]++
			mu.Unlock()
			_ = j.Done()
		})
	})
	deadline := time.Now().Add(3 * time.Minute)
	for streamMsgs(t, q, streamEvents) > 0 || streamMsgs(t, q, streamDeliveries) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d events and %d delivery messages left after the restart",
				streamMsgs(t, q, streamEvents), streamMsgs(t, q, streamDeliveries))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
