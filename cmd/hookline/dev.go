//go:build dev

// The local control plane (envtest-style etcd and kube-apiserver) is linked only into
// development builds (`make dev`, `go build -tags dev`): the shipped binary and image
// carry no test machinery.

package main

import (
	"flag"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

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
	return devstack.Run(ctrl.SetupSignalHandler(), opts)
}
