package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/go-logr/logr"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/receiver"
	"github.com/hookline/hookline/internal/signing"
)

func init() {
	register("listen", "receive webhooks locally, verify their signatures and print them", runListen)
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func runListen(args []string) error {
	fs := flag.NewFlagSet("listen", flag.ContinueOnError)
	addr := fs.String("listen", "127.0.0.1:9000", "address to receive deliveries on")
	var secrets stringList
	fs.Var(&secrets, "secret", "a whsec_ key to verify with (repeatable)")
	endpoint := fs.String("endpoint", "", "verify with the keys of this WebhookEndpoint, as namespace/name, read from the cluster and followed through rotations")
	kubeconfig := fs.String("kubeconfig", "", "kubeconfig for --endpoint; empty uses $KUBECONFIG")
	failWith := fs.Int("fail-with", 0, "answer every delivery with this HTTP status (e.g. 503) to see retries")
	if err := fs.Parse(args); err != nil {
		return err
	}
	for _, s := range secrets {
		if _, err := signing.ParseSecret(s); err != nil {
			return fmt.Errorf("--secret: %w", err)
		}
	}

	ctx := ctrl.SetupSignalHandler()
	var keys func() []string
	if len(secrets) > 0 {
		keys = func() []string { return secrets }
	}
	if *endpoint != "" {
		ns, name, ok := strings.Cut(*endpoint, "/")
		if !ok || ns == "" || name == "" {
			return fmt.Errorf("--endpoint must be namespace/name, got %q", *endpoint)
		}
		cfg, err := process.RESTConfig(*kubeconfig)
		if err != nil {
			return err
		}
		c, err := client.New(cfg, client.Options{Scheme: process.Scheme()})
		if err != nil {
			return err
		}
		if keys, err = receiver.FollowEndpoint(ctx, c, ns, name, 2*time.Second, logr.Discard()); err != nil {
			return err
		}
	}
	r := &receiver.Receiver{OnDelivery: func(d receiver.Delivery) {
		dup := ""
		if d.Duplicate {
			dup = " (again: delivered at least once)"
		}
		fmt.Printf("%s %s %s %s%s\n", d.Received.Format(time.TimeOnly), d.ID, d.Type, d.Body, dup)
	}}
	r.Secrets = keys
	if keys == nil {
		fmt.Fprintln(os.Stderr, "No --secret or --endpoint given: signatures are not verified.")
	}
	r.FailWith(*failWith)

	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", *addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "Listening for webhooks on http://%s/\n", ln.Addr())
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdown)
	}()
	if err := srv.Serve(ln); err != http.ErrServerClosed {
		return err
	}
	return nil
}
