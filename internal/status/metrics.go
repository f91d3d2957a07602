package status

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hookline/hookline/internal/queue"
)

// metrics are the status writer's figures for alerting: a status that stops being written
// shows stale health, and a backlog that only grows means deliveries fall behind. Only the
// lease holder writes them.
type metrics struct {
	writes  *prometheus.CounterVec
	backlog *prometheus.GaugeVec
}

// Outcomes of a status write (the outcome label of hookline_status_writes_total).
const (
	writeOK     = "written"
	writeGone   = "gone"
	writeFailed = "failed"
)

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hookline_status_writes_total",
			Help: "Status writes of WebhookEndpoints and Subscriptions by the status writer, by kind and outcome: written, gone (the object was deleted), failed.",
		}, []string{"kind", "outcome"}),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "hookline_endpoint_backlog",
			Help: "Deliveries waiting for an endpoint (queued, in flight or parked), as the status writer last read them from the queue.",
		}, []string{"namespace", "endpoint"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.writes, m.backlog} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering status metrics: %w", err)
		}
	}
	return m, nil
}

// wrote counts one status write; a nil m (a writer built without metrics) counts nothing.
func (m *metrics) wrote(kind, outcome string) {
	if m != nil {
		m.writes.WithLabelValues(kind, outcome).Inc()
	}
}

// setBacklog replaces the backlog figures with bl's: endpoints no longer in it drop out.
func (m *metrics) setBacklog(bl queue.Backlog) {
	if m == nil {
		return
	}
	m.backlog.Reset()
	for k, n := range bl.Endpoints {
		m.backlog.WithLabelValues(k.Namespace, k.Endpoint).Set(float64(n))
	}
}
