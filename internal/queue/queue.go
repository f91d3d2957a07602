package queue

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Queue is an open connection to hookline's streams. Its methods are safe for
// concurrent use.
type Queue struct {
	cfg Config
	log logr.Logger

	srv *server.Server // nil for an external server
	nc  *nats.Conn
	js  jetstream.JetStream
	// ajs publishes the attempt log. Its own context keeps the log's
	// fire-and-forget publishes (and their error handler) apart from the
	// publishes whose outcome a caller waits for.
	ajs jetstream.JetStream
	// alog buffers the attempt log (attempts.go).
	alog attemptLog

	events, deliveries, dead, attempts, holds jetstream.Stream
	// retained is nil when retention is off (retained.go).
	retained jetstream.Stream
	// recKV holds recoveries' progress, opened on first use (recover.go).
	recMu sync.Mutex
	recKV jetstream.KeyValue

	lanes lanes
	// keyCache bounds the blocked keys a keyed lane keeps in memory;
	// 0 is keyCacheMax (keypark.go).
	keyCache  int
	closeOnce sync.Once
	// closed silences the attempt log's error handler: publishes still
	// pending when the connection closes time out later, when nobody is
	// left to care.
	closed atomic.Bool
	// group batches concurrent single events under SyncAlways
	// (groupcommit.go); nil otherwise. stopGroup ends it.
	group     *groupCommit
	stopGroup context.CancelFunc
	// memory pauses the fan-out close to the memory limit (memgate.go).
	memory *memoryGate
	// groupsOn lets the fan-out store groups: every live replica reads
	// them (group.go, Deliveries.followGroups).
	groupsOn atomic.Bool
	// acks sends the acknowledgements of handled messages together, a
	// moment late (lateack.go).
	acks *lateAcks
}

// pingInterval is how often the client pings the server it is connected to.
const pingInterval = 5 * time.Second

// publishTimeout bounds the wait for an async publish's acknowledgement.
const publishTimeout = 30 * time.Second

// Open starts the embedded server if asked, connects, and creates or updates
// the streams, so it is safe to call on every start.
func Open(ctx context.Context, cfg Config, log logr.Logger) (*Queue, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, log: log, memory: newMemoryGate(), acks: newLateAcks(log, ackDelay)}
	q.lanes.init()
	ok := false
	defer func() {
		if !ok {
			q.Close()
		}
	}()

	opts := []nats.Option{
		nats.Name("hookline"),
		// The dispatcher cannot work without its queue: keep trying rather
		// than give up and leave a process that looks alive.
		nats.MaxReconnects(-1),
		nats.DrainTimeout(10 * time.Second),
		// A dead or paused server is noticed after two missed pings (~10 s)
		// instead of the default four minutes, so the client moves to
		// another node of the cluster and keeps its partitions.
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(2),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Error(err, "Disconnected from NATS")
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) { log.Info("Reconnected to NATS") }),
	}
	url := cfg.URL
	if cfg.Embedded {
		if err := q.startEmbedded(); err != nil {
			return nil, err
		}
		opts = append(opts, nats.InProcessServer(q.srv))
		url = ""
	} else {
		conn, err := cfg.connectOptions(log)
		if err != nil {
			return nil, fmt.Errorf("connecting to NATS: %w", err)
		}
		opts = append(opts, conn...)
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if cfg.Embedded {
			return nil, fmt.Errorf("connecting to NATS: %w", err)
		}
		return nil, cfg.explainConnectError(err)
	}
	q.nc = nc

	// The window bounds memory held for unacknowledged publishes; past it,
	// publishers wait (stall) instead of growing the window.
	if q.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(publishTimeout)); err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	if q.ajs, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncTimeout(30*time.Second),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			if !q.closed.Load() {
				log.Error(err, "Recording a delivery attempt failed", "subject", m.Subject)
			}
		})); err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	if err := q.ensureStreams(ctx); err != nil {
		return nil, err
	}
	// Interrupted or failed, the move resumes at the next Open; nothing it
	// has not moved yet is lost meanwhile, only not seen (migrate.go).
	if err := q.migrate(ctx); err != nil {
		log.Error(err, "Moving data of the old subject layout stopped; it resumes when the queue is opened again")
	}
	if cfg.Embedded && cfg.Sync == SyncAlways {
		gctx, stop := context.WithCancel(context.WithoutCancel(ctx))
		q.group, q.stopGroup = newGroupCommit(q), stop
		go q.group.run(gctx)
	}
	ok = true
	return q, nil
}

