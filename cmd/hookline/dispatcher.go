package main

import (
	"flag"
	"fmt"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/hookline/hookline/internal/app/dispatcher"
)

func init() {
	register("dispatcher", "run the dispatcher (publishing API, queue, signed deliveries with retries)", runDispatcher)
}

func runDispatcher(args []string) error {
	fs := flag.NewFlagSet("dispatcher", flag.ContinueOnError)
	flags := dispatcher.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg, restCfg, err := flags.Config()
	if err != nil {
		return err
	}
	ctrl.SetLogger(cfg.Logger)
	return dispatcher.Run(ctrl.SetupSignalHandler(), restCfg, cfg)
}
