package hostile

import (
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/hookline/hookline/internal/delivery"
	"github.com/hookline/hookline/internal/ssrf"
)

var _ = Describe("Hostile endpoint addresses", Ordered, func() {
	var (
		port string
		hits atomic.Int64
		pool *delivery.Pool
	)
	BeforeAll(func() {
		// A receiver on loopback, v4 and v6, on one port: if the guard let a
		// delivery through, it would land here.
		ln4, err := net.Listen("tcp", "127.0.0.1:0")
		Expect(err).NotTo(HaveOccurred())
		port = strconv.Itoa(ln4.Addr().(*net.TCPAddr).Port)
		h := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { hits.Add(1) })
		s4 := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
		go func() { _ = s4.Serve(ln4) }()
		DeferCleanup(s4.Close)
		if ln6, err := net.Listen("tcp", "[::1]:"+port); err == nil {
			s6 := &http.Server{Handler: h, ReadHeaderTimeout: time.Second}
			go func() { _ = s6.Serve(ln6) }()
			DeferCleanup(s6.Close)
		}
		pool = delivery.NewPool(delivery.PoolOptions{})
		DeferCleanup(pool.CloseIdleConnections)
	})

	DescribeTable("the default policy refuses to connect, and nothing is delivered",
		func(host, reason string) {
			tg, err := pool.NewTarget(delivery.TargetConfig{
				URL: "http://" + net.JoinHostPort(host, port) + "/hook", SSRF: ssrf.Policy{}, Timeout: 5 * time.Second,
				Sign: func(string, time.Time, []byte) string { return "v1,x" },
			})
			Expect(err).NotTo(HaveOccurred())
			defer tg.Close()
			res := delivery.Send(ctx, tg, delivery.Message{ID: "msg_1", WebhookID: "msg_1", Type: "a.b", Time: time.Now(), Data: []byte(`{}`), Namespace: "n", Subscription: "s"}, time.Now())
			Expect(res.Err).To(HaveOccurred())
			Expect(res.Err.Error()).To(ContainSubstring("ssrf: refusing to connect"))
			Expect(res.Err.Error()).To(ContainSubstring(reason))
			Expect(res.StatusCode).To(BeZero())
			Expect(hits.Load()).To(BeZero(), "nothing reached the receiver")
		},
		Entry("loopback", "127.0.0.1", "loopback"),
		Entry("loopback elsewhere in 127/8", "127.1.2.3", "loopback"),
		Entry("localhost by name", "localhost", "loopback"),
		Entry("IPv6 loopback", "::1", "loopback"),
		Entry("IPv4-mapped loopback", "::ffff:127.0.0.1", "loopback"),
		Entry("IPv4-compatible loopback", "::127.0.0.1", "loopback"),
		Entry("NAT64 loopback", "64:ff9b::7f00:1", "loopback"),
		Entry("local-use NAT64", "64:ff9b:1:7f00:1::", "local-use NAT64"),
		Entry("6to4 of loopback", "2002:7f00:1::1", "6to4"),
		Entry("6to4 of the metadata address", "2002:a9fe:a9fe::", "6to4"),
		Entry("Teredo", "2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
		Entry("the unspecified address (reaches this host)", "0.0.0.0", "unspecified"),
		Entry("the IPv6 unspecified address", "::", "unspecified"),
		Entry("cloud metadata", "169.254.169.254", "link-local"),
		Entry("AWS IPv6 metadata", "fd00:ec2::254", "unique local"),
		Entry("Azure host services", "168.63.129.16", "Azure"),
		Entry("Alibaba metadata", "100.100.100.200", "carrier-grade NAT"),
		Entry("Oracle metadata", "192.0.0.192", "IETF protocol assignment"),
		Entry("a private address", "10.0.0.1", "private"),
		Entry("a private address in 172.16/12", "172.31.255.254", "private"),
		Entry("a private address in 192.168/16", "192.168.1.1", "private"),
		Entry("IPv6 link-local", "fe80::1", "link-local"),
		Entry("multicast", "224.0.0.251", "multicast"),
		Entry("broadcast", "255.255.255.255", "limited broadcast"),
		Entry("benchmarking", "198.18.0.1", "benchmarking"),
		Entry("documentation", "2001:db8::1", "documentation"),
	)
})
