package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/url"
)

func init() {
	register("send-test", "send a signed sample event to one endpoint now and show its answer", runSendTest)
}

func runSendTest(args []string) error {
	fs := flag.NewFlagSet("send-test", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	ns := fs.String("n", "default", "namespace of the endpoint")
	ep := fs.String("endpoint", "", "the WebhookEndpoint to send to (required)")
	typ := fs.String("type", "", "the sample event's type; its EventType's example is the data, else {} (default hookline.test)")
	format := fs.String("format", "", "payload format: StandardWebhooks (default), CloudEventsStructured or CloudEventsBinary")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *ep == "" {
		return fmt.Errorf("--endpoint is required, e.g. --endpoint billing")
	}
	q := url.Values{}
	if *typ != "" {
		q.Set("type", *typ)
	}
	if *format != "" {
		q.Set("format", *format)
	}
	path := "/v1/namespaces/" + url.PathEscape(*ns) + "/webhookendpoints/" + url.PathEscape(*ep) + "/test"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	out, err := callAPI(context.Background(), *api, http.MethodPost, path, nil, http.StatusOK)
	if err != nil {
		return err
	}
	fmt.Println(out)
	return nil
}
