// Command profdispatcher is the dispatcher as `hookline dispatcher` assembles it
// (internal/dispatcher.Run), taking the flags the benchmark passes, plus a loopback
// listener that starts and stops CPU profiles, so `bench -profile-dir` can profile each
// phase of the real workload. The released binary serves no pprof; cmd/hookline is a
// main package and cannot be imported, so the defaults below mirror its flags'.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/hookline/hookline/internal/dispatcher"
	"github.com/hookline/hookline/internal/operator"
	"github.com/hookline/hookline/internal/queue"
)

type cidrs []string

func (c *cidrs) String() string     { return strings.Join(*c, ",") }
func (c *cidrs) Set(v string) error { *c = append(*c, v); return nil }

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "profdispatcher:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("profdispatcher", flag.ContinueOnError)
	var cfg dispatcher.Config
	var durability, kubeconfig, profileListen string
	var allow cidrs
	fs.StringVar(&cfg.Listen, "listen", ":8080", "address of the publishing and admin API")
	fs.StringVar(&cfg.MetricsListen, "metrics-listen", ":9090", "address of the Prometheus metrics endpoint")
	fs.StringVar(&cfg.Queue.DataDir, "data-dir", "", "where the embedded queue stores events")
	fs.StringVar(&durability, "durability", "default", "default or always")
	fs.StringVar(&cfg.Auth, "auth", "kubernetes", "kubernetes or none")
	fs.Var(&allow, "allow-cidr", "destination range to allow despite the SSRF guard (repeatable)")
	fs.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file")
	fs.StringVar(&profileListen, "profile-listen", "127.0.0.1:0", "loopback address serving POST /start?file=PATH and POST /stop")
	logOpts := operator.BindLogFlags(fs)
	// Taking "dispatcher" first lets the benchmark start this program and bin/hookline
	// with the same command line.
	if len(os.Args) < 2 || os.Args[1] != "dispatcher" {
		return errors.New("usage: profdispatcher dispatcher [flags]")
	}
	if err := fs.Parse(os.Args[2:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	cfg.Queue.Embedded = true
	cfg.Queue.MaxRequestTimeout = time.Minute
	cfg.MaxBodyBytes = 256 << 10
	switch durability {
	case "default":
		cfg.Queue.Sync = queue.SyncDefault
	case "always":
		cfg.Queue.Sync = queue.SyncAlways
	default:
		return fmt.Errorf("--durability=%q: choose default or always", durability)
	}
	cfg.AllowCIDRs = allow
	cfg.Logger = operator.NewLogger(logOpts, os.Stderr)
	ctrl.SetLogger(cfg.Logger)
	restCfg, err := operator.RESTConfig(kubeconfig)
	if err != nil {
		return err
	}
	go func() {
		err := http.ListenAndServe(profileListen, profiler())
		fmt.Fprintln(os.Stderr, "profdispatcher: profile listener:", err)
	}()
	return dispatcher.Run(ctrl.SetupSignalHandler(), restCfg, cfg)
}

func profiler() http.Handler {
	var (
		mu sync.Mutex
		f  *os.File
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if f != nil {
			http.Error(w, "a profile is already running", http.StatusConflict)
			return
		}
		out, err := os.Create(r.URL.Query().Get("file"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if err := pprof.StartCPUProfile(out); err != nil {
			out.Close()
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		f = out
	})
	mux.HandleFunc("POST /stop", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if f == nil {
			http.Error(w, "no profile is running", http.StatusConflict)
			return
		}
		pprof.StopCPUProfile()
		if err := f.Close(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		f = nil
	})
	return mux
}
