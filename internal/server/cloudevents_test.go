package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2"
	cehttp "github.com/cloudevents/sdk-go/v2/protocol/http"

	"github.com/hookline/hookline/internal/server"
)

// ceServer is the handler on a loopback listener, for the CloudEvents SDK's client.
func ceServer(t *testing.T, opts server.Options) (*batchRecorder, string) {
	pub := &batchRecorder{}
	opts.Publisher = pub
	srv := httptest.NewServer(newHandler(t, opts))
	t.Cleanup(srv.Close)
	return pub, srv.URL + "/v1/namespaces/shop/events"
}

func sdkEvent(id string) cloudevents.Event {
	ev := cloudevents.NewEvent()
	ev.SetID(id)
	ev.SetSource("/billing")
	ev.SetType("invoice.paid")
	ev.SetSubject("in_123")
	ev.SetTime(time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC))
	if err := ev.SetData(cloudevents.ApplicationJSON, map[string]any{"invoice": "in_123", "amount": 1999}); err != nil {
		panic(err)
	}
	return ev
}

func sdkSend(t *testing.T, url string, ev cloudevents.Event, structured bool) (int, string) {
	t.Helper()
	c, err := cloudevents.NewClientHTTP(cloudevents.WithTarget(url))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if structured {
		ctx = cloudevents.WithEncodingStructured(ctx)
	} else {
		ctx = cloudevents.WithEncodingBinary(ctx)
	}
	res := c.Send(ctx, ev)
	var hr *cehttp.Result
	if !cloudevents.ResultAs(res, &hr) {
		t.Fatalf("send: %v", res)
	}
	return hr.StatusCode, res.Error()
}

func checkStored(t *testing.T, pub *batchRecorder, want ...string) {
	t.Helper()
	pub.mu.Lock()
	defer pub.mu.Unlock()
	if len(pub.events) != len(want) {
		t.Fatalf("stored %d events, want %d", len(pub.events), len(want))
	}
	for i, ev := range pub.events {
		if ev.ID != want[i] || ev.Type != "invoice.paid" || ev.Namespace != "shop" ||
			!ev.Time.Equal(time.Date(2026, 11, 26, 19, 0, 0, 0, time.UTC)) {
			t.Fatalf("stored %+v", ev)
		}
		var data map[string]any
		if err := json.Unmarshal(ev.Data, &data); err != nil || data["invoice"] != "in_123" {
			t.Fatalf("data %s: %v", ev.Data, err)
		}
	}
}

func TestCloudEventsStructuredAndBinaryFromTheSDK(t *testing.T) {
	pub, url := ceServer(t, server.Options{})
	if code, msg := sdkSend(t, url, sdkEvent("ce-1"), true); code != http.StatusAccepted {
		t.Fatalf("structured: %d %s", code, msg)
	}
	if code, msg := sdkSend(t, url, sdkEvent("ce-2"), false); code != http.StatusAccepted {
		t.Fatalf("binary: %d %s", code, msg)
	}
	checkStored(t, pub, "ce-1", "ce-2")
}

