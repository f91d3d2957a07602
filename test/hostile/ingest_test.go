package hostile

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/hookline/hookline/internal/controlplane"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/server"
)

// queuePublisher stores events in the real queue and counts what reached it.
type queuePublisher struct{ calls atomic.Int64 }

func (p *queuePublisher) Publish(c context.Context, ev server.Event) (server.PublishResult, error) {
	p.calls.Add(1)
	res, err := q.PublishEvent(c, queue.Event(ev))
	return server.PublishResult{Duplicate: res.Duplicate}, err
}

// storedEvents is the number of events in the queue's event stream.
func storedEvents() uint64 {
	js, err := jetstream.New(q.Conn())
	Expect(err).NotTo(HaveOccurred())
	s, err := js.Stream(ctx, "HL_EVENTS")
	Expect(err).NotTo(HaveOccurred())
	info, err := s.Info(ctx)
	Expect(err).NotTo(HaveOccurred())
	return info.State.Msgs
}

// grant creates a ServiceAccount bound to rule in ns and returns its token.
func grant(ns, name string, rule rbacv1.PolicyRule) string {
	token, err := controlplane.ServiceAccountToken(ctx, clientset, ns, name, rule)
	Expect(err).NotTo(HaveOccurred())
	return token
}

func jwtOf(header, claims string) string {
	enc := base64.RawURLEncoding.EncodeToString
	sig := make([]byte, 64)
	_, _ = rand.Read(sig)
	return enc([]byte(header)) + "." + enc([]byte(claims)) + "." + enc(sig)
}

func nested(depth int) string {
	return `{"type":"a.b","data":` + strings.Repeat("[", depth) + strings.Repeat("]", depth) + `}`
}

func batchOf(n int, event string) string {
	evs := make([]string, n)
	for i := range evs {
		evs[i] = strings.ReplaceAll(event, "ID", fmt.Sprintf("e%d", i))
	}
	return `{"events":[` + strings.Join(evs, ",") + `]}`
}

// attack is one hostile request.
type attack struct {
	method, path, contentType, body string
	token                           func() string // nil: no Authorization header
	header                          map[string]string
	contentLength                   int64 // announced instead of the body's length, when set
}

