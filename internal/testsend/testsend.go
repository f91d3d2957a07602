// Package testsend sends test events: one signed sample event to one endpoint, now,
// outside subscriptions, the delivery queue and retries. The result is recorded in the
// endpoint's own attempt log (queue.EndpointLog) with attempt number 0, which marks a
// test.
package testsend

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"k8s.io/utils/clock"

	"github.com/hookline/hookline/internal/catalog"
	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/registry"
	"github.com/hookline/hookline/internal/server"
)

// Endpoints finds an endpoint; *registry.Registry is one.
type Endpoints interface {
	Endpoint(ns, name string) *registry.Endpoint
}

// AttemptLog records and reads attempt logs; *queue.Queue is one.
type AttemptLog interface {
	RecordAttempt(ctx context.Context, sub queue.SubscriptionID, a queue.Attempt) error
	RecentAttempts(ctx context.Context, sub queue.SubscriptionID, limit int) ([]queue.Attempt, error)
}

// Sender implements server.TestSender.
type Sender struct {
	Endpoints Endpoints
	// Catalog, when set, supplies the sample data: the EventType's example.
	Catalog *catalog.Catalog
	Log     AttemptLog
	Clock   clock.PassiveClock
}

var _ server.TestSender = (*Sender)(nil)

// minimalData is the data of a test event whose type has no example.
var minimalData = json.RawMessage(`{}`)

// SendTest sends one sample event of req.Type to the endpoint and waits for the answer.
func (s *Sender) SendTest(ctx context.Context, req server.TestRequest) (server.TestResult, error) {
	ep := s.Endpoints.Endpoint(req.Namespace, req.Endpoint)
	if ep == nil {
		return server.TestResult{}, fmt.Errorf("%w: WebhookEndpoint %s/%s does not exist, or this dispatcher does not serve it", server.ErrEndpointNotFound, req.Namespace, req.Endpoint)
	}
	if !ep.Ready || ep.Target == nil {
		return server.TestResult{}, fmt.Errorf("%w: WebhookEndpoint %s/%s cannot be delivered to (%s: %s); fix it first, kubectl describe webhookendpoint %s -n %s",
			server.ErrEndpointNotReady, req.Namespace, req.Endpoint, ep.Reason, ep.Message, req.Endpoint, req.Namespace)
	}
	clk := s.Clock
	if clk == nil {
		clk = clock.RealClock{}
	}
	now := clk.Now().UTC()
	id := "test_" + server.NewID(now)[len("msg_"):]
	res := server.TestResult{EventID: id, Type: req.Type, DataFrom: "minimal", Data: minimalData}
	if s.Catalog != nil {
		if e := s.Catalog.Lookup(req.Namespace, req.Type); e != nil && len(e.Example) > 0 {
			res.DataFrom, res.Data = "example", e.Example
		}
	}
	// A test's webhook-id is its own: receivers that de-duplicate must not drop it, nor
	// later take a real event for it.
	res.WebhookID = "test_" + delivery.WebhookIDOf(req.Namespace, id, string(ep.UID))
	msg := delivery.Message{
		ID: id, WebhookID: res.WebhookID, Type: req.Type, Time: now, Data: res.Data,
		Namespace: req.Namespace, Subscription: "test", Format: format(req.Format),
	}
	r := delivery.SendTimeout(ctx, ep.Target, msg, now, ep.Timeout)
	res.StatusCode = r.StatusCode
	res.LatencySeconds = r.Latency.Seconds()
	res.Delivered = r.Verdict == delivery.Delivered
	if r.Err != nil {
		res.Error = r.Err.Error()
	} else if !res.Delivered {
		res.Error = fmt.Sprintf("HTTP %d", r.StatusCode)
	}
	res.Response, res.ResponseTruncated = string(r.Body), r.BodyTruncated
	if len(res.Response) > 1024 {
		// The API answers with the first bytes; the attempt log keeps more.
		res.Response, res.ResponseTruncated = res.Response[:1024], true
	}
	err := s.Log.RecordAttempt(ctx, queue.EndpointLog(req.Namespace, req.Endpoint, string(ep.UID)), queue.Attempt{
		Time: now, Attempt: 0, StatusCode: r.StatusCode, Latency: r.Latency, Error: res.Error, Response: string(r.Body), EventID: id,
		Headers: r.Headers,
	})
	if err != nil {
		return res, fmt.Errorf("the test was sent (%s), but could not be recorded: %w", describe(res), err)
	}
	return res, nil
}

// EndpointAttempts returns the endpoint's test sends, newest first.
func (s *Sender) EndpointAttempts(ctx context.Context, ns, name string, limit int) ([]queue.Attempt, error) {
	ep := s.Endpoints.Endpoint(ns, name)
	if ep == nil {
		return nil, fmt.Errorf("%w: WebhookEndpoint %s/%s does not exist, or this dispatcher does not serve it", server.ErrEndpointNotFound, ns, name)
	}
	return s.Log.RecentAttempts(ctx, queue.EndpointLog(ns, name, string(ep.UID)), limit)
}

func format(f string) delivery.Format {
	switch f {
	case "CloudEventsStructured":
		return delivery.CloudEventsStructured
	case "CloudEventsBinary":
		return delivery.CloudEventsBinary
	}
	return delivery.StandardWebhooks
}

func describe(r server.TestResult) string {
	if r.Error != "" {
		return r.Error
	}
	return fmt.Sprintf("HTTP %d in %s", r.StatusCode, time.Duration(r.LatencySeconds*float64(time.Second)))
}
