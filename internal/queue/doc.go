// Package queue is hookline's durable queue: events accepted by the API, the
// deliveries fanned out from them, scheduled retries, dead deliveries and the
// attempt log, all kept in NATS JetStream.
//
// The same code runs against a nats-server embedded in the dispatcher (file
// store on a volume, no network listener unless asked) and against an
// external JetStream cluster; only Open differs.
//
// Calls go one way: the engine consumes. OpenFanout hands out batches of
// events for the engine to match and Store; OpenDeliveries hands out jobs
// (Jobs) and ordered lanes (Lanes) for it to range over. The queue never
// calls back into the engine.
//
// The shape follows what was measured (see DESIGN.md, "Queue engine"):
//
//   - Events land on one work-queue stream. A single fan-out consumer reads
//     them, the caller matches subscriptions, and one delivery per match is
//     republished to a work-queue stream with a deterministic Nats-Msg-Id;
//     the event is acked only after every republish is stored. A crash at any
//     point therefore duplicates work but never loses it. The server keeps
//     each id in memory for the deliveries' window, as long as the queue's
//     own republishes need (deliveryDedupeWindow), and the fan-out pauses
//     while the heap is close to the memory limit (memgate.go).
//   - All unordered deliveries are consumed by one durable consumer, however
//     many endpoints there are, because per-subscription consumers do not
//     scale.
//   - Retries and short holds that wait longer than a moment do not sit in a
//     consumer (they would fill MaxAckPending): they become JetStream
//     message schedules ("@at", whole seconds, rounded up) on a subject
//     unique to the attempt, which the server republishes onto the
//     endpoint's delivery subject when due.
//   - Deliveries to an endpoint that is down for an unknown time (circuit
//     open, disabled, suspended) are parked instead: stored on one plain
//     subject per endpoint and subscription, with no schedule, unique
//     subject or message id, so the server's memory does not grow with the
//     backlog. Unpark moves them back, at a pace, once the endpoint can take
//     them; Relocate moves a subscription's backlog when it points at
//     another endpoint.
//   - Everything that waits follows the subscription's current endpoint:
//     the engine retargets a delivery (Job.Retarget) before it retries,
//     holds or parks it. Dead letters and the attempt log are kept per
//     Subscription object (its UID); the engine removes them, a deleted
//     subscription's parked deliveries and its ordered lane (Kept, Forget,
//     PurgeParked, RemoveOrdered).
//   - The fan-out also stores each event in the retained events (a stream
//     kept by age and size, retained.go) before it acknowledges it, so they
//     can be listed by namespace, type and time, and a recovery
//     (recover.go) can send them through a subscription's lane again.
//   - Subscriptions that need ordering get their own lane and a consumer
//     with MaxAckPending=1, where a retry is a delayed NAK that holds the
//     messages behind it. A lane is pulled only by the replica that owns its
//     endpoint's partition (laneowner.go). On a lane ordered per key
//     (keyed.go) a failure blocks only its key instead: the retry is
//     scheduled and the key's later deliveries are parked on a subject of
//     their own until it is resolved (keypark.go). The lane's reader counts
//     the blocked keys, all of them, from the stream (keycount.go).
//
// Delivery is at least once. Consumer acks are persisted asynchronously by
// the server, so after a crash already-handled deliveries can come back; the
// delivery id stays stable so receivers can de-duplicate. The acks of
// handled events and unordered deliveries are also sent up to 20 ms late, a
// batch at a time, so a work queue drained as fast as it fills keeps its
// file-store block (lateack.go); a crash in those 20 ms repeats what they
// acknowledge, Close sends them first.
//
// The attempt log is not on that path: RecordAttempt buffers in memory and
// a flusher stores each subscription's entries as one batch about every
// 250 ms (Close flushes). A crash loses at most the last ~250 ms of
// attempt-log entries; the deliveries themselves are not affected.
package queue