var _ = Describe("Hostile ingest", Ordered, func() {
	var (
		ns, other         string
		publisher, reader string
		addr              string
		pub               *queuePublisher
		storedBefore      uint64
	)
	BeforeAll(func() {
		ns, other = newNamespace("hostile-ingest-"), newNamespace("hostile-other-")
		publisher = grant(ns, "publisher", rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"events"}, Verbs: []string{"create"}})
		reader = grant(ns, "reader", rbacv1.PolicyRule{APIGroups: []string{"hookline.io"}, Resources: []string{"subscriptions/attempts"}, Verbs: []string{"get"}})
		pub = &queuePublisher{}
		h, err := server.NewHandler(server.Options{
			Publisher: pub, Deliveries: q,
			// Every subscription name exists here; the admin cases are about who may ask.
			SubscriptionUID: func(_, name string) (string, bool) { return "uid-" + name, true },
			Authorizer:      server.NewKubernetesAuthorizer(clientset, server.KubernetesAuthorizerOptions{FailureBurst: 1000}),
		})
		Expect(err).NotTo(HaveOccurred())
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		srv := server.NewHTTPServer(h, server.Limits{})
		go func() { _ = srv.Serve(server.LimitListener(ln, 0)) }()
		DeferCleanup(srv.Close)
		addr = ln.Addr().String()
	})
	BeforeEach(func() {
		storedBefore = storedEvents()
		pub.calls.Store(0)
	})

	events := func() string { return "/v1/namespaces/" + ns + "/events" }
	valid := `{"type":"invoice.paid","data":{"n":1}}`
	pubTok := func() string { return publisher }

	DescribeTable("the dispatcher refuses the request and stores nothing",
		func(a func() attack, status int) {
			at := a()
			var body io.Reader = strings.NewReader(at.body)
			req, err := http.NewRequest(at.method, "http://"+addr+at.path, body)
			Expect(err).NotTo(HaveOccurred())
			if at.contentLength > 0 {
				req.ContentLength = at.contentLength
				req.Body = io.NopCloser(io.LimitReader(strings.NewReader(at.body), int64(len(at.body))))
			}
			ct := at.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
			if at.token != nil {
				req.Header.Set("Authorization", "Bearer "+at.token())
			}
			for k, v := range at.header {
				req.Header.Set(k, v)
			}
			c := &http.Client{Timeout: 20 * time.Second}
			resp, err := c.Do(req)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				Expect(resp.StatusCode).To(Equal(status), string(b))
				if status != http.StatusRequestHeaderFieldsTooLarge {
					Expect(resp.Header.Get("Content-Type")).To(Equal("application/json"))
				}
			} else {
				// The server may close the connection while an oversized body is still
				// being sent; that too is a refusal.
				Expect(status).To(Equal(http.StatusRequestEntityTooLarge), err.Error())
			}
			Expect(pub.calls.Load()).To(BeZero(), "nothing reaches the queue")
			Expect(storedEvents()).To(Equal(storedBefore), "nothing is stored")
		},
		// Authentication and authorization.
		Entry("no token", func() attack { return attack{method: "POST", path: events(), body: valid} }, 401),
		Entry("a random token", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string { return "hunter2" }}
		}, 401),
		Entry("a forged JWT", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string {
				return jwtOf(`{"alg":"RS256"}`, fmt.Sprintf(`{"sub":"system:serviceaccount:kube-system:admin","exp":%d}`, time.Now().Add(time.Hour).Unix()))
			}}
		}, 401),
		Entry("an unsigned JWT (alg none)", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string { return jwtOf(`{"alg":"none"}`, `{"sub":"admin"}`) }}
		}, 401),
		Entry("an expired JWT", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string { return jwtOf(`{"alg":"RS256"}`, `{"exp":1000000000}`) }}
		}, 401),
		Entry("a 20 KiB token", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string { return strings.Repeat("a", 20<<10) }}
		}, 401),
		Entry("a publisher of another namespace", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/" + other + "/events", body: valid, token: pubTok}
		}, 403),
		Entry("a reader publishing", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: func() string { return reader }}
		}, 403),
		Entry("a publisher reading dead letters", func() attack {
			return attack{method: "GET", path: "/v1/namespaces/" + ns + "/subscriptions/s/dead", token: pubTok}
		}, 403),
		Entry("a publisher replaying", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/" + ns + "/subscriptions/s/replay", token: pubTok}
		}, 403),
		Entry("a reader replaying", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/" + ns + "/subscriptions/s/replay", token: func() string { return reader }}
		}, 403),
		// Shape of the request.
		Entry("a namespace that is not a name", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/Kube_System/events", body: valid, token: pubTok}
		}, 400),
		Entry("GET on the events", func() attack { return attack{method: "GET", path: events(), token: pubTok} }, 405),
		Entry("an unknown path", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/" + ns + "/secrets", body: valid, token: pubTok}
		}, 404),
		Entry("a path escaping the API", func() attack {
			return attack{method: "POST", path: "/v1/namespaces/../../metrics", body: valid, token: pubTok}
		}, 404),
		Entry("text/plain", func() attack {
			return attack{method: "POST", path: events(), body: valid, contentType: "text/plain", token: pubTok}
		}, 415),
		Entry("form encoding", func() attack {
			return attack{method: "POST", path: events(), body: "type=a.b", contentType: "application/x-www-form-urlencoded", token: pubTok}
		}, 415),
		Entry("100 KiB of headers", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: pubTok, header: map[string]string{"X-Pad": strings.Repeat("p", 100<<10)}}
		}, 431),
		// Size.
		Entry("a 300 KiB event", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","data":"` + strings.Repeat("x", 300<<10) + `"}`, token: pubTok}
		}, 413),
		Entry("an announced 1 GiB body", func() attack {
			return attack{method: "POST", path: events(), body: valid, token: pubTok, contentLength: 1 << 30}
		}, 413),
		Entry("a 2 MiB batch", func() attack {
			return attack{method: "POST", path: events() + ":batch", body: batchOf(8, `{"type":"a.b","id":"ID","data":"`+strings.Repeat("x", 250<<10)+`"}`), token: pubTok}
		}, 413),
		Entry("101 events in a batch", func() attack {
			return attack{method: "POST", path: events() + ":batch", body: batchOf(101, `{"type":"a.b","id":"ID","data":{}}`), token: pubTok}
		}, 400),
		// JSON.
		Entry("data nested 65 levels", func() attack { return attack{method: "POST", path: events(), body: nested(65), token: pubTok} }, 400),
		Entry("data nested 10,000 levels", func() attack { return attack{method: "POST", path: events(), body: nested(10000), token: pubTok} }, 400),
		Entry("invalid UTF-8", func() attack {
			return attack{method: "POST", path: events(), body: "{\"type\":\"a.b\",\"data\":\"\xff\xfe\"}", token: pubTok}
		}, 400),
		Entry("two JSON values", func() attack { return attack{method: "POST", path: events(), body: valid + valid, token: pubTok} }, 400),
		Entry("trailing garbage", func() attack { return attack{method: "POST", path: events(), body: valid + " <script>", token: pubTok} }, 400),
		Entry("an array instead of an event", func() attack { return attack{method: "POST", path: events(), body: "[" + valid + "]", token: pubTok} }, 400),
		Entry("a repeated type field", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","type":"c.d","data":{}}`, token: pubTok}
		}, 400),
		Entry("null data", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","data":null}`, token: pubTok}
		}, 400),
		// Fields.
		Entry("an event type with a newline", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b\nX-Injected: 1","data":{}}`, token: pubTok}
		}, 400),
		Entry("an event type with a wildcard", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"invoice.*","data":{}}`, token: pubTok}
		}, 400),
		Entry("an id with a slash", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","id":"../../etc","data":{}}`, token: pubTok}
		}, 400),
		Entry("an id of 257 characters", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","id":"` + strings.Repeat("i", 257) + `","data":{}}`, token: pubTok}
		}, 400),
		Entry("a time that is not RFC 3339", func() attack {
			return attack{method: "POST", path: events(), body: `{"type":"a.b","time":"yesterday","data":{}}`, token: pubTok}
		}, 400),
		Entry("a batch repeating an id", func() attack {
			return attack{method: "POST", path: events() + ":batch", body: `{"events":[{"type":"a.b","id":"x","data":{}},{"type":"a.b","id":"x","data":{}}]}`, token: pubTok}
		}, 400),
		Entry("a batch with one bad event among good ones", func() attack {
			return attack{method: "POST", path: events() + ":batch", body: `{"events":[{"type":"a.b","data":{}},{"type":"","data":{}},{"type":"c.d","data":{}}]}`, token: pubTok}
		}, 400),
	)

	It("still accepts the publisher's valid event (the refusals above were not blanket)", func() {
		req, _ := http.NewRequest("POST", "http://"+addr+events(), strings.NewReader(valid))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+publisher)
		resp, err := http.DefaultClient.Do(req)
		Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		Expect(resp.StatusCode).To(Equal(http.StatusAccepted))
		Expect(storedEvents()).To(Equal(storedBefore + 1))
	})
})
