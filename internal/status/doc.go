// Package status carries delivery health from the dispatcher back into the
// WebhookEndpoints' and Subscriptions' status, and turns the delivery engine's
// signals into Kubernetes Events.
//
// Every dispatcher process runs a Reporter. It:
//
//   - publishes its engine's Snapshot every ReportEvery into the JetStream KV
//     bucket HL_STATS, one key per process ("p.<process>.<epoch>"). The figures
//     are totals since the process started, so a lost or repeated report is
//     harmless: the next one supersedes it.
//   - follows the endpoints' status and hookline.io/enable annotation: a new
//     annotation value re-enables the endpoint in its engine (Engine.Enable),
//     and a Disabled=True decided by another replica disables it here too
//     (Engine.Disable), so every replica holds a disabled endpoint's deliveries.
//   - records Events for the engine's signals, at most one per object and
//     reason per EventWindow; what happens in between is summed up in the next.
//
// One process at a time, the holder of a Lease, also writes status:
//
//   - it reads every process's report and merges them (engine.Merge) with the
//     base: the folded figures of processes that are gone. A report that says it
//     is the process's last (written on a clean shutdown), or that has not been
//     refreshed for GoneAfter, is folded into the base once: the base lists the
//     keys it holds and is written with compare-and-set before the key is
//     deleted, so neither a crash between the two nor two writers at once can
//     count a process twice. A process that was folded while still alive (cut
//     off from NATS for longer than GoneAfter) notices its key is gone and
//     reports under a new key only what it counted since.
//   - it computes each object's part of status (status.delivery, the
//     Delivering, Degraded and Disabled conditions, status.lastHandledEnable)
//     with pure functions (compute.go) and applies it with server-side apply
//     under the field manager "hookline-dispatcher". The operator applies Ready,
//     Reconciling, Stalled, observedGeneration and signing under its own manager
//     (and reads Disabled to set Ready; docs/status.md); conditions are a map
//     keyed by type, so neither writer touches the other's.
//   - it writes an object at most once per WriteInterval, and not at all when
//     the computed status equals what the object already shows, however fast
//     the figures change.
//
// Disabling is sticky: once status says Disabled=True, only a new value of
// the hookline.io/enable annotation clears it. Each process reports which
// annotation value it has applied per endpoint, and the writer counts a
// process's disable only if that process had applied the value the writer is
// acting on, so a report taken before the re-enable cannot disable the
// endpoint again; no clocks are compared.
package status
