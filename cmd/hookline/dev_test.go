package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookline/hookline/internal/controlplane"
)

// TestDevStopsWhatItStarted runs `hookline dev` as `make dev | tee dev.log` does and
// stops it as Ctrl-C does there: SIGINT to the whole foreground process group, which
// ends tee too, so hookline's stdout is a pipe nobody reads any more. etcd,
// kube-apiserver and kube-controller-manager must be gone afterwards.
func TestDevStopsWhatItStarted(t *testing.T) {
	root, err := controlplane.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := controlplane.AssetsDir(root); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "hookline")
	// As `make dev` builds it: only the dev tag links the local control plane.
	build := exec.Command("go", "build", "-tags", "dev", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building hookline: %v\n%s", err, out)
	}

	stdoutR, stdoutW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "dev", "--embedded", "--state-dir", t.TempDir(),
		"--api-listen", freeAddr(t), "--receiver-listen", freeAddr(t))
	cmd.Stdout, cmd.Stderr = stdoutW, stderr
	// Its own process group stands for the terminal's foreground group, so the signal
	// below reaches hookline (and anything it left in its group) but not this test.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stdoutW.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	children := map[int]string{} // pid -> command name, so a reused pid is not mistaken
	t.Cleanup(func() {
		// Never leave anything behind, whatever failed: envtest's processes have their
		// own process groups, so they are killed one by one.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		for pid, name := range children {
			if alive(pid) && comm(pid) == name {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})

	// Up when it says so, like a person watching the terminal.
	up := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "Press Ctrl-C to stop.") {
				up <- true
				return
			}
		}
		up <- false
	}()
	select {
	case ok := <-up:
		if !ok {
			t.Fatalf("hookline dev closed its output before it was up; stderr: %s", readFile(stderr.Name()))
		}
	case err := <-exited:
		t.Fatalf("hookline dev exited before it was up: %v; stderr: %s", err, readFile(stderr.Name()))
	case <-time.After(4 * time.Minute):
		t.Fatalf("hookline dev not up after 4 minutes; stderr: %s", readFile(stderr.Name()))
	}

	names := map[string]bool{}
	for _, pid := range descendants(cmd.Process.Pid) {
		children[pid] = comm(pid)
		names[children[pid]] = true
	}
	for _, want := range []string{"etcd", "kube-apiserver", "kube-controller"} {
		if !names[want] {
			t.Fatalf("hookline dev runs no %s among its children %v", want, names)
		}
	}

	// tee is gone: nobody reads hookline's stdout any more. Then Ctrl-C.
	stdoutR.Close()
	if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Errorf("hookline dev was killed by %v before its clean-up", ws.Signal())
			}
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("hookline dev did not stop within 2 minutes of Ctrl-C")
	}

	deadline := time.Now().Add(30 * time.Second)
	for pid, name := range children {
		running := func() bool { return alive(pid) && comm(pid) == name }
		for running() && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if running() {
			t.Errorf("%s (pid %d), started by hookline dev, still runs after it stopped", name, pid)
		}
	}
}

func freeAddr(t *testing.T) string {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// descendants lists the processes below pid, from /proc.
func descendants(pid int) []int {
	parents := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces, so split after the last ')'.
		fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
		if len(fields) > 1 {
			parents[p], _ = strconv.Atoi(fields[1])
		}
	}
	var out []int
	frontier := []int{pid}
	for len(frontier) > 0 {
		parent := frontier[0]
		frontier = frontier[1:]
		for p, pp := range parents {
			if pp == parent {
				out = append(out, p)
				frontier = append(frontier, p)
			}
		}
	}
	return out
}

func comm(pid int) string {
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm"))
	return strings.TrimSpace(string(b))
}

// alive reports whether pid runs (a zombie waiting to be reaped has stopped).
func alive(pid int) bool {
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