func (q *Queue) startEmbedded() error {
	opts := &server.Options{
		ServerName: "hookline",
		JetStream:  true,
		StoreDir:   q.cfg.DataDir,
		SyncAlways: q.cfg.Sync == SyncAlways,
		DontListen: q.cfg.Listen == "",
		NoSigs:     true,
	}
	if q.cfg.Listen != "" {
		host, port, err := net.SplitHostPort(q.cfg.Listen)
		if err != nil {
			return fmt.Errorf("parsing Listen %q: %w", q.cfg.Listen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("parsing Listen %q: %w", q.cfg.Listen, err)
		}
		opts.Host, opts.Port = host, p
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("configuring the embedded NATS server: %w", err)
	}
	srv.SetLoggerV2(serverLogger{q.log.WithName("nats-server")}, false, false, false)
	go srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return errors.New("the embedded NATS server did not become ready within 30s")
	}
	q.srv = srv
	return nil
}

// deliveryDedupeWindow is how long the deliveries stream recognises a message
// id. The server keeps every id of the window in memory (about 120 bytes each),
// one per delivery and retry published, so memory grows with the rate times the
// window: a burst of 1,000,000 deliveries holds 1,000,000 ids for the window.
// The ids only have to catch a republish of the same message by this queue, and
// both kinds come soon:
//
//   - a fan-out repeated because its event was not acknowledged: the event
//     comes back after its lease (fanoutAckWait) or its NAK's delay (at most
//     maxNakBackoff), and its publishes waited at most publishTimeout;
//   - a retry, hold or dead letter published again because the delivery's
//     acknowledgement was lost: the delivery comes back after its lease
//     (AckWait) and its next attempt ends within MaxRequestTimeout, which is
//     shorter than AckWait, so within 2×AckWait of the first.
//
// After a restart the server rebuilds the ids of the messages still stored
// within the window, so a repeat after a crash is caught when the process was
// down for less than the window minus those bounds; the fan-out takeover's
// late stores by a cut-off holder (fantakeover.go) are dropped when they
// arrive within the window. It stays shorter than the events' window, the
// producers' promise.
func (q *Queue) deliveryDedupeWindow() time.Duration {
	return min(q.cfg.DedupeWindow, max(fanoutAckWait+maxNakBackoff+publishTimeout, 2*q.cfg.AckWait))
}

