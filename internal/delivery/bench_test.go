package delivery

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// benchData is a typical event payload of about 1 KiB.
var benchData = []byte(`{"invoice":{"id":"in_1QeXb2","customer":"cus_9s8d7f6g","currency":"eur","amount_due":42000,"amount_paid":42000,"status":"paid","lines":[` +
	strings.Repeat(`{"sku":"plan-pro-monthly","quantity":1,"unit_amount":14000,"description":"Pro plan"},`, 9) +
	`{"sku":"seat","quantity":3,"unit_amount":0,"description":"Seats"}],"metadata":{"order":"A-1029","region":"eu-west"}}}`)

func benchMessage(f Format) Message {
	m := testMessage()
	m.Data = benchData
	m.Format = f
	return m
}

var sink []byte

func BenchmarkAppendBody(b *testing.B) {
	for _, f := range []Format{StandardWebhooks, CloudEventsStructured, CloudEventsBinary} {
		b.Run(f.String(), func(b *testing.B) {
			m := benchMessage(f)
			b.SetBytes(int64(m.bodySize()))
			b.ReportAllocs()
			for b.Loop() {
				sink = AppendBody(make([]byte, 0, m.bodySize()), &m)
			}
		})
	}
}

// BenchmarkSend compares Send against the least a Go program can do to POST
// the same body: a tuned http.Client and a prebuilt request body and headers.
// The receiver runs in the same process, so both share the two cores with
// it; the ratio between the sub-benchmarks is the number to read.
const benchParallelism = 16 // goroutines per core: deliveries wait on the network

func benchReceiver() *httptest.Server {
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
}

// plainPost is the baseline: what a Go program minimally does to POST a
// prebuilt, presigned body with a tuned http.Client.
type plainPost struct {
	client  *http.Client
	url, id string
	ts, sig string
	body    []byte
}

func newPlainPost(url string) *plainPost {
	m := benchMessage(StandardWebhooks)
	body := AppendBody(nil, &m)
	return &plainPost{
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: DefaultMaxIdleConnsPerHost}},
		url:    url, id: m.ID, body: body,
		ts:  strconv.FormatInt(t0.Unix(), 10),
		sig: hmacSigner(m.ID, t0, body),
	}
}

func (p *plainPost) do() error {
	req, _ := http.NewRequestWithContext(context.Background(), http.MethodPost, p.url, bytes.NewReader(p.body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", p.id)
	req.Header.Set("Webhook-Timestamp", p.ts)
	req.Header.Set("Webhook-Signature", p.sig)
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.Body.Close()
}

func BenchmarkSend(b *testing.B) {
	srv := benchReceiver()
	defer srv.Close()

	b.Run("net-http-baseline", func(b *testing.B) {
		pp := newPlainPost(srv.URL)
		defer pp.client.CloseIdleConnections()
		b.ReportAllocs()
		b.SetParallelism(benchParallelism)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := pp.do(); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})

	for _, bc := range []struct {
		name   string
		format Format
		sign   Signer
	}{
		{"hookline-StandardWebhooks-hmac", StandardWebhooks, hmacSigner},
		{"hookline-StandardWebhooks-nosign", StandardWebhooks, func(string, time.Time, []byte) string { return "v1,x" }},
		{"hookline-CloudEventsBinary-hmac", CloudEventsBinary, hmacSigner},
	} {
		b.Run(bc.name, func(b *testing.B) {
			p := NewPool(PoolOptions{})
			defer p.CloseIdleConnections()
			tg := newTestTarget(b, p, TargetConfig{URL: srv.URL, Sign: bc.sign})
			m := benchMessage(bc.format)
			b.ReportAllocs()
			b.SetParallelism(benchParallelism)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if res := Send(context.Background(), tg, m, t0); res.Verdict != Delivered {
						b.Errorf("%+v", res)
						return
					}
				}
			})
		})
	}
}

// BenchmarkSendVsNetHTTP alternates a Send and a baseline POST in every
// iteration, so both see the same load on a shared machine, and reports the
// ratio of their wall times: the cost of hookline's body building, signing
// (HMAC), header handling and response classification over a bare POST.
func BenchmarkSendVsNetHTTP(b *testing.B) {
	srv := benchReceiver()
	defer srv.Close()
	pp := newPlainPost(srv.URL)
	defer pp.client.CloseIdleConnections()
	p := NewPool(PoolOptions{})
	defer p.CloseIdleConnections()
	tg := newTestTarget(b, p, TargetConfig{URL: srv.URL})
	m := benchMessage(StandardWebhooks)

	var sendNS, plainNS atomic.Int64
	b.SetParallelism(benchParallelism)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			if res := Send(context.Background(), tg, m, t0); res.Verdict != Delivered {
				b.Errorf("%+v", res)
				return
			}
			mid := time.Now()
			if err := pp.do(); err != nil {
				b.Error(err)
				return
			}
			sendNS.Add(int64(mid.Sub(start)))
			plainNS.Add(int64(time.Since(mid)))
		}
	})
	b.ReportMetric(float64(sendNS.Load())/float64(plainNS.Load()), "send/plain")
}
