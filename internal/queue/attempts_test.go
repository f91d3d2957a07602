package queue

import (
	"context"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
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
		}
		if err := q.RecordAttempt(ctx, "team-a", "billing", a); err != nil {
			t.Fatal(err)
		}
	}
	if err := q.RecordAttempt(ctx, "team-a", "other", Attempt{Attempt: 1}); err != nil {
		t.Fatal(err)
	}
	var got []Attempt
	eventually(t, "the latest attempt", func() bool {
		var err error
		got, err = q.RecentAttempts(ctx, "team-a", "billing", 100)
		return err == nil && len(got) > 0 && got[0].Attempt == 12
	})
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
	if three, err := q.RecentAttempts(ctx, "team-a", "billing", 3); err != nil || len(three) != 3 || three[0].Attempt != 12 {
		t.Errorf("limit 3: %v, %v", three, err)
	}

	if err := q.PurgeSubscription(ctx, "team-a", "billing"); err != nil {
		t.Fatal(err)
	}
	if left, err := q.RecentAttempts(ctx, "team-a", "billing", 10); err != nil || len(left) != 0 {
		t.Fatalf("after purge: %d, %v", len(left), err)
	}
	if other, err := q.RecentAttempts(ctx, "team-a", "other", 10); err != nil || len(other) != 1 {
		t.Fatalf("purge touched another subscription: %d, %v", len(other), err)
	}
}
