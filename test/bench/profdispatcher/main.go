// Command profdispatcher is the dispatcher as `hookline dispatcher` assembles it
// (internal/app/dispatcher.Run), taking the flags the benchmark passes, plus a loopback
// listener that starts and stops CPU profiles, so `bench -profile-dir` can profile each
// phase of the real workload. The released binary serves no pprof; both bind the same
// flags through dispatcher.BindFlags.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/hookline/hookline/internal/app/dispatcher"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "profdispatcher:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("profdispatcher", flag.ContinueOnError)
	flags := dispatcher.BindFlags(fs)
	profileListen := fs.String("profile-listen", "127.0.0.1:0", "loopback address serving POST /start?file=PATH and POST /stop")
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
	cfg, restCfg, err := flags.Config()
	if err != nil {
		return err
	}
	ctrl.SetLogger(cfg.Logger)
	go func() {
		srv := &http.Server{Addr: *profileListen, Handler: profiler(), ReadHeaderTimeout: 10 * time.Second}
		err := srv.ListenAndServe()
		fmt.Fprintln(os.Stderr, "profdispatcher: profile listener:", err)
	}()
	return dispatcher.Run(ctrl.SetupSignalHandler(), restCfg, cfg)
}

func profiler() http.Handler {
	var (
		mu        sync.Mutex
		f         *os.File
		blockFile string
	)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /start", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if f != nil {
			http.Error(w, "a profile is already running", http.StatusConflict)
			return
		}
		// The benchmark names the file; this listener is its own, on loopback.
		out, err := os.Create(r.URL.Query().Get("file")) //nolint:gosec // G703: see above
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
		// Blocking too: where goroutines wait (channel, mutex, select) says which
		// stage serialises, which the CPU profile cannot show. Written beside the CPU
		// profile as FILE.block at /stop.
		runtime.SetBlockProfileRate(int(10 * time.Microsecond))
		runtime.SetMutexProfileFraction(10)
		blockFile = out.Name() + ".block"
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
		if err := writeProfile("block", blockFile); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		if err := writeProfile("mutex", strings.TrimSuffix(blockFile, ".block")+".mutex"); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	})
	// A heap profile after a collection, and the runtime's memory figures beside it
	// (FILE.memstats): what the process's RSS is made of at that moment.
	mux.HandleFunc("POST /heap", func(w http.ResponseWriter, r *http.Request) {
		file := r.URL.Query().Get("file")
		runtime.GC()
		if err := writeProfile("heap", file); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		text := fmt.Sprintf("HeapInuse %d\nHeapIdle %d\nHeapReleased %d\nHeapSys %d\nStackSys %d\nSys %d\nNumGC %d\nHeapObjects %d\n",
			ms.HeapInuse, ms.HeapIdle, ms.HeapReleased, ms.HeapSys, ms.StackSys, ms.Sys, ms.NumGC, ms.HeapObjects)
		if err := os.WriteFile(file+".memstats", []byte(text), 0o644); err != nil { //nolint:gosec // G306,G703: the benchmark's own file
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
	})
	return mux
}

// writeProfile writes the named runtime profile (block, mutex) to file. They are
// recorded only while a CPU profile runs but accumulate over the process's life: one
// phase's share is its file with the previous phase's as -diff_base.
func writeProfile(name, file string) error {
	out, err := os.Create(file) //nolint:gosec // G703: the benchmark names the file, on loopback
	if err != nil {
		return err
	}
	if err := pprof.Lookup(name).WriteTo(out, 0); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
