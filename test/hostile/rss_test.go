package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
)

// rssKiB reads a process's resident set size from /proc.
func rssKiB(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			Expect(err).NotTo(HaveOccurred())
			return n
		}
	}
	Fail("no VmRSS in /proc/status")
	return 0
}

func dialFromAddr(src, addr string) net.Conn {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	Expect(err).NotTo(HaveOccurred())
	return c
}

// The same attack as internal/server's TestSlowAndStalledClients, on a real
// `hookline dispatcher` process (embedded NATS, the registry on the real API
// server), measured by its resident set size.
var _ = Describe("A real dispatcher process under slow and stalled clients", func() {
	It("keeps its RSS growth under 96 MiB with 500 slow connections and 500 stalled uploads, serves publishers, and closes every slow connection", func() {
		if _, err := os.Stat("/proc/self/status"); err != nil {
			Skip("needs /proc to read the RSS")
		}
		dir := GinkgoT().TempDir()
		bin := filepath.Join(dir, "hookline")
		build := exec.Command("go", "build", "-o", bin, "./cmd/hookline")
		build.Dir = env.RepoRoot
		out, err := build.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), string(out))

		ln, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		addr := ln.Addr().String()
		Expect(ln.Close()).To(Succeed())
		ns := newNamespace("hostile-rss-")
		logf, err := os.Create(filepath.Join(dir, "dispatcher.log"))
		Expect(err).NotTo(HaveOccurred())
		defer logf.Close()
		cmd := exec.Command(bin, "dispatcher", "--kubeconfig", env.Kubeconfig, "--listen", addr, "--metrics-listen", "",
			"--auth", "none", "--data-dir", filepath.Join(dir, "data"), "--lease-namespace", ns, "--watch-namespaces", ns,
			"--read-header-timeout", "3s", "--body-read-timeout", "6s")
		cmd.Stdout, cmd.Stderr = logf, logf
		Expect(cmd.Start()).To(Succeed())
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		defer func() {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-done
			}
		}()

		publishOne := func(i int) int {
			resp, err := http.Post("http://"+addr+"/v1/namespaces/"+ns+"/events", "application/json", strings.NewReader(fmt.Sprintf(`{"type":"invoice.paid","data":{"n":%d}}`, i)))
			if err != nil {
				return 0
			}
			defer resp.Body.Close()
			_, _ = io.Copy(io.Discard, resp.Body)
			return resp.StatusCode
		}
		Eventually(func() int { return publishOne(-1) }, 60*time.Second).Should(Equal(http.StatusAccepted))
		before := rssKiB(cmd.Process.Pid)

		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for i := range 500 {
			c := dialFromAddr(fmt.Sprintf("127.0.4.%d", i%50+1), addr)
			conns = append(conns, c)
			_, err := io.WriteString(c, "POST /v1/namespaces/"+ns+"/events HTTP/1.1\r\nHost: hookline\r\nContent-Type: appl")
			Expect(err).NotTo(HaveOccurred())
		}
		chunk := strings.Repeat("x", 16<<10)
		for i := range 500 {
			c := dialFromAddr(fmt.Sprintf("127.0.5.%d", i%50+1), addr)
			conns = append(conns, c)
			_, err := io.WriteString(c, "POST /v1/namespaces/"+ns+"/events:batch HTTP/1.1\r\nHost: hookline\r\nContent-Type: application/json\r\nContent-Length: 1048576\r\n\r\n"+`{"events":[{"type":"a.b","data":"`+chunk)
			Expect(err).NotTo(HaveOccurred())
		}
		for i := range 20 {
			Expect(publishOne(i)).To(Equal(http.StatusAccepted), "a healthy publisher during the attack")
		}
		during := rssKiB(cmd.Process.Pid)
		grown := during - before
		AddReportEntry("dispatcher RSS", fmt.Sprintf("%d MiB before, %d MiB holding 500 slow connections and 500 stalled uploads (+%d MiB, bound 96 MiB)", before>>10, during>>10, grown>>10))
		GinkgoWriter.Printf("dispatcher RSS: %d KiB before, %d KiB during (+%d KiB)\n", before, during, grown)
		Expect(grown).To(BeNumerically("<", 96<<10))

		var wg sync.WaitGroup
		var kept sync.Map
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
				_, err := io.ReadAll(c)
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					kept.Store(i, true)
				}
			}()
		}
		wg.Wait()
		n := 0
		kept.Range(func(any, any) bool { n++; return true })
		Expect(n).To(BeZero(), "connections the dispatcher kept open")
	})
})
