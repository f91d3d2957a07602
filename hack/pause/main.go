// Command pause is the real-node tests' pod sandbox ("pause") process: it holds a pod's
// namespaces and does nothing until SIGTERM or SIGINT. hack/node-up.sh builds it into an
// image FROM scratch, because no registry with the usual pause image is reachable.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
}
