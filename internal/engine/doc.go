// Package engine is the dispatcher's delivery engine: it fans accepted
// events out to the subscriptions that match them and delivers each one to
// its endpoint, signed, with retries, over the durable queue. It consumes
// the queue (consume.go): it ranges over the queue's event batches, jobs and
// ordered lanes; the queue never calls back into it. What an attempt's
// result means is decided by a pure function (settle.go: decide) and then
// applied.
//
// Deliveries follow their subscription: each is retargeted to the
// subscription's current endpoint before it is sent, retried, held or
// parked, and a re-pointed subscription's parked backlog is moved along
// (unpark.go). The sweep (sweep.go) removes what the queue keeps for deleted
// subscriptions. A filter that fails on an event makes a FilterError dead
// letter (match.go).
//
// The engine keeps endpoints apart. One shared consumer feeds every
// unordered delivery to a per-endpoint in-memory queue of bounded size; each
// endpoint has at most maxInFlight sends at once, paced by its rate limit, so a
// slow or dead endpoint uses its own slots and nobody else's (the goroutines
// that run the sends are shared and kept for the next one: senders.go). What does
// not fit is held (put back on disk, no attempt spent) and comes back at the
// endpoint's pace. Ordered subscriptions arrive one delivery at a time on
// their queue lanes and are sent in place.
//
// Each endpoint has a circuit breaker: after repeated consecutive failures
// the circuit opens and deliveries are parked (put aside on disk, no attempt
// spent, nothing in memory); after a cool-down that grows from seconds to
// minutes one probe delivery goes through, and its outcome closes or reopens
// the circuit. An endpoint that has done nothing but fail for its
// disableAfter, or that answers 410 Gone or webhook-delivery: disable, is
// disabled until Enable; its backlog is kept, parked. Parked deliveries come
// back, at the endpoint's pace, once it can take them (unpark.go).
//
// Figures per subscription and endpoint (Snapshot) are per-process totals
// with a process id, so the status writer can merge replicas idempotently
// (Merge); state changes go to an Observer for Events; Prometheus metrics
// carry bounded labels.
package engine
