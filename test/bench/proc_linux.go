package main

import "syscall"

// childAttrs kills the dispatcher if the benchmark dies without stopping it, so no
// child outlives an interrupted run.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