func TestCloudEventsBatch(t *testing.T) {
	pub, url := ceServer(t, server.Options{})
	body, err := json.Marshal([]cloudevents.Event{sdkEvent("b-1"), sdkEvent("b-2")})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/cloudevents-batch+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Events []struct{ ID string } `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusAccepted || len(out.Events) != 2 || out.Events[1].ID != "b-2" {
		t.Fatalf("%d %+v %v", resp.StatusCode, out, err)
	}
	checkStored(t, pub, "b-1", "b-2")
}

func TestCloudEventsRefused(t *testing.T) {
	pub, _ := ceServer(t, server.Options{Schemas: testCatalog(true)})
	h := newHandler(t, server.Options{Publisher: pub, Schemas: testCatalog(true)})
	const path = "/v1/namespaces/shop/events"
	valid := `"specversion":"1.0","id":"x-1","source":"/billing","type":"invoice.paid"`
	for name, tc := range map[string]struct {
		ct, body string
		headers  map[string]string
		status   int
		field    string
	}{
		"no specversion":      {contentTypeCE, `{"id":"x","source":"/b","type":"invoice.paid","data":{}}`, nil, 400, "specversion"},
		"old specversion":     {contentTypeCE, `{"specversion":"0.3","id":"x","source":"/b","type":"invoice.paid","data":{}}`, nil, 400, "specversion"},
		"no id":               {contentTypeCE, `{"specversion":"1.0","source":"/b","type":"invoice.paid","data":{}}`, nil, 400, "id"},
		"no type":             {contentTypeCE, `{"specversion":"1.0","id":"x","source":"/b","data":{}}`, nil, 400, "type"},
		"no source":           {contentTypeCE, `{"specversion":"1.0","id":"x","type":"invoice.paid","data":{}}`, nil, 400, "source"},
		"bad time":            {contentTypeCE, `{` + valid + `,"time":"yesterday","data":{}}`, nil, 400, "time"},
		"bad id":              {contentTypeCE, `{"specversion":"1.0","id":"a/b","source":"/b","type":"invoice.paid","data":{}}`, nil, 400, "id"},
		"base64 data":         {contentTypeCE, `{` + valid + `,"data_base64":"e30="}`, nil, 415, "data_base64"},
		"xml data":            {contentTypeCE, `{` + valid + `,"datacontenttype":"application/xml","data":{}}`, nil, 415, "datacontenttype"},
		"schema":              {contentTypeCE, `{` + valid + `,"data":{"invoice":"in_1","amount":-1}}`, nil, 422, "data.amount"},
		"binary no id":        {"application/json", `{}`, map[string]string{"ce-specversion": "1.0", "ce-source": "/b", "ce-type": "invoice.paid"}, 400, "ce-id"},
		"binary no type":      {"application/json", `{}`, map[string]string{"ce-specversion": "1.0", "ce-source": "/b", "ce-id": "x"}, 400, "ce-type"},
		"binary bad time":     {"application/json", `{}`, map[string]string{"ce-specversion": "1.0", "ce-source": "/b", "ce-id": "x", "ce-type": "t.x", "ce-time": "noon"}, 400, "ce-time"},
		"binary bad spec":     {"application/json", `{}`, map[string]string{"ce-specversion": "2.0", "ce-source": "/b", "ce-id": "x", "ce-type": "t.x"}, 400, "ce-specversion"},
		"binary text body":    {"text/plain", `hi`, map[string]string{"ce-specversion": "1.0", "ce-source": "/b", "ce-id": "x", "ce-type": "t.x"}, 415, "Content-Type"},
		"binary schema":       {"application/json", `{"invoice":"in_1"}`, map[string]string{"ce-specversion": "1.0", "ce-source": "/b", "ce-id": "x", "ce-type": "invoice.paid"}, 422, "body"},
		"batch one bad":       {contentTypeCEBatch, `[{` + valid + `,"data":{"invoice":"in_1","amount":1}},{"specversion":"1.0","source":"/b","type":"t.x","data":{}}]`, nil, 400, "[1].id"},
		"batch schema":        {contentTypeCEBatch, `[{` + valid + `,"data":{"invoice":"in_1","amount":1}},{"specversion":"1.0","id":"x-2","source":"/b","type":"invoice.paid","data":{"amount":1}}]`, nil, 422, "[1].data"},
		"batch duplicate ids": {contentTypeCEBatch, `[{` + valid + `,"data":{"invoice":"in_1","amount":1}},{` + valid + `,"data":{"invoice":"in_1","amount":1}}]`, nil, 400, "[1].id"},
		"batch not array":     {contentTypeCEBatch, `{` + valid + `,"data":{}}`, nil, 400, ""},
		"batch to :batch":     {contentTypeCEBatch, `[]`, map[string]string{"path": ":batch"}, 415, "Content-Type"},
	} {
		t.Run(name, func(t *testing.T) {
			p := path
			if tc.headers["path"] != "" {
				p += tc.headers["path"]
			}
			req := httptest.NewRequestWithContext(t.Context(), http.MethodPost, p, strings.NewReader(tc.body))
			req.Header.Set("Content-Type", tc.ct)
			for k, v := range tc.headers {
				if k != "path" {
					req.Header.Set(k, v)
				}
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			e := decodeError(t, rec)
			if rec.Code != tc.status || e.Error.Field != tc.field || e.Error.Message == "" {
				t.Fatalf("%d %+v, want %d naming %q", rec.Code, e.Error, tc.status, tc.field)
			}
		})
	}
	if pub.calls != 0 {
		t.Fatalf("%d refused events were stored", pub.calls)
	}
}

const (
	contentTypeCE      = "application/cloudevents+json"
	contentTypeCEBatch = "application/cloudevents-batch+json"
)
