// Command syncalways measures what an embedded nats-server with SyncAlways (hookline's
// `--durability always`) costs per stored message, with nothing of hookline in the way:
// the two reproductions behind the group commit's threshold (internal/queue/groupcommit.go)
// and the latency floor recorded in docs/benchmarks.md.
//
//	go run ./hack/syncalways -mode batch -sizes 1,2,4,8,16,32,64
//	go run ./hack/syncalways -mode floor -rate 1000
//
// batch: N messages stored as N async publishes in flight together, against one JetStream
// atomic batch of N (which the server stages in a file store of its own, created, synced
// and removed for each batch), one group at a time; prints the time per group and the
// process's CPU time (server and client) per message.
//
// floor: three streams laid out as hookline's are per event (two work queues whose messages
// a consumer acknowledges, and so removes, at once; one limits stream), each fed one
// message per tick at -rate; prints publish → acknowledgement latency per stream. Under
// SyncAlways each store and each removal (a tombstone) is written and fsynced on its own,
// holding the stream's store lock.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookline/hookline/internal/queue/queuetest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "syncalways:", err)
		os.Exit(1)
	}
}

func run() error {
	mode := flag.String("mode", "batch", "batch or floor")
	dir := flag.String("dir", "", "store directory (default: a temporary directory, removed after)")
	syncAlways := flag.Bool("sync-always", true, "run the server with SyncAlways")
	rounds := flag.Int("rounds", 300, "batch: groups timed per size and way")
	sizeList := flag.String("sizes", "1,2,4,8,16,32,64", "batch: group sizes")
	rate := flag.Int("rate", 1000, "floor: messages per second to each stream")
	dur := flag.Duration("duration", 8*time.Second, "floor: how long to publish")
	acks := flag.Bool("acks", true, "floor: acknowledge (remove) the work queues' messages")
	flag.Parse()

	if *dir == "" {
		d, err := os.MkdirTemp("", "syncalways")
		if err != nil {
			return err
		}
		defer os.RemoveAll(d)
		*dir = d
	}
	nc, js, stop, err := queuetest.JetStream(*dir, *syncAlways)
	if err != nil {
		return err
	}
	defer stop()
	switch *mode {
	case "batch":
		var sizes []int
		for f := range strings.SplitSeq(*sizeList, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 1 {
				return fmt.Errorf("-sizes: %q is not a positive number", f)
			}
			sizes = append(sizes, n)
		}
		return batchCost(nc, js, sizes, *rounds)
	case "floor":
		return floor(js, *rate, *dur, *acks)
	}
	return fmt.Errorf("-mode %q: want batch or floor", *mode)
}

var payload = make([]byte, 1024)

func batchCost(nc *nats.Conn, js jetstream.JetStream, sizes []int, rounds int) error {
	ctx := context.Background()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Storage: jetstream.FileStorage, AllowAtomicPublish: true}); err != nil {
		return err
	}
	ways := []struct {
		name  string
		store func(n int) error
	}{
		{"async publishes in flight together", func(n int) error { return asyncGroup(js, n) }},
		{"one atomic batch", func(n int) error { return atomicBatch(nc, n) }},
	}
	for _, n := range sizes {
		for _, w := range ways {
			if n == 1 && w.name == "one atomic batch" {
				continue
			}
			lat := make([]time.Duration, rounds)
			cpu0 := cpuTime()
			start := time.Now()
			for i := range lat {
				t := time.Now()
				if err := w.store(n); err != nil {
					return err
				}
				lat[i] = time.Since(t)
			}
			rate := float64(rounds*n) / time.Since(start).Seconds()
			cpu := (cpuTime() - cpu0) / time.Duration(rounds*n)
			fmt.Printf("%-36s %3d messages: p50 %6.2f ms  p99 %6.2f ms  %6.0f messages/s  CPU %4.0f µs per message\n", w.name, n, ms(pct(lat, 50)), ms(pct(lat, 99)), rate, float64(cpu.Nanoseconds())/1000)
		}
	}
	return nil
}

func asyncGroup(js jetstream.JetStream, n int) error {
	fs := make([]jetstream.PubAckFuture, n)
	for i := range fs {
		f, err := js.PublishAsync("s.x", payload)
		if err != nil {
			return err
		}
		fs[i] = f
	}
	for _, f := range fs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		}
	}
	return nil
}

func atomicBatch(nc *nats.Conn, n int) error {
	id := nats.NewInbox()
	for i := 1; i <= n; i++ {
		m := nats.NewMsg("s.x")
		m.Data = payload
		m.Header.Set("Nats-Batch-Id", id)
		m.Header.Set("Nats-Batch-Sequence", strconv.Itoa(i))
		if i < n {
			if err := nc.PublishMsg(m); err != nil {
				return err
			}
			continue
		}
		m.Header.Set("Nats-Batch-Commit", "1")
		r, err := nc.RequestMsg(m, 30*time.Second)
		if err != nil {
			return err
		}
		var ack struct {
			Error *jetstream.APIError `json:"error"`
		}
		if err := json.Unmarshal(r.Data, &ack); err != nil {
			return err
		}
		if ack.Error != nil {
			return ack.Error
		}
	}
	return nil
}

func floor(js jetstream.JetStream, rate int, dur time.Duration, acks bool) error {
	ctx := context.Background()
	streams := []struct {
		name string
		ret  jetstream.RetentionPolicy
	}{{"EVENTS", jetstream.WorkQueuePolicy}, {"DELIVERIES", jetstream.WorkQueuePolicy}, {"RETAINED", jetstream.LimitsPolicy}}
	for _, s := range streams {
		st, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: s.name, Subjects: []string{s.name + ".>"}, Storage: jetstream.FileStorage, Retention: s.ret})
		if err != nil {
			return err
		}
		if s.ret != jetstream.WorkQueuePolicy || !acks {
			continue
		}
		c, err := st.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			return err
		}
		cc, err := c.Consume(func(m jetstream.Msg) { _ = m.Ack() })
		if err != nil {
			return err
		}
		defer cc.Stop()
	}
	var (
		mu    sync.Mutex
		lat   = map[string][]time.Duration{}
		first error
		wg    sync.WaitGroup
	)
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	for end := time.Now().Add(dur); time.Now().Before(end); {
		<-tick.C
		for _, s := range streams {
			t := time.Now()
			f, err := js.PublishAsync(s.name+".x", payload)
			if err != nil {
				return err
			}
			wg.Go(func() {
				var err error
				select {
				case <-f.Ok():
				case err = <-f.Err():
				}
				mu.Lock()
				defer mu.Unlock()
				lat[s.name] = append(lat[s.name], time.Since(t))
				if first == nil {
					first = err
				}
			})
		}
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for _, s := range streams {
		l := lat[s.name]
		fmt.Printf("%-10s %6d publishes (%.0f/s): p50 %6.2f ms  p99 %6.2f ms  max %6.2f ms\n", s.name, len(l), float64(len(l))/dur.Seconds(), ms(pct(l, 50)), ms(pct(l, 99)), ms(pct(l, 100)))
	}
	return nil
}

func pct(l []time.Duration, p int) time.Duration {
	slices.Sort(l)
	return l[min(len(l)-1, len(l)*p/100)]
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
