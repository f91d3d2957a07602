// Package operator assembles the controller-runtime manager that runs hookline's
// reconcilers, for the `hookline operator` command, `hookline dev` and the tests.
package operator

import (
	"context"
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/client-go/rest"
	"k8s.io/utils/clock"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/hookline/hookline/controllers"
	"github.com/hookline/hookline/internal/process"
	"github.com/hookline/hookline/internal/workload"
)

// Options configure the operator.
type Options struct {
	Kubeconfig              string
	MetricsAddr             string
	ProbeAddr               string
	LeaderElect             bool
	LeaderElectionNamespace string
	Namespaces              []string // empty: all namespaces
	Logger                  logr.Logger
	Clock                   clock.WithDelayedExecution // nil: the real clock

	// Dispatcher, when set, has the operator run the dispatcher as a managed workload with
	// these settings (defaulted and validated by NewManager; Image must be set). Nil leaves
	// the dispatcher alone (--manage-dispatcher=false).
	Dispatcher *workload.Settings

	// AllowUnlabelledSecrets turns off, for the whole installation, the rule
	// that a Secret whose value a WebhookEndpoint sends must carry
	// hookline.io/endpoint-secret: "true" (--require-secret-opt-in=false).
	AllowUnlabelledSecrets bool

	// SkipNameValidation allows a second manager in the same process, as tests that
	// restart the operator need; controller names are otherwise unique per process.
	SkipNameValidation bool
}

// NewManager builds a manager with hookline's reconcilers registered.
//
//nolint:contextcheck // Setup's context only registers field indexes on a cache not yet started, which never waits; the manager's life is Start's context.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	mgrOpts := ctrl.Options{
		Scheme:                  process.Scheme(),
		Logger:                  opts.Logger,
		Metrics:                 metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:  opts.ProbeAddr,
		LeaderElection:          opts.LeaderElect,
		LeaderElectionID:        "hookline-operator.hookline.io",
		LeaderElectionNamespace: opts.LeaderElectionNamespace,
		Controller:              config.Controller{SkipNameValidation: &opts.SkipNameValidation},
	}
	if len(opts.Namespaces) > 0 {
		mgrOpts.Cache.DefaultNamespaces = map[string]cache.Config{}
		for _, ns := range opts.Namespaces {
			mgrOpts.Cache.DefaultNamespaces[ns] = cache.Config{}
		}
	}
	var dispatcher workload.Settings
	if opts.Dispatcher != nil {
		dispatcher = opts.Dispatcher.Default("")
		if err := dispatcher.Validate(); err != nil {
			return nil, fmt.Errorf("dispatcher settings: %w", err)
		}
		mgrOpts.Cache.ByObject = controllers.DispatcherCacheByObject()
	}
	mgr, err := ctrl.NewManager(cfg, mgrOpts)
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	if err := setup(context.Background(), mgr, opts.Clock, opts.AllowUnlabelledSecrets); err != nil {
		return nil, err
	}
	if opts.Dispatcher != nil {
		if err := SetupDispatcher(mgr, dispatcher); err != nil {
			return nil, err
		}
	}
	if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
		return nil, err
	}
	if err := mgr.AddReadyzCheck("readyz", healthz.Ping); err != nil {
		return nil, err
	}
	return mgr, nil
}

// Setup registers hookline's indexes and reconcilers with mgr, with the
// default rules.
func Setup(ctx context.Context, mgr ctrl.Manager, clk clock.WithDelayedExecution) error {
	return setup(ctx, mgr, clk, false)
}

func setup(ctx context.Context, mgr ctrl.Manager, clk clock.WithDelayedExecution, allowUnlabelledSecrets bool) error {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if err := controllers.SetupIndexes(ctx, mgr); err != nil {
		return fmt.Errorf("registering indexes: %w", err)
	}
	if err := (&controllers.WebhookEndpointReconciler{
		Client:   mgr.GetClient(),
		Clock:    clk,
		Recorder: mgr.GetEventRecorder("hookline-operator"),

		AllowUnlabelledSecrets: allowUnlabelledSecrets,
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up WebhookEndpoint controller: %w", err)
	}
	if err := (&controllers.SubscriptionReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up Subscription controller: %w", err)
	}
	if err := (&controllers.EventTypeReconciler{Client: mgr.GetClient()}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up EventType controller: %w", err)
	}
	return nil
}

// SetupDispatcher registers the controller that runs the dispatcher with settings s
// (defaulted and valid). The manager's cache must have been built with
// controllers.DispatcherCacheByObject.
func SetupDispatcher(mgr ctrl.Manager, s workload.Settings) error {
	if err := (&controllers.DispatcherReconciler{
		Client:   mgr.GetClient(),
		Settings: s,
		Recorder: mgr.GetEventRecorder("hookline-operator"),

		SecretReader: mgr.GetAPIReader(),
	}).SetupWithManager(mgr); err != nil {
		return fmt.Errorf("setting up the dispatcher controller: %w", err)
	}
	return nil
}

// Run runs the operator until SIGINT or SIGTERM.
func Run(opts Options) error {
	ctrl.SetLogger(opts.Logger)
	cfg, err := process.RESTConfig(opts.Kubeconfig)
	if err != nil {
		return fmt.Errorf("loading kubeconfig: %w", err)
	}
	mgr, err := NewManager(cfg, opts)
	if err != nil {
		return err
	}
	opts.Logger.Info("starting operator", "namespaces", opts.Namespaces, "leaderElection", opts.LeaderElect,
		"manageDispatcher", opts.Dispatcher != nil)
	return mgr.Start(ctrl.SetupSignalHandler())
}
