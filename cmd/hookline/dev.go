//go:build dev

// The local control plane (envtest-style etcd and kube-apiserver) is linked only into
// development builds (`make dev`, `go build -tags dev`): the shipped binary and image
// carry no test machinery.

package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/hookline/hookline/internal/devstack"
	"github.com/hookline/hookline/internal/process"
)

func init() {
	register("dev", "run the whole pipeline locally (a local control plane when no cluster is configured)", runDev)
}

func runDev(args []string) error {
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	var opts devstack.Options
	fs.BoolVar(&opts.Embedded, "embedded", false, "start a local control plane even when a cluster is configured")
	fs.StringVar(&opts.Namespace, "namespace", "hookline-demo", "namespace for the samples")
	fs.StringVar(&opts.APIListen, "api-listen", "127.0.0.1:8080", "address of the dispatcher's publishing API")
	fs.StringVar(&opts.ReceiverListen, "receiver-listen", "127.0.0.1:9000", "address of the demo receiver")
	fs.StringVar(&opts.Dir, "state-dir", "", "directory for the kubeconfig and logs (default bin/dev in the repository)")
	opts.LogOptions = process.BindLogFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	opts.Out = os.Stdout
	ctx, stop := devSignals()
	defer stop()
	return devstack.Run(ctx, opts)
}

// devSignals returns a context that ends on the first SIGINT, SIGTERM or SIGHUP, and
// keeps catching them until hookline dev returns, so a second Ctrl-C or a closed terminal
// cannot kill it halfway through stopping etcd and kube-apiserver (envtest starts them in
// their own process group: they never see the terminal's signals and outlive a killed
// parent).
//
// SIGPIPE is ignored: with `make dev | tee dev.log`, Ctrl-C ends tee too, and the next
// write to stdout ("Stopping hookline dev…") would otherwise kill the process before its
// clean-up. Writes to the closed pipe fail with EPIPE instead, which the output ignores.
func devSignals() (context.Context, context.CancelFunc) {
	signal.Ignore(syscall.SIGPIPE)
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
}
