package devstack

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/go-logr/logr"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/hookline/hookline/internal/app/dispatcher"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/queue"
	"github.com/hookline/hookline/internal/receiver"
)

// demoObjects are an endpoint that delivers to the local receiver and a subscription that
// sends it every event.
func demoObjects(receiverAddr string) []*unstructured.Unstructured {
	ep := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.io/v1alpha1", "kind": "WebhookEndpoint",
		"metadata": map[string]any{"name": "local-receiver"},
		"spec": map[string]any{
			"url":               "http://" + receiverAddr + "/",
			"allowInsecureHTTP": true,
			"signing":           map[string]any{"rotation": map[string]any{"every": "24h", "overlap": "1h"}},
		},
	}}
	sub := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "hookline.io/v1alpha1", "kind": "Subscription",
		"metadata": map[string]any{"name": "local-all"},
		"spec": map[string]any{
			"endpointRef": map[string]any{"name": "local-receiver"},
			"eventTypes":  []any{"*"},
		},
	}}
	return []*unstructured.Unstructured{ep, sub}
}

// startReceiver listens for deliveries to the demo endpoint and prints them. Signatures are
// verified with the endpoint's live keys once the operator has generated them.
func startReceiver(ctx context.Context, c client.Client, opts Options, log logr.Logger) (string, error) {
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", opts.ReceiverListen)
	if err != nil {
		return "", fmt.Errorf("the demo receiver cannot listen on %s (use --receiver-listen): %w", opts.ReceiverListen, err)
	}
	r := &receiver.Receiver{OnDelivery: func(d receiver.Delivery) {
		again := ""
		if d.Duplicate {
			again = "  (again: hookline delivers at least once)"
		}
		fmt.Fprintf(opts.Out, "  %s  %s  %-16s %s  signature ok%s\n", d.Received.Format(time.TimeOnly), d.ID, d.Type, d.Body, again)
	}}
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		// The keys exist once the operator reconciled the endpoint; until then deliveries
		// cannot be made either, because the dispatcher needs the same keys.
		for ctx.Err() == nil {
			keys, err := receiver.FollowEndpoint(ctx, c, opts.Namespace, "local-receiver", 2*time.Second, log)
			if err == nil {
				r.Secrets = keys
				return
			}
			time.Sleep(500 * time.Millisecond)
		}
	}()
	return ln.Addr().String(), nil
}

// startDispatcher runs the dispatcher in this process with an embedded queue under the state
// directory, no publisher authentication (it listens on loopback only) and loopback
// destinations allowed, and waits until it answers /readyz.
func startDispatcher(ctx context.Context, cfg *rest.Config, opts Options) (<-chan error, error) {
	logFile, err := os.Create(filepath.Join(opts.Dir, "dispatcher.log"))
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		defer logFile.Close()
		errc <- dispatcher.Run(ctx, cfg, dispatcher.Config{
			Listen:        opts.APIListen,
			MetricsListen: "",
			Queue: queue.Config{
				Embedded:          true,
				DataDir:           filepath.Join(opts.Dir, "queue"),
				MaxRequestTimeout: time.Minute,
			},
			Namespaces: []string{opts.Namespace},
			Auth:       "none",
			AllowCIDRs: []string{"127.0.0.0/8", "::1/128"},
			Logger:     process.NewLogger(opts.LogOptions, logFile),
		})
	}()
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		select {
		case err := <-errc:
			return nil, fmt.Errorf("starting the dispatcher: %w", err)
		case <-time.After(200 * time.Millisecond):
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+opts.APIListen+"/readyz", nil)
		if err != nil {
			return nil, err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return errc, nil
			}
		}
	}
	return nil, fmt.Errorf("the dispatcher did not become ready on %s within a minute; see %s", opts.APIListen, filepath.Join(opts.Dir, "dispatcher.log"))
}
