package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestSendTestPostsToTheEndpoint(t *testing.T) {
	var method, uri string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		method, uri = r.Method, r.URL.RequestURI()
		if r.URL.Path == "/v1/namespaces/shop/webhookendpoints/down/test" {
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":{"status":409,"message":"endpoint not ready"}}`))
			return
		}
		_, _ = w.Write([]byte(`{"delivered":true,"statusCode":200}`))
	}))
	defer srv.Close()
	if err := runSendTest([]string{"--server", srv.URL, "-n", "shop", "--endpoint", "billing", "--type", "invoice.paid", "--format", "CloudEventsBinary"}); err != nil {
		t.Fatal(err)
	}
	if method != http.MethodPost || uri != "/v1/namespaces/shop/webhookendpoints/billing/test?format=CloudEventsBinary&type=invoice.paid" {
		t.Errorf("sent %s %s", method, uri)
	}
	if err := runSendTest([]string{"--server", srv.URL, "-n", "shop", "--endpoint", "down"}); err == nil || !strings.Contains(err.Error(), "409") {
		t.Errorf("a refused test send returned %v, want the dispatcher's answer", err)
	}
	if err := runSendTest([]string{"--server", srv.URL}); err == nil || !strings.Contains(err.Error(), "--endpoint") {
		t.Errorf("no --endpoint: %v", err)
	}
}
