package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/tools/clientcmd"

	"github.com/hookline/hookline/internal/ui"
)

func init() {
	register("ui", "open a local web dashboard of endpoints, subscriptions, dead letters and events (acts as your kubeconfig user)", runUI)
}

func runUI(args []string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return serveUI(ctx, args, os.Stderr)
}

// serveUI serves the dashboard until ctx ends, telling the user on out where it is.
func serveUI(ctx context.Context, args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ui", flag.ContinueOnError)
	api := bindAPIFlags(fs)
	kube := bindKubeFlags(fs)
	listen := fs.String("listen", "127.0.0.1:8090", "where the dashboard listens: a loopback address only (it acts with your credentials); port 0 picks a free one")
	noBrowser := fs.Bool("no-browser", false, "print the dashboard's address instead of opening it in a browser")
	namespaces := fs.String("n", "", "comma-separated namespaces to show (default: those you may list, else the kubeconfig's namespace)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := kube.load(api)
	if err != nil {
		return err
	}
	if cfg == nil {
		return errors.New("no kubeconfig found: the dashboard acts as your kubeconfig user; pass --kubeconfig or set $KUBECONFIG")
	}
	token := api.kubeconfigToken
	if api.tokenFile != "" {
		b, err := os.ReadFile(api.tokenFile)
		if err != nil {
			return fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(b))
	}
	hc, err := apiClient(api.caFile, api.timeout)
	if err != nil {
		return err
	}
	defNS := "default"
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kube.path != "" {
		rules.ExplicitPath = kube.path
	}
	if ns, _, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).Namespace(); err == nil && ns != "" {
		defNS = ns
	}
	var nss []string
	for _, n := range strings.Split(*namespaces, ",") {
		if n = strings.TrimSpace(n); n != "" {
			nss = append(nss, n)
		}
	}

	ln, err := listenLoopback(ctx, *listen)
	if err != nil {
		return err
	}
	srv, err := ui.New(ln.Addr().String(), ui.Options{
		Kube:             cfg,
		Dispatcher:       &ui.Dispatcher{URL: api.server, Token: token, HTTP: hc},
		Namespaces:       nss,
		DefaultNamespace: defNS,
	})
	if err != nil {
		_ = ln.Close()
		return err
	}
	hs := srv.HTTPServer()
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	fmt.Fprintf(out, "hookline ui: serving on http://%s as your kubeconfig user, reading the dispatcher at %s.\n"+
		"Open this address (it carries a one-time login token; do not share it):\n\n  %s\n\nPress Ctrl-C to stop.\n",
		ln.Addr(), api.server, srv.LoginURL())
	if !*noBrowser {
		if err := openBrowser(context.WithoutCancel(ctx), srv.LoginURL()); err != nil {
			fmt.Fprintf(out, "Could not open a browser (%v); open the address above yourself.\n", err)
		}
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdown, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := hs.Shutdown(shutdown); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// listenLoopback refuses any address but a loopback one: the dashboard acts with the
// user's credentials, so nobody else may reach it.
func listenLoopback(ctx context.Context, addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("--listen=%q: want host:port, e.g. 127.0.0.1:8090", addr)
	}
	if host == "localhost" {
		host = "127.0.0.1"
		addr = strings.Replace(addr, "localhost", host, 1)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("--listen=%q: the dashboard listens on a loopback address only (it acts with your credentials); use 127.0.0.1:PORT", addr)
	}
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--listen=%q: %w (choose another port, or 127.0.0.1:0 for a free one)", addr, err)
	}
	return ln, nil
}

// openBrowser starts the desktop's opener on the dashboard's own address (never input
// from elsewhere).
func openBrowser(ctx context.Context, u string) error {
	var cmd *exec.Cmd
	switch runtime.GOOS {
	case "darwin":
		cmd = exec.CommandContext(ctx, "open", u) //nolint:gosec // G204: u is the dashboard's own address
	case "windows":
		cmd = exec.CommandContext(ctx, "rundll32", "url.dll,FileProtocolHandler", u) //nolint:gosec // G204: as above
	default:
		cmd = exec.CommandContext(ctx, "xdg-open", u) //nolint:gosec // G204: as above
	}
	return cmd.Start()
}
