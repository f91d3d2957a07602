package wakeup

import (
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"
	clocktesting "k8s.io/utils/clock/testing"
)

func TestAtFiresOnceAtTheRequestedTime(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	s := New(clk)
	key := types.NamespacedName{Namespace: "ns", Name: "ep"}

	s.At(key, clk.Now().Add(time.Hour))
	s.At(key, clk.Now().Add(2*time.Hour)) // replaces the first request
	if at, ok := s.Pending(key); !ok || !at.Equal(clk.Now().Add(2*time.Hour)) {
		t.Fatalf("Pending() = %v, %v; want the replacing request", at, ok)
	}

	clk.Step(time.Hour)
	select {
	case e := <-s.events:
		t.Fatalf("woke %v at the replaced time", e.Object)
	default:
	}

	clk.Step(time.Hour)
	select {
	case e := <-s.events:
		if e.Object.NamespacedName != key {
			t.Fatalf("woke %v, want %v", e.Object, key)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up at the requested time")
	}
	if _, ok := s.Pending(key); ok {
		t.Error("a fired wake-up is still pending")
	}
}

func TestForgetCancels(t *testing.T) {
	clk := clocktesting.NewFakeClock(time.Now())
	s := New(clk)
	key := types.NamespacedName{Namespace: "ns", Name: "gone"}
	s.At(key, clk.Now().Add(time.Minute))
	s.Forget(key)
	clk.Step(time.Hour)
	select {
	case e := <-s.events:
		t.Fatalf("woke %v after Forget", e.Object)
	default:
	}
	if clk.HasWaiters() {
		t.Error("the timer was not stopped")
	}
}