func (q *Queue) ensureStreams(ctx context.Context) error {
	cfgs := []jetstream.StreamConfig{{
		Name:        streamEvents,
		Description: "hookline: accepted events waiting to be fanned out",
		Subjects:    []string{subjEvents + ".>"},
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  q.cfg.DedupeWindow,
		// Group commit under SyncAlways publishes atomic batches
		// (groupcommit.go); the embedded server supports them.
		AllowAtomicPublish: q.cfg.Embedded,
	}, {
		Name:              streamDeliveries,
		Description:       "hookline: deliveries waiting for an attempt, scheduled retries and parked deliveries",
		Subjects:          []string{subjDeliver + ".>", subjOrdered + ".>", subjSchedules + ".>", subjParked + ".>"},
		Retention:         jetstream.WorkQueuePolicy,
		Duplicates:        q.deliveryDedupeWindow(),
		AllowMsgSchedules: true,
		// The fan-out stores deliveries as atomic batches under SyncAlways
		// (groupcommit.go).
		AllowAtomicPublish: q.cfg.Embedded,
		// Schedules need roll-ups: the server marks each schedule message
		// as a subject roll-up so a newer schedule replaces an older one.
		AllowRollup: true,
	}, {
		Name:        streamDead,
		Description: "hookline: deliveries that ran out of attempts, kept for replay",
		Subjects:    []string{subjDead + ".>"},
		Retention:   jetstream.LimitsPolicy,
		MaxAge:      q.cfg.DeadMaxAge,
		Duplicates:  2 * time.Minute,
	}, {
		Name:              streamAttempts,
		Description:       "hookline: recent delivery attempts per subscription",
		Subjects:          []string{subjAttempts + ".>"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: int64(q.cfg.AttemptLog),
		MaxAge:            q.cfg.DeadMaxAge,
	}, {
		Name:              streamHolds,
		Description:       "hookline: holds of the delivery in flight on each ordered lane",
		Subjects:          []string{subjHolds + ".>"},
		Retention:         jetstream.LimitsPolicy,
		MaxMsgsPerSubject: 1,
	}}
	streams := make([]jetstream.Stream, len(cfgs))
	for i, sc := range cfgs {
		sc.Storage = jetstream.FileStorage
		sc.Replicas = q.cfg.Replicas
		s, err := q.js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			if q.cfg.Replicas > 1 && strings.Contains(err.Error(), "insufficient resources") {
				return fmt.Errorf("creating or updating stream %s with %d replicas (--nats-replicas): %w: the cluster needs at least %d JetStream servers with room for it", sc.Name, sc.Replicas, err, sc.Replicas)
			}
			return fmt.Errorf("creating or updating stream %s: %w", sc.Name, err)
		}
		streams[i] = s
	}
	q.events, q.deliveries, q.dead, q.attempts, q.holds = streams[0], streams[1], streams[2], streams[3], streams[4]
	if q.retaining() {
		sc := q.retainedStreamConfig()
		sc.Storage = jetstream.FileStorage
		sc.Replicas = q.cfg.Replicas
		s, err := q.js.CreateOrUpdateStream(ctx, sc)
		if err != nil {
			return fmt.Errorf("creating or updating stream %s: %w", sc.Name, err)
		}
		q.retained = s
	}
	return nil
}

// Close stops ordered lanes, drains the connection (pending publishes and
// acks are flushed) and shuts the embedded server down. Run* loops should be
// stopped first by cancelling their context.
func (q *Queue) Close() {
	q.closeOnce.Do(q.close)
}

func (q *Queue) close() {
	if q.stopGroup != nil {
		q.stopGroup()
	}
	q.lanes.stopAll()
	q.alog.close()
	q.acks.close()
	q.closed.Store(true)
	if q.nc != nil {
		closed := make(chan struct{})
		q.nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
		if err := q.nc.Drain(); err != nil {
			q.nc.Close()
		} else {
			<-closed
		}
	}
	if q.srv != nil {
		q.srv.Shutdown()
		q.srv.WaitForShutdown()
	}
}

// Conn is the client connection, for health checks and tests.
func (q *Queue) Conn() *nats.Conn { return q.nc }

// ClientURL is where other clients reach the embedded server, or "" when it
// is in-process only or the server is external.
func (q *Queue) ClientURL() string {
	if q.srv == nil || q.cfg.Listen == "" {
		return ""
	}
	return q.srv.ClientURL()
}

// serverLogger routes the embedded server's log into logr. Notices are
// routine (startup banner, stream recovery) and go to V(1).
type serverLogger struct{ log logr.Logger }

func (l serverLogger) Noticef(format string, v ...any) { l.log.V(1).Info(fmt.Sprintf(format, v...)) }
func (l serverLogger) Warnf(format string, v ...any)   { l.log.Info(fmt.Sprintf(format, v...)) }
func (l serverLogger) Fatalf(format string, v ...any) {
	l.log.Error(nil, fmt.Sprintf(format, v...), "fatal", true)
}
func (l serverLogger) Errorf(format string, v ...any) { l.log.Error(nil, fmt.Sprintf(format, v...)) }
func (l serverLogger) Debugf(format string, v ...any) { l.log.V(2).Info(fmt.Sprintf(format, v...)) }
func (l serverLogger) Tracef(format string, v ...any) { l.log.V(3).Info(fmt.Sprintf(format, v...)) }

var _ server.Logger = serverLogger{}

// shortWait bounds the requests of a message's resolution. They do not
// inherit the caller's cancellation: a delivery whose HTTP attempt finished
// during shutdown should still record its outcome if the server answers.
const shortWait = 10 * time.Second

func resolveContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), shortWait)
}

// await waits for every future and returns the first error. Publishes after
// a failed one still run: they are independent and each has its own id.
func await(ctx context.Context, futures []jetstream.PubAckFuture) error {
	var first error
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}
