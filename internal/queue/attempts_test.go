package queue

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestAttemptLogIsBounded(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.AttemptLog = 5
	q := openTest(t, cfg)
	ctx := context.Background()

	for i := 1; i <= 12; i++ {
		a := Attempt{Time: time.Now(), Attempt: i, StatusCode: 500, Latency: time.Duration(i) * time.Millisecond, Error: "boom"}
		if i == 12 {
			a.Response = strings.Repeat("é", MaxResponseBytes) // 2 bytes each
			a.Error = strings.Repeat("ü", MaxErrorBytes)
		}
		if err := q.RecordAttempt(ctx, sid("team-a", "billing"), a); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.RecordAttempt(ctx, sid("team-a", "other"), Attempt{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	waitStored(t, q, "team-a", "billing")
	got, err := q.RecentAttempts(ctx, sid("team-a", "billing"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 5 {
		t.Fatalf("log holds %d attempts, want 5", len(got))
	}
	for i, a := range got {
		if a.Attempt != 12-i {
			t.Errorf("entry %d is attempt %d, want %d (newest first)", i, a.Attempt, 12-i)
		}
	}
	if r := got[0].Response; len(r) > MaxResponseBytes || len(r) < MaxResponseBytes-1 || !utf8.ValidString(r) {
		t.Errorf("response kept %d bytes (valid UTF-8: %v), want it cut to %d on a rune boundary", len(r), utf8.ValidString(r), MaxResponseBytes)
	}
	if e := got[0].Error; len(e) > MaxErrorBytes || len(e) < MaxErrorBytes-1 || !utf8.ValidString(e) {
		t.Errorf("error kept %d bytes, want it cut to %d on a rune boundary", len(e), MaxErrorBytes)
	}
	if three, err := q.RecentAttempts(ctx, sid("team-a", "billing"), 3); err != nil || len(three) != 3 || three[0].Attempt != 12 {
		t.Errorf("limit 3: %v, %v", three, err)
	}

	// Buffered entries are dropped by a purge too: they must not come back
	// with the next flush.
	if err := q.RecordAttempt(ctx, sid("team-a", "billing"), Attempt{Attempt: 13}); err != nil {
		t.Fatal(err)
	}
	if err := q.Forget(ctx, sid("team-a", "billing")); err != nil {
		t.Fatal(err)
	}
	if left, err := q.RecentAttempts(ctx, sid("team-a", "billing"), 10); err != nil || len(left) != 0 {
		t.Fatalf("after purge: %d, %v", len(left), err)
	}
	time.Sleep(2 * attemptFlushEvery)
	if left, err := q.RecentAttempts(ctx, sid("team-a", "billing"), 10); err != nil || len(left) != 0 {
		t.Fatalf("a flush after the purge: %d, %v", len(left), err)
	}
	if other, err := q.RecentAttempts(ctx, sid("team-a", "other"), 10); err != nil || len(other) != 1 {
		t.Fatalf("purge touched another subscription: %d, %v", len(other), err)
	}
}

// TestAttemptLogKeepsLastBatches records one attempt per flush, the worst
// case for the number of batches: the stream keeps AttemptLog of them.
func TestAttemptLogKeepsLastBatches(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.AttemptLog = 4
	q := openTest(t, cfg)
	ctx := context.Background()
	for i := 1; i <= 7; i++ {
		if err := q.RecordAttempt(ctx, sid("ns", "quiet"), Attempt{Attempt: i}); err != nil {
			t.Fatal(err)
		}
		waitStored(t, q, "ns", "quiet")
	}
	if n := storedMessages(t, q, "ns", "quiet"); n != 4 {
		t.Errorf("stream keeps %d messages, want 4 (AttemptLog)", n)
	}
	got, err := q.RecentAttempts(ctx, sid("ns", "quiet"), 100)
	if err != nil {
		t.Fatal(err)
	}
	if s := attemptNumbers(got); s != "7 6 5 4" {
		t.Errorf("log %s, want 7 6 5 4", s)
	}
}

func TestAttemptLogFlushesOnClose(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	q := openTest(t, testConfig(dir))
	ctx := context.Background()
	for i := 1; i <= 3; i++ {
		if err := q.RecordAttempt(ctx, sid("ns", "sub"), Attempt{Attempt: i, StatusCode: 502}); err != nil {
			t.Fatal(err)
		}
	}
	q.Close()
	if err := q.RecordAttempt(ctx, sid("ns", "sub"), Attempt{Attempt: 4}); err == nil {
		t.Error("RecordAttempt after Close succeeded")
	}

	q = openTest(t, testConfig(dir))
	got, err := q.RecentAttempts(ctx, sid("ns", "sub"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := attemptNumbers(got); s != "3 2 1" {
		t.Fatalf("after reopening: %q, want 3 2 1", s)
	}
	if n := storedMessages(t, q, "ns", "sub"); n != 1 {
		t.Errorf("%d messages, want the 3 attempts in one batch", n)
	}
}

func TestAttemptLogConcurrentRecorders(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	cfg.AttemptLog = 1000
	q := openTest(t, cfg)
	ctx := context.Background()
	const recorders, each, subs = 16, 100, 4
	var wg sync.WaitGroup
	for r := range recorders {
		wg.Go(func() {
			for i := range each {
				// Error names the recorder; Attempt counts its entries.
				a := Attempt{Attempt: i, Error: fmt.Sprint(r), Response: strings.Repeat("x", 200)}
				if err := q.RecordAttempt(ctx, sid("ns", fmt.Sprint("s", r%subs)), a); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	total := 0
	for s := range subs {
		sub := fmt.Sprint("s", s)
		waitStored(t, q, "ns", sub)
		got, err := q.RecentAttempts(ctx, sid("ns", sub), 1000)
		if err != nil {
			t.Fatal(err)
		}
		if want := recorders / subs * each; len(got) != want {
			t.Errorf("%s holds %d attempts, want %d", sub, len(got), want)
		}
		// Newest first, so each recorder's entries count down.
		next := map[string]int{}
		for _, a := range got {
			if n, ok := next[a.Error]; ok && a.Attempt != n {
				t.Fatalf("%s: recorder %s's attempt %d after %d", sub, a.Error, a.Attempt, n+1)
			}
			next[a.Error] = a.Attempt - 1
		}
		msgs := storedMessages(t, q, "ns", sub)
		total += msgs
		if msgs >= len(got)/2 {
			t.Errorf("%s: %d attempts in %d messages, want them batched", sub, len(got), msgs)
		}
	}
	t.Logf("%d attempts in %d messages", recorders*each, total)
}

func TestAttemptLogBatchesAreCapped(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	q := openTest(t, cfg)
	ctx := context.Background()
	big := strings.Repeat("r", MaxResponseBytes)
	for i := 1; i <= 10; i++ {
		if err := q.RecordAttempt(ctx, sid("ns", "big"), Attempt{Attempt: i, Response: big}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 250; i++ {
		if err := q.RecordAttempt(ctx, sid("ns", "many"), Attempt{Attempt: i}); err != nil {
			t.Fatal(err)
		}
	}
	for sub, want := range map[string]int{"big": 10, "many": 250} {
		waitStored(t, q, "ns", sub)
		n, msgs := 0, 0
		err := scan(ctx, q.attempts, attemptSubject(sid("ns", sub)), time.Time{}, func(m jetstream.Msg, _ *jetstream.MsgMetadata) (bool, error) {
			as, err := decodeAttempts(nil, m.Data())
			if err != nil {
				return false, err
			}
			if len(m.Data()) > attemptBatchBytes || len(as) > attemptBatchEntries {
				t.Errorf("%s: a batch of %d bytes, %d attempts", sub, len(m.Data()), len(as))
			}
			for _, a := range as {
				n++
				if a.Attempt != n {
					t.Fatalf("%s: attempt %d stored where %d belongs", sub, a.Attempt, n)
				}
			}
			msgs++
			return true, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s: %d attempts stored, want %d", sub, n, want)
		}
		t.Logf("%s: %d attempts in %d messages", sub, n, msgs)
	}
}

func TestAttemptLogReadsSingleAttemptMessages(t *testing.T) {
	t.Parallel()
	q := openTest(t, testConfig(t.TempDir()))
	ctx := context.Background()
	subject := attemptSubject(sid("ns", "old"))
	for i := 1; i <= 3; i++ {
		if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: encodeAttempt(&Attempt{Attempt: i, Error: "old"})}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := q.js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte{9, 9}}); err != nil {
		t.Fatal(err)
	}
	for i := 4; i <= 5; i++ {
		if err := q.RecordAttempt(ctx, sid("ns", "old"), Attempt{Attempt: i}); err != nil {
			t.Fatal(err)
		}
	}
	waitStored(t, q, "ns", "old")
	got, err := q.RecentAttempts(ctx, sid("ns", "old"), 10)
	if err != nil {
		t.Fatal(err)
	}
	if s := attemptNumbers(got); s != "5 4 3 2 1" {
		t.Errorf("log %q, want 5 4 3 2 1 (the damaged message skipped)", s)
	}
	if got[4].Error != "old" {
		t.Errorf("oldest entry %+v", got[4])
	}
}

func TestAttemptBufferDropsOldest(t *testing.T) {
	// No flusher: the buffer alone, as when the server stalls.
	l := &attemptLog{running: true, subs: map[string]*attemptBuf{}, kick: make(chan struct{}, 1)}
	entry := encodeAttemptEntry(&Attempt{Response: strings.Repeat("r", 16<<10)})
	per := attemptEntryCost(entry) + attemptEntryOverhead
	fit := attemptBufferBytes / per
	for i := range fit + 10 {
		if err := l.add(nil, fmt.Sprint("s", i%3), entry); err != nil {
			t.Fatal(err)
		}
	}
	if d := l.dropped.Load(); d != 10 {
		t.Errorf("dropped %d, want 10", d)
	}
	if l.bytes > attemptBufferBytes {
		t.Errorf("buffer holds %d bytes, cap %d", l.bytes, attemptBufferBytes)
	}
	// The 10 oldest (seq 1..10) went, whichever subject they were in.
	for s, b := range l.subs {
		if first := b.entries[0].seq; first < 11 || first > 13 {
			t.Errorf("%s starts at seq %d", s, first)
		}
	}
	l.forget("s0")
	n := 0
	for _, b := range l.subs {
		n += len(b.entries)
	}
	if l.bytes != n*per {
		t.Errorf("after forget: %d bytes counted for %d entries", l.bytes, n)
	}
}

func TestCutAttemptBatches(t *testing.T) {
	big := bufferedAttempt{entry: encodeAttemptEntry(&Attempt{Response: strings.Repeat("r", MaxResponseBytes), Error: strings.Repeat("e", MaxErrorBytes)})}
	small := bufferedAttempt{entry: encodeAttemptEntry(&Attempt{Attempt: 1})}
	count := func(entries []bufferedAttempt, all bool) (sizes []int) {
		for _, b := range cutAttemptBatches(nil, "s", entries, all) {
			if n := len(encodeAttemptBatch(b.entries)); n > attemptBatchBytes {
				t.Errorf("batch of %d bytes", n)
			}
			sizes = append(sizes, len(b.entries))
		}
		return sizes
	}
	bigs := slicesRepeat(big, 5)
	if got := count(bigs, true); !cmp.Equal(got, []int{2, 2, 1}) {
		t.Errorf("big entries cut into %v", got)
	}
	if got := count(bigs, false); !cmp.Equal(got, []int{2, 2}) {
		t.Errorf("big entries, full batches only: %v", got)
	}
	smalls := slicesRepeat(small, 250)
	if got := count(smalls, true); !cmp.Equal(got, []int{100, 100, 50}) {
		t.Errorf("small entries cut into %v", got)
	}
	if got := count(smalls[:200], false); !cmp.Equal(got, []int{100, 100}) {
		t.Errorf("small entries, full batches only: %v", got)
	}
}

func TestAttemptBatchCodec(t *testing.T) {
	as := []Attempt{
		{Time: time.Date(2026, 5, 6, 7, 8, 9, 10, time.UTC), Attempt: 4, StatusCode: 500, Latency: time.Second, Error: "boom", Response: "{}", EventID: "order-1",
			Headers: "Content-Type: application/json\nWebhook-Signature: v1,****\n"},
		{Attempt: 5},
	}
	var entries [][]byte
	for i := range as {
		entries = append(entries, encodeAttemptEntry(&as[i]))
	}
	b := encodeAttemptBatch(entries)
	got, err := decodeAttempts(nil, b)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(as, got); diff != "" {
		t.Fatalf("(-want +got)\n%s", diff)
	}
	prev := []Attempt{{Attempt: 1}}
	for n := range len(b) {
		if out, err := decodeAttempts(prev, b[:n]); err == nil || len(out) != 1 {
			t.Errorf("decoding %d of %d bytes: %d attempts, %v", n, len(b), len(out), err)
		}
	}
	if _, err := decodeAttempts(nil, append(b, 0)); err == nil {
		t.Error("trailing bytes accepted")
	}

	// An entry stored before attempts carried their event id ends after the
	// response: it reads with an empty id.
	old := encodeAttemptEntry(&Attempt{Attempt: 7, StatusCode: 502, Error: "bad gateway"})
	old = old[:len(old)-2] // the empty id's and headers' length bytes
	got, err = decodeAttempts(nil, encodeAttemptBatch([][]byte{old}))
	if err != nil || len(got) != 1 || got[0] != (Attempt{Attempt: 7, StatusCode: 502, Error: "bad gateway"}) {
		t.Errorf("an entry without event id: %+v, %v", got, err)
	}
	// One stored before attempts carried their request headers ends after
	// the id: it reads with no headers.
	old = encodeAttemptEntry(&Attempt{Attempt: 8, StatusCode: 503, EventID: "order-2"})
	old = old[:len(old)-1] // the empty headers' length byte
	got, err = decodeAttempts(nil, encodeAttemptBatch([][]byte{old}))
	if err != nil || len(got) != 1 || got[0] != (Attempt{Attempt: 8, StatusCode: 503, EventID: "order-2"}) {
		t.Errorf("an entry without headers: %+v, %v", got, err)
	}
}

// TestAttemptHeadersBound: the headers are cut to MaxHeaderBytes on a line
// boundary, so an entry stays within the bound the log's batching assumes.
func TestAttemptHeadersBound(t *testing.T) {
	line := "X-Long: " + strings.Repeat("v", 91) + "\n" // 100 bytes
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", 0},
		{line, 100},
		{strings.Repeat(line, MaxHeaderBytes/100), MaxHeaderBytes / 100 * 100},
		{strings.Repeat(line, 100), MaxHeaderBytes / 100 * 100},
		{"X-One: " + strings.Repeat("v", MaxHeaderBytes) + "\n", 0},
	} {
		got := cutLines(tc.in, MaxHeaderBytes)
		if len(got) != tc.want || !strings.HasPrefix(tc.in, got) || (got != "" && !strings.HasSuffix(got, "\n")) {
			t.Errorf("cutting %d bytes: %d bytes, want %d whole lines' worth", len(tc.in), len(got), tc.want)
		}
	}
}

func slicesRepeat(e bufferedAttempt, n int) []bufferedAttempt {
	out := make([]bufferedAttempt, n)
	for i := range out {
		out[i] = e
	}
	return out
}

// waitStored waits until nothing of the subscription is buffered and what
// was published is stored.
func waitStored(t testing.TB, q *Queue, ns, sub string) {
	t.Helper()
	eventually(t, "the attempt log to be stored", func() bool {
		return q.alog.idle(attemptSubject(sid(ns, sub)))
	})
	select {
	case <-q.ajs.PublishAsyncComplete():
	case <-time.After(10 * time.Second):
		t.Fatal("attempt-log publishes not acknowledged")
	}
}

func storedMessages(t testing.TB, q *Queue, ns, sub string) int {
	t.Helper()
	subject := attemptSubject(sid(ns, sub))
	info, err := q.attempts.Info(context.Background(), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return int(info.State.Subjects[subject])
}

func attemptNumbers(as []Attempt) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprint(&b, a.Attempt)
	}
	return b.String()
}

// BenchmarkRecordAttempt records attempts over 64 subscriptions and closes
// the queue, so the time per op includes storing them.
func BenchmarkRecordAttempt(b *testing.B) {
	for _, batched := range []bool{true, false} {
		b.Run(fmt.Sprint("batched=", batched), func(b *testing.B) {
			q := openTest(b, testConfig(b.TempDir()))
			ctx := context.Background()
			a := Attempt{Time: time.Now(), Attempt: 1, StatusCode: 502, Latency: time.Millisecond, Error: "HTTP 502", Response: strings.Repeat("x", 256)}
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				sub := fmt.Sprint("s", i%64)
				if batched {
					if err := q.RecordAttempt(ctx, sid("ns", sub), a); err != nil {
						b.Fatal(err)
					}
					// Keep the buffer from overflowing, which would make
					// the figures look better by dropping: after every
					// round of full batches, wait for the flusher.
					if (i+1)%(64*attemptBatchEntries) == 0 {
						for !bufferEmpty(&q.alog) {
							time.Sleep(50 * time.Microsecond)
						}
					}
					continue
				}
				// What RecordAttempt did before batching.
				if _, err := q.ajs.PublishMsgAsync(&nats.Msg{Subject: attemptSubject(sid("ns", sub)), Data: encodeAttempt(&a)},
					jetstream.WithStallWait(time.Second)); err != nil {
					b.Fatal(err)
				}
			}
			q.Close()
			b.ReportMetric(float64(q.DroppedAttempts())/float64(b.N), "dropped/op")
		})
	}
}

func bufferEmpty(l *attemptLog) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.subs) == 0 && !l.publishing
}

// TestAttemptLogReadsSeeEveryRecordedAttempt reads the log continuously while
// attempts are recorded and flushed: every read holds each attempt recorded
// before it began, once. An entry the flusher had published and the server
// had not yet acknowledged used to be in neither the buffer nor the stream,
// so a read could lose an attempt an earlier read had shown.
func TestAttemptLogReadsSeeEveryRecordedAttempt(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t.TempDir())
	q := openTest(t, cfg)
	ctx := context.Background()
	sub := sid("team-a", "reads")
	const total = 400
	var recorded atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 1; i <= total; i++ {
			if err := q.RecordAttempt(ctx, sub, Attempt{Time: time.Now(), Attempt: i, StatusCode: 502}); err != nil {
				t.Error(err)
				return
			}
			recorded.Store(int64(i))
			time.Sleep(time.Millisecond)
		}
	}()
	reads := 0
	for {
		select {
		case <-done:
			if reads < 50 {
				t.Errorf("only %d reads ran alongside the recording", reads)
			}
			return
		default:
		}
		before := int(recorded.Load())
		got, err := q.RecentAttempts(ctx, sub, cfg.AttemptLog)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if len(got) < min(before, cfg.AttemptLog) {
			t.Fatalf("read %d began after attempt %d and holds %d attempts (%s...), want at least %d",
				reads, before, len(got), attemptNumbers(got[:min(len(got), 5)]), min(before, cfg.AttemptLog))
		}
		for k, a := range got {
			if k > 0 && a.Attempt != got[k-1].Attempt-1 {
				t.Fatalf("read %d: entry %d is attempt %d after %d: want newest first, none missing, none twice",
					reads, k, a.Attempt, got[k-1].Attempt)
			}
		}
		if len(got) > 0 && got[0].Attempt < before {
			t.Fatalf("read %d began after attempt %d and its newest is %d", reads, before, got[0].Attempt)
		}
	}
}
